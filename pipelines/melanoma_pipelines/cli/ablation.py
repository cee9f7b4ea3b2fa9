"""``melanoma-mlops ablation``: two-stage vs single-stage over seeds, optionally with the leaky control.

The training options are the same generated ones ``run`` has (one configuration source), for the
groups the ablation reads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from melanoma_mlops.artifacts import LEAKY_LABEL
from melanoma_mlops.config import DEMO_IMAGES
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.experiments.ablation.design import (
    ABLATION_EXPERIMENT,
    VARIANTS,
    parse_list,
    parse_seeds,
    protocols_for,
    trial_keys,
)
from melanoma_pipelines.cli.options import (
    add_cluster_options,
    add_config_options,
    check_local_data,
    cluster_from_args,
    data_and_config,
)
from melanoma_pipelines.params import ABLATION_GROUPS

logger = logging.getLogger(__name__)


def cmd_ablation(args: argparse.Namespace) -> int:
    from melanoma_pipelines.submit import arguments_path

    variants = parse_list(args.variants, VARIANTS, "variant")
    protocols = protocols_for(args.protocol)
    trials = trial_keys(variants, protocols, parse_seeds(args.seeds))
    if args.compile and not args.data:
        raise ConfigError(
            "--compile needs --data: the data source the cluster's pods will read (e.g. s3://...)"
        )
    if not args.compile and args.parallelism not in (1, 2):
        raise ConfigError(f"--parallelism {args.parallelism}: kfp.local runs 1 or 2 trials at once")
    data, config = data_and_config(args)
    if args.compile:
        from melanoma_pipelines.ablation_dag import ablation_arguments
        from melanoma_pipelines.compile import compile_pipeline

        # For a cluster: the pipeline package plus the arguments to submit it with.
        path = compile_pipeline(
            args.compile,
            image=args.image,
            cluster=cluster_from_args(args),
            pipeline="ablation",
            parallelism=args.parallelism,
        )
        arguments = ablation_arguments(config, data, trials, run_name=args.run_name or "")
        args_path = arguments_path(path)
        args_path.write_text(json.dumps(arguments, indent=2))
        print(f"wrote {path} and {args_path} (not run)")
        return 0
    check_local_data(data)
    if "leaky" in protocols:
        logger.warning(
            "--protocol %s: the %s reproduces the published oversample-then-split leak; it is measured, "
            "never registered",
            args.protocol,
            LEAKY_LABEL,
        )
    from melanoma_pipelines.local import run_ablation_local
    from melanoma_pipelines.results import ablation_summary_lines

    result = run_ablation_local(
        config,
        data,
        trials,
        pipeline_root=args.pipeline_root,
        run_name=args.run_name,
        parallelism=args.parallelism,
        report_dir=args.report_dir,
        verbose=args.verbose,
    )
    print(result.markdown)
    document = write_document(result, args)
    print("\n".join(ablation_summary_lines(result)))
    print(f"document: {document}")
    if not args.data:
        print("(trained and evaluated on SYNTHETIC demo data: the figures say nothing about real dermoscopy)")
    return 0


def write_document(result: Any, args: argparse.Namespace) -> Path:
    """``<report-dir>/ablation.md``: the ablation explained around this run's results and plot
    (``--report-dir docs`` writes ``docs/ablation.md``)."""
    from melanoma_mlops.experiments.ablation.document import DOCUMENT_MD, render_document

    provenance = {
        "command": "`melanoma-mlops " + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "`",
        "data": args.data or f"the generated SYNTHETIC demo set ({args.demo_images} images), demo preset",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "wall time": f"{result.seconds / 60:.1f} min",
        "MLflow ablation run": f"`{result.ablation_run_id}` (experiment {ABLATION_EXPERIMENT})",
    }
    path = Path(args.report_dir) / DOCUMENT_MD
    path.write_text(render_document(result.markdown, provenance))
    return path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ablation`` to the main CLI's subcommands."""
    p = subparsers.add_parser(
        "ablation",
        help="two-stage vs single-stage fine-tuning over seeds (one KFP pipeline, run locally); "
        "--protocol both adds the LEAKY (negative control)",
        description="Runs every (variant, seed) trial as one Kubeflow pipeline (ParallelFor) under kfp.local "
        "and writes a comparison table (mean ± sd per arm, paired differences two_stage − single_stage "
        "per seed with a 95% t interval) to an MLflow parent run in experiment "
        f"{ABLATION_EXPERIMENT}. Nothing is registered.",
    )
    p.add_argument("--data", default="", help="data folder, manifest/metadata CSV, or s3://bucket/prefix")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated training variants: two_stage (head, then all layers) and/or single_stage "
        "(all layers from the start) (default: both)",
    )
    p.add_argument(
        "--protocol",
        default="honest",
        choices=["honest", "leaky", "both"],
        help="honest: grouped split, then oversample train only; leaky: the published oversample-then-split, "
        f"a {LEAKY_LABEL}; both: honest plus the control (default: honest)",
    )
    p.add_argument(
        "--seeds",
        default="0,1,2",
        help="comma-separated seeds; each fixes split, oversampling, augmentation and init, and pairs the "
        "variants (default: 0,1,2)",
    )
    p.add_argument(
        "--parallelism",
        type=int,
        default=1,
        help="trials trained at once (kfp.local runs at most 2; default 1: locally TensorFlow already uses "
        "every core; with --compile, 0 = no cap)",
    )
    p.add_argument(
        "--compile",
        default="",
        metavar="PATH",
        help="write the pipeline's KFP IR YAML (plus PATH.arguments.json) for a cluster instead of running",
    )
    p.add_argument("--run-name", default=None, help="MLflow parent run name (default: ablation-<timestamp>)")
    p.add_argument("--pipeline-root", default="local_outputs", help="where kfp.local keeps step outputs")
    p.add_argument(
        "--report-dir",
        default="ablation_report",
        help="where the report goes: DIR/ablation.md (the ablation explained around this run's results and "
        "plot; --report-dir docs writes docs/ablation.md) and the run's files in DIR/ablation/",
    )
    p.add_argument("--demo-images", type=int, default=DEMO_IMAGES, help="images in the generated demo set")
    add_config_options(p, ABLATION_GROUPS, seed=False)
    add_cluster_options(p)
    p.set_defaults(func=cmd_ablation)
