"""``melanoma-mlops predict`` and ``promote``: the model registry from the command line.

``predict`` scores image files with a registered model (default ``@champion``) through the same
pyfunc that ``mlflow models serve`` and the app use, so the command line cannot disagree with
them. ``promote`` moves the ``champion`` alias by hand - with a reason, and with ``--force`` plus a
written justification for a version whose gate failed - or rolls it back to the previous champion.

Every user mistake (a missing file, a non-image, an unknown version, a refused promotion) ends as
one :class:`~melanoma_mlops.errors.MelanomaError` that :func:`melanoma_pipelines.cli.main` prints
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from melanoma_mlops import MODEL_NAME, tracking
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DISCLAIMER = "Research software, not a diagnostic device: every result needs a clinician's judgement."


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict`` and ``promote`` on the main parser's subcommands."""
    predict = subparsers.add_parser(
        "predict",
        help="score image files with a registered model (default: @champion)",
        description="Score dermoscopic images with a model from the MLflow registry "
        "(MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db). " + DISCLAIMER,
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG/BMP/GIF files")
    source = predict.add_mutually_exclusive_group()
    source.add_argument(
        "--model-uri", default=None, help="any MLflow model URI (default: models:/MODEL_NAME@champion)"
    )
    source.add_argument("--version", default=None, help="a registered version number of --model-name")
    predict.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(func=cmd_predict)

    promote = subparsers.add_parser(
        "promote",
        help="move the @champion alias (gated versions only, unless --force) or roll it back",
        description="Point @champion at a registered version whose promotion gate passed (default: the "
        "current @challenger), or with --rollback at the previous champion. Every move is recorded "
        "on the version as audit tags (who, when, why).",
    )
    promote.add_argument("--version", default=None, help="version to promote (default: the @challenger)")
    promote.add_argument("--reason", required=True, help="why: recorded in the audit trail")
    promote.add_argument(
        "--force", action="store_true", help="promote even though the gate failed or never ran"
    )
    promote.add_argument("--force-reason", default="", help="with --force: the justification (required)")
    promote.add_argument(
        "--rollback", action="store_true", help="point @champion back at the previous champion"
    )
    promote.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    promote.add_argument("--json", action="store_true", help="print the audit entry as JSON")
    promote.set_defaults(func=cmd_promote)


def _use_tracking_store() -> str:
    """Point MLflow at the store; refuse a SQLite path that does not exist instead of creating it."""
    import mlflow

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `melanoma-mlops run` here first, "
            "or set MLFLOW_TRACKING_URI to your tracking server"
        )
    mlflow.set_tracking_uri(uri)
    return uri


def read_images(paths: list[str]) -> list[bytes]:
    """Each file's bytes, after checking from its header that it is an image the model accepts."""
    from melanoma_mlops.serving.inputs import check_encoded

    out = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise DataError(f"{name}: no such file")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{name}: cannot be read ({exc.strerror or exc})") from exc
        check_encoded(raw, name)
        out.append(raw)
    return out


def _model_uri(args: argparse.Namespace) -> str:
    if args.model_uri:
        return args.model_uri
    if args.version:
        return f"models:/{args.model_name}/{args.version}"
    return f"models:/{args.model_name}@{CHAMPION}"


def _version_info(model_uri: str) -> dict[str, str]:
    """Registered version and its tags behind a models:/ URI (empty for other URIs)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not model_uri.startswith("models:/"):
        return {}
    ref = model_uri.removeprefix("models:/")
    client = MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
    except (MlflowException, ValueError) as exc:
        raise ConfigError(f"{model_uri} is not in the registry at {tracking.tracking_uri()}: {exc}") from exc
    return {"name": mv.name, "version": str(mv.version), **mv.tags}


def predict_files(model_uri: str, paths: list[str]) -> dict[str, Any]:
    """Score ``paths`` with the model at ``model_uri``; the JSON ``predict --json`` prints."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    images = read_images(paths)  # fail on a bad file before spending seconds loading the model
    info = _version_info(model_uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"cannot load {model_uri} from {tracking.tracking_uri()}: {exc}") from exc
    result = loaded.predict(pd.DataFrame({"image": images}))
    threshold = info.get("threshold") or (loaded.metadata.metadata or {}).get("threshold")
    return {
        "model_uri": model_uri,
        "version": info.get("version", ""),
        "threshold": float(threshold) if threshold not in (None, "") else None,
        "predictions": [
            {
                "file": name,
                "probability": float(row.probability),
                "label": int(row.label),
                "class_name": str(row.class_name),
            }
            for name, row in zip(paths, result.itertuples(index=False), strict=True)
        ],
        "disclaimer": DISCLAIMER,
    }


def format_table(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`predict_files`'s report."""
    threshold = report["threshold"]
    head = f"model {report['model_uri']}"
    if report["version"]:
        head += f" (version {report['version']})"
    if threshold is not None:
        head += f", decision threshold {threshold:.4g}"
    width = max([len("file"), *(len(p["file"]) for p in report["predictions"])])
    lines = [head, "", f"{'file':<{width}}  {'P(malignant)':>12}  decision"]
    for p in report["predictions"]:
        lines.append(f"{p['file']:<{width}}  {p['probability']:>12.4f}  {p['class_name']}")
    lines += ["", report["disclaimer"]]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    _use_tracking_store()
    report = predict_files(_model_uri(args), args.images)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from melanoma_mlops.registry import champion as promotion

    if args.rollback and (args.version or args.force):
        raise ConfigError("--rollback goes back to the previous champion: it takes no --version or --force")
    if args.force_reason and not args.force:
        raise ConfigError("--force-reason is only meaningful with --force")
    _use_tracking_store()
    if args.rollback:
        entry = promotion.rollback(args.model_name, args.reason)
        summary = (
            f"rolled back @champion of {args.model_name}: "
            f"version {entry['previous_champion']} -> {entry['version']}"
        )
    else:
        entry = promotion.promote(args.model_name, args.version, args.reason, args.force, args.force_reason)
        summary = (
            f"{'force-' if args.force else ''}promoted {args.model_name} version {entry['version']} "
            f"to @champion (previous champion: {entry['previous_champion']})"
        )
    if args.json:
        text = json.dumps({**entry, "state": promotion.describe(args.model_name)}, indent=2)
    else:
        text = (
            f"{summary}\nrecorded as audit.{entry['index']} on version {entry['version']}: "
            f"by {entry['by']} at {entry['at']}"
        )
    print(text)
    return 0
