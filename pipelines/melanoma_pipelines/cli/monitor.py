"""``melanoma-mlops monitor``: drift of a version's logged predictions against its reference profile."""

from __future__ import annotations

import argparse
import os

from melanoma_mlops import MODEL_NAME

#: Exit status on drift (a scheduler alerts on it); an error (bad input, no records) exits 2.
DRIFT_EXIT = 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``monitor`` on the main parser's subcommands."""
    monitor = subparsers.add_parser(
        "monitor",
        help="check a registered version's logged predictions for drift (exit 1 on drift)",
        description="Compare the predictions a version served in a window (the prediction log) with "
        "the reference profile its register step recorded: the image statistics and the score "
        "distribution, tested column by column (docs/monitoring.md). Records an MLflow run in the "
        "melanoma-monitoring experiment and tags the version monitor_status=ok|warn|drift. "
        "Exit status: 0 ok or warn, 1 drift, 2 error.",
    )
    monitor.add_argument(
        "--model-uri",
        default=f"models:/{MODEL_NAME}@champion",
        help="models:/NAME@ALIAS or models:/NAME/VERSION",
    )
    monitor.add_argument(
        "--since", default="7d", help="the window: 7d, 24h, 90m or an ISO date (default: 7d)"
    )
    add_log_argument(monitor)
    monitor.set_defaults(func=cmd_monitor)


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    """``--log``: where the served predictions were logged (``monitor`` and ``outcomes`` read it)."""
    parser.add_argument(
        "--log",
        default=None,
        help="the prediction log: a folder or s3://bucket/prefix "
        "(default: $MELANOMA_PREDICTION_LOG, else ./prediction_log)",
    )


def log_location(args: argparse.Namespace) -> str:
    """``--log``, else the location the servers write to; a log turned off there reads the default."""
    from melanoma_mlops.serving import prediction_log

    where = args.log or os.environ.get(prediction_log.LOG_ENV, "").strip() or prediction_log.DEFAULT_LOCATION
    return prediction_log.DEFAULT_LOCATION if where.lower() in prediction_log.OFF_VALUES else where


def cmd_monitor(args: argparse.Namespace) -> int:
    from melanoma_mlops.monitoring import monitor

    result = monitor.monitor(args.model_uri, args.since, log_location(args))
    print(monitor.summary(result))
    return DRIFT_EXIT if result.report.status == "drift" else 0
