"""``melanoma-mlops compare``: which of two or more pipeline runs is better, and can they be told apart.

Thin: the runs are read and checked by :mod:`melanoma_mlops.experiments.compare.records`, compared by
:mod:`~melanoma_mlops.experiments.compare.comparison` and written by
:mod:`~melanoma_mlops.experiments.compare.render`. Nothing heavy is imported to build the parser.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger(__name__)


def cmd_compare(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from melanoma_mlops.experiments.compare import comparison, records, render

    # One line per bootstrap is noise here: the test-set line says how many images the intervals rest on.
    logging.getLogger("melanoma_mlops.evaluation.bootstrap").setLevel(logging.ERROR)
    result = comparison.compare(records.read_runs(args.runs, args.last))
    data = render.as_dict(result)
    logged: dict[str, str] | None = None
    if not args.no_log:
        try:
            target, path = records.log_comparison(result, json.dumps(data, indent=2))
            logged = {"run_id": target.run_id, "artifact": path, "url": target.url}
        except MlflowException as exc:  # e.g. a read-only user of an authenticated server
            print(f"warning: the comparison was not logged on the newest run: {exc.message}", file=sys.stderr)
    if args.json:
        print(json.dumps({**data, "logged": logged, "compare_page": records.compare_page(result)}, indent=2))
        return 0
    for line in render.text_lines(result):
        print(line)
    if logged:
        label = result.labels[result.runs.index(comparison.newest(result.runs))]
        print(f"logged on run {label} (the newest): {logged['artifact']} (its Artifacts tab)")
        print(f"  {logged['url']}")
    print(f"MLflow's Compare page of these runs: {records.compare_page(result)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="which of two or more pipeline runs is better: settings that differ, test metrics with "
        "95%% CIs side by side, paired differences, a verdict",
        description="Compare parent runs of the main pipeline (experiment melanoma-two-stage). The first "
        "run is the reference (A); each other run is compared with it. Where two runs were tested on the "
        "same images, each headline metric's difference gets a paired 95%% bootstrap interval by "
        "lesion/patient group (both models re-scored on the same resampled groups, as the promotion gate "
        "does); the verdict says where a run is better or worse (the interval excludes 0) and whether "
        "AUC can be told apart. The same comparison is logged as an HTML page on the newest run "
        "(Artifacts tab, compare/).",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN_OR_NAME",
        help="run ids or run names (two or more; quote names, they contain spaces)",
    )
    parser.add_argument(
        "--last",
        type=int,
        metavar="N",
        help="the newest N finished pipeline runs instead, oldest first "
        "(--last 2: the newest vs the one before)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the comparison on the newest run (print only)"
    )
    parser.set_defaults(func=cmd_compare)
