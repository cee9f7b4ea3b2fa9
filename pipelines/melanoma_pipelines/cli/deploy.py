"""``melanoma-mlops deploy``: a promotion becomes a reviewed deploy, never a silent "latest".

Resolves an alias (default ``@champion``) or a version to the registered version and its artifact
URI, and writes a kustomize overlay pinned to that version (``models:/NAME/VERSION`` in the serving
container's arguments, the version and artifact URI as annotations) on top of k8s/serving/kserve
(a KServe InferenceService) or k8s/serving/plain (Deployment + Service). Nothing is applied: review
the folder, then ``kubectl apply -k DIR`` (docs/serving.md).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
from pathlib import Path

import yaml

from melanoma_mlops import MODEL_NAME, tracking_client
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines.cli.store import use_tracking_store

logger = logging.getLogger(__name__)

#: What each target deploys, and where its serving container's ``--model-uri`` value sits.
TARGETS = {
    "kserve": ("InferenceService", "melanoma-classifier", "/spec/predictor/containers/0/args/2"),
    "plain": ("Deployment", "melanoma-classifier", "/spec/template/spec/containers/0/args/2"),
}
#: Annotations of every rendered object: what is deployed and where it came from.
ANNOTATION_PREFIX = "melanoma-mlops/"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``deploy`` on the main parser's subcommands."""
    deploy = subparsers.add_parser(
        "deploy",
        help="write a kustomize overlay serving one registered version (default: the @champion's)",
        description="Resolve --alias (or --version) in the registry (MLFLOW_TRACKING_URI, else "
        "./mlruns/mlflow.db) and write DIR/kustomization.yaml: the inference service of k8s/serving/TARGET "
        "pinned to that version. Nothing is applied: review it, then `kubectl apply -k DIR`.",
    )
    which = deploy.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help=f"the alias to deploy (default: {CHAMPION})")
    which.add_argument("--version", default=None, help="a registered version number instead of an alias")
    deploy.add_argument("--render", required=True, metavar="DIR", help="folder to write the overlay into")
    deploy.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="kserve",
        help="kserve: an InferenceService (KServe installed); plain: Deployment + Service (default: kserve)",
    )
    deploy.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    deploy.add_argument("--k8s-dir", default="k8s", help="the repository's k8s/ folder (default: ./k8s)")
    deploy.set_defaults(func=cmd_deploy)


def resolve(model_name: str, alias: str | None, version: str | None) -> tuple[str, str, str]:
    """(version, artifact URI, how it was chosen) of the version to deploy."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry.lookup import alias_version, get_version

    client = MlflowClient()
    if version is not None:
        mv = get_version(client, model_name, version)
        chosen = f"version {mv.version}"
    else:
        mv = alias_version(client, model_name, alias or CHAMPION)
        if mv is None:
            raise ConfigError(
                f"{model_name} has no @{alias or CHAMPION} in {tracking_client.tracking_uri()}: "
                "promote a version first (`melanoma-mlops promote`) or pass --version"
            )
        chosen = f"@{alias or CHAMPION} (version {mv.version} when rendered)"
    try:
        artifact_uri = client.get_model_version_download_uri(model_name, str(mv.version))
    except MlflowException as exc:
        raise ConfigError(f"{model_name} version {mv.version} has no artifact location: {exc}") from exc
    return str(mv.version), artifact_uri, chosen


def overlay(target: str, base: str, model_name: str, version: str, artifact_uri: str, chosen: str) -> dict:
    """The kustomization pinning ``base`` (a path relative to the overlay) to one version."""
    kind, name, arg_path = TARGETS[target]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "commonAnnotations": {
            f"{ANNOTATION_PREFIX}model-name": model_name,
            f"{ANNOTATION_PREFIX}model-version": version,
            f"{ANNOTATION_PREFIX}model-artifact-uri": artifact_uri,
            f"{ANNOTATION_PREFIX}deployed-from": chosen,
        },
        "patches": [
            {
                "target": {"kind": kind, "name": name},
                "patch": yaml.safe_dump(
                    [{"op": "replace", "path": arg_path, "value": f"models:/{model_name}/{version}"}]
                ),
            }
        ],
    }


def render(args: argparse.Namespace) -> Path:
    """Write DIR/kustomization.yaml; return its path."""
    base = Path(args.k8s_dir) / "serving" / args.target
    if not (base / "kustomization.yaml").is_file():
        raise ConfigError(
            f"{base} has no kustomization.yaml: run deploy from the repository's root or pass --k8s-dir"
        )
    out = Path(args.render)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--render {out}: exists and is not a folder")
    version, artifact_uri, chosen = resolve(args.model_name, args.alias, args.version)
    out.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(base.resolve(), out.resolve())
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# Written by `melanoma-mlops deploy` on {stamp}: {args.model_name} {chosen}\n"
        f"# from {tracking_client.tracking_uri()}. Review, then: kubectl apply -k {out}\n"
    )
    path = out / "kustomization.yaml"
    path.write_text(
        header
        + yaml.safe_dump(
            overlay(args.target, relative, args.model_name, version, artifact_uri, chosen), sort_keys=False
        )
    )
    logger.info(
        "wrote %s: %s version %s (%s) on %s", path, args.model_name, version, artifact_uri, args.target
    )
    return path


def cmd_deploy(args: argparse.Namespace) -> int:
    use_tracking_store()
    render(args)
    return 0
