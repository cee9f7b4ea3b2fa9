"""``melanoma-mlops outcomes``: biopsy results joined to a version's logged predictions."""

from __future__ import annotations

import argparse

from melanoma_mlops import MODEL_NAME
from melanoma_pipelines.cli.monitor import add_log_argument, log_location

#: Exit status when a lower bound falls under the gate's floor (a scheduler alerts on it); an
#: error (bad input, nothing matched) exits 2.
FLAGGED_EXIT = 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``outcomes`` on the main parser's subcommands."""
    parser = subparsers.add_parser(
        "outcomes",
        help="realised sensitivity, specificity and AUC from biopsy results (exit 1 when flagged)",
        description="Join biopsy results (a CSV: request_id or sha256, and label: 0/1 or "
        "benign/malignant) to the predictions a registered version served (the prediction log), "
        "and compute realised sensitivity, specificity and AUC with 95%% bootstrap intervals per "
        "window. Records an MLflow run in the melanoma-monitoring experiment and tags the version "
        "outcomes.*; a lower bound under the promotion gate's floor tags it outcomes.flagged=true. "
        "Exit status: 0 ok, 1 flagged, 2 error (docs/monitoring.md).",
    )
    parser.add_argument("file", metavar="FILE.csv", help="the biopsy outcomes")
    parser.add_argument(
        "--model-uri",
        default=f"models:/{MODEL_NAME}@champion",
        help="models:/NAME@ALIAS or models:/NAME/VERSION",
    )
    add_log_argument(parser)
    parser.add_argument(
        "--since",
        default="90d",
        help="how far back to look for the predictions: 90d, 24h or an ISO date (default: 90d)",
    )
    parser.add_argument(
        "--window", default="7d", help="width of each window of prediction time: 7d, 24h, 90m (default: 7d)"
    )
    parser.set_defaults(func=cmd_outcomes)


def cmd_outcomes(args: argparse.Namespace) -> int:
    from melanoma_mlops.monitoring import outcomes_record

    result = outcomes_record.outcomes(
        args.file, args.model_uri, log_location(args), since=args.since, window=args.window
    )
    print(outcomes_record.summary(result))
    return FLAGGED_EXIT if result.flagged else 0
