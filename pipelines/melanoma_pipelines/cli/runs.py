"""``melanoma-mlops runs``: housekeeping of pipeline runs (reap the ones whose process died, prune
old local outputs)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)
#: melanoma_mlops.heartbeat.DEFAULT_STALE_AFTER_S in minutes (not imported: --help stays fast).
STALE_AFTER_MIN = 10.0


def cmd_reap(args: argparse.Namespace) -> int:
    from melanoma_mlops import heartbeat, tracking, tracking_client

    tracking.configure()
    reaped = heartbeat.reap_stale_runs(args.stale_after * 60, dry_run=args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for item in reaped:
        print(f"{verb} KILLED: {item.run_name} ({item.run_id}, {item.experiment}): {item.reason}")
    print(
        f"{len(reaped)} stale run(s) {'found' if args.dry_run else 'marked KILLED'} "
        f"(stale: RUNNING with its process gone, or no heartbeat for {args.stale_after:g} min) "
        f"in {tracking_client.tracking_uri()}"
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from melanoma_pipelines.local import prune_outputs

    removed = prune_outputs(args.pipeline_root, args.keep)
    for path in removed:
        print(f"removed {path}")
    print(f"kept the newest {args.keep} run folder(s) in {args.pipeline_root}; removed {len(removed)}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(
        "runs", help="housekeeping: reap runs left RUNNING by a dead process, prune old outputs"
    )
    group = runs.add_subparsers(dest="runs_command", required=True)
    reap = group.add_parser(
        "reap",
        help="mark RUNNING runs whose process is gone or silent KILLED, with the reason as a tag",
        description="Every step beats a heartbeat (tags heartbeat.host/pid/at) on its run and the "
        "pipeline's parent run. A RUNNING run whose process is gone (same host) or whose last beat is "
        "older than --stale-after is marked KILLED with the tag reaped.reason; a stale parent takes its "
        "RUNNING children with it. `melanoma-mlops run` reaps before it starts too (this machine's runs "
        "whose process is gone at once, other runs after an hour without a beat).",
    )
    reap.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_MIN,
        metavar="MINUTES",
        help="minutes without a heartbeat after which a RUNNING run is stale (default %(default)g; on a "
        "cluster allow for pods waiting for a node)",
    )
    reap.add_argument("--dry-run", action="store_true", help="only list what would be marked")
    reap.set_defaults(func=cmd_reap)
    prune = group.add_parser("prune", help="delete old local run folders from the pipeline root")
    prune.add_argument("--pipeline-root", default="local_outputs")
    prune.add_argument("--keep", type=int, default=3, help="newest run folders kept (default %(default)s)")
    prune.set_defaults(func=cmd_prune)
