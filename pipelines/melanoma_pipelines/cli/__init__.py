"""``melanoma-mlops``: the one entry point (run, compile, submit, ablation, predict, promote, ...).

The top layer: it may import the step library (``melanoma_mlops``) and the Kubeflow layer
(``melanoma_pipelines``); nothing imports it. One module per command group; the option helpers they
share are public in :mod:`melanoma_pipelines.cli.options`. Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from melanoma_mlops import quiet_tensorflow
from melanoma_mlops.errors import MelanomaError
from melanoma_pipelines.cli import access, compare, deploy, monitor, outcomes, registry, serve

#: Commands that only talk to the registry: parsed without the Kubeflow layer (kfp is not imported,
#: so promote/history/predict start faster).
REGISTRY_COMMANDS = ("predict", "promote", "history", "serve", "deploy", "monitor", "outcomes")
#: Likewise for the commands that only talk to MLflow's tracking server.
TRACKING_COMMANDS = ("compare", "registry-access")

logger = logging.getLogger("melanoma_pipelines.cli")


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="melanoma-mlops",
        description="Two-stage ResNet50 melanoma classifier: leakage-proof data, Kubeflow, MLflow.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging; `run` also shows every line of its steps (kfp, TensorFlow)",
    )
    return parser, parser.add_subparsers(dest="command", required=True)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of every command (of the registry commands only, when ``argv`` starts with one)."""
    parser, sub = _parser()
    if argv[:1] and argv[0] in REGISTRY_COMMANDS:
        registry.add_commands(sub)
        serve.add_commands(sub)
        deploy.add_commands(sub)
        monitor.add_commands(sub)
        outcomes.add_commands(sub)
        return parser
    if argv[:1] and argv[0] in TRACKING_COMMANDS:
        compare.add_commands(sub)
        access.add_commands(sub)
        return parser
    from melanoma_pipelines.cli import ablation, cluster, evaluate, run, runs

    run.add_commands(sub)
    runs.add_commands(sub)
    cluster.add_commands(sub)
    sub.add_parser(
        "mlflow-server",
        help="start an MLflow tracking server (local: SQLite + ./mlruns; the same command runs in k8s)",
        add_help=False,
    ).set_defaults(func=None)  # dispatched in main() before parsing
    registry.add_commands(sub)
    serve.add_commands(sub)
    deploy.add_commands(sub)
    monitor.add_commands(sub)
    outcomes.add_commands(sub)
    compare.add_commands(sub)
    access.add_commands(sub)
    ablation.add_commands(sub)
    evaluate.add_commands(sub)
    return parser


class _Plain(logging.Formatter):
    """Without --verbose: an information line is just its message; others say their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname}: {message}"


#: Libraries' loggers held above INFO on the console unless --verbose.
QUIETED_LOGGERS = {"mlflow": logging.WARNING, "urllib3": logging.ERROR, "great_expectations": logging.WARNING}


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow.silence()  # TF_CPP_MIN_LOG_LEVEL before any TensorFlow import, here and in steps
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mlflow-server"]:
        # Its options belong to the tracking server's own parser (argparse cannot forward them).
        from melanoma_mlops import tracking_server

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return int(tracking_server.main(argv[1:], prog="melanoma-mlops mlflow-server") or 0)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s") if args.verbose else _Plain()
    )
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    if not args.verbose:
        # MLflow's own notices (database migrations, "View run ... at" links), urllib3's retry
        # lines and Great Expectations' INFO chatter (~200 "Skipping registering function" lines
        # when `evaluate` validates in this process): the run's link and any failure are printed
        # once, in our words.
        for name, level in QUIETED_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
    # MLflow outages ridden out for the outage window, in this process and the steps it starts
    # (MELANOMA_MLFLOW_OUTAGE_WINDOW); a server that never answered is reported within 30 s.
    from melanoma_mlops import tracking_client

    tracking_client.OUTAGE.first_contact_s = tracking_client.FIRST_CONTACT_S
    window = getattr(args, "mlflow_outage_window", None)
    if window is not None:
        os.environ[tracking_client.OUTAGE_ENV] = f"{window:g}"
    tracking_client.apply_client_defaults()
    try:
        return int(args.func(args) or 0)
    except MelanomaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = tracking_client.unreachable_message(exc) or tracking_client.refused_message(exc)
        if message is None:
            raise
        logger.debug("tracking server unreachable", exc_info=True)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
