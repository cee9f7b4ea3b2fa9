"""``melanoma-mlops registry-access``: only the promotion identity may move the registered model's
aliases (the MLflow UI's own buttons cannot bypass the gate). Run as an MLflow admin against a server
with basic-auth; the rule and its reasons are in :mod:`melanoma_mlops.registry.access`."""

from __future__ import annotations

import argparse


def _model_exists(uri: str, model: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def cmd_registry_access(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from melanoma_mlops import tracking_client
    from melanoma_mlops.errors import ConfigError
    from melanoma_mlops.registry import access

    uri = tracking_client.tracking_uri()
    if not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"registry-access sets permissions on a tracking server with basic-auth "
            f"(MLFLOW_TRACKING_URI=http://...); {uri} is a local store, which has no users"
        )
    try:
        exists = _model_exists(uri, args.model)
        decided, after = access.apply(
            access.AccessAdmin(uri), args.promoter, args.model, dry_run=args.dry_run, model_exists=exists
        )
    except MlflowException as exc:
        raise ConfigError(
            f"{uri}: {exc.message}: registry-access reads and sets permissions, so it needs an MLflow admin "
            "(MLFLOW_TRACKING_USERNAME/PASSWORD) on a server started with --auth"
        ) from exc
    if not exists:
        print(f"{args.model} does not exist yet: {args.promoter}'s first pipeline run creates it and owns it")
    for line in access.report_lines(decided, after, args.promoter, args.model, dry_run=args.dry_run):
        print(line)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "registry-access",
        help="with MLflow basic-auth: everyone READs the registered model, only the promotion identity "
        "moves its aliases (run as an MLflow admin)",
        description="Make the promotion identity (the user the pipeline and `melanoma-mlops promote` log "
        "in as) the only non-admin user who can move the registered model's aliases: it keeps MANAGE on "
        "the model, every other user gets READ (a higher grant is brought down). The MLflow UI then "
        "refuses alias changes from the version page to everyone else. Needs MLFLOW_TRACKING_URI=http://... "
        "and an admin's MLFLOW_TRACKING_USERNAME/PASSWORD. See docs/registry-access.md.",
    )
    parser.add_argument(
        "--promoter", required=True, metavar="USER", help="the promotion identity, e.g. pipeline"
    )
    parser.add_argument(
        "--model", default="melanoma-resnet50", help="registered model (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="show the grants without making them")
    parser.set_defaults(func=cmd_registry_access)
