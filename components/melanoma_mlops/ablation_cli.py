"""``melanoma-mlops ablation``: two-stage vs single-stage over seeds, optionally with the leaky control.

Hooked into the main parser by ``cli.build_parser`` through :func:`add_commands`; the training
options are the same generated ones ``run`` has (one configuration source).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from . import ablation as lib
from . import cli
from . import config as cfg
from .errors import ConfigError

logger = logging.getLogger(__name__)


def _cmd_ablation(args: argparse.Namespace) -> int:
    from melanoma_pipelines.ablation import (
        ablation_arguments,
        compile_ablation_pipeline,
        run_ablation_local,
        summary_lines,
    )

    variants = lib.parse_list(args.variants, lib.VARIANTS, "variant")
    protocols = lib.protocols_for(args.protocol)
    seeds = lib.parse_seeds(args.seeds)
    trials = lib.trial_keys(variants, protocols, seeds)
    if args.seed is not None:
        logger.warning(
            "--seed %d is ignored by the ablation: each trial uses one of --seeds %s", args.seed, seeds
        )
    if args.single_stage_epochs is not None and args.single_stage_epochs < 1:
        raise ConfigError(f"--single-stage-epochs {args.single_stage_epochs} must be at least 1")
    if not 1e-8 <= args.single_stage_lr <= 1.0:
        raise ConfigError(f"--single-stage-lr {args.single_stage_lr} is outside [1e-08, 1.0]")
    if args.compile and not args.data:
        raise ConfigError(
            "--compile needs --data: the data source the cluster's pods will read (e.g. s3://...)"
        )
    if not args.compile and args.parallelism not in (1, 2):
        raise ConfigError(f"--parallelism {args.parallelism}: kfp.local runs 1 or 2 trials at once")
    if args.data:
        config, data = cli.config_from_args(args), args.data
    else:
        config = cli.config_from_args(args, cfg.DEMO_PRESET)
        data = str(cli._ensure_demo_data(args.demo_images))
        logger.info("demo preset (options you set still win): %s", cfg.DEMO_PRESET)
    if not args.compile and not data.startswith("s3://") and not Path(data).exists():
        raise ConfigError(
            f"--data {data}: no such file or folder. Pass a data folder, a CSV, or s3://bucket/prefix."
        )
    if args.compile:
        # For a cluster: the pipeline package plus the arguments to submit it with.
        path = compile_ablation_pipeline(
            args.compile, image=args.image, cluster=cli._cluster_from_args(args), parallelism=args.parallelism
        )
        arguments = ablation_arguments(
            config,
            data,
            trials,
            single_stage_lr=args.single_stage_lr,
            single_stage_epochs=args.single_stage_epochs,
            layout=args.layout,
            task=args.task,
            run_name=args.run_name or "",
        )
        args_path = Path(args.compile).with_suffix(".arguments.json")
        args_path.write_text(json.dumps(arguments, indent=2))
        print(f"wrote {path} and {args_path} (not run)")
        return 0
    if "leaky" in protocols:
        logger.warning(
            "--protocol %s: the %s reproduces the published oversample-then-split leak; it is measured, "
            "never registered",
            args.protocol,
            lib.LEAKY_LABEL,
        )
    result = run_ablation_local(
        config,
        data,
        trials,
        single_stage_lr=args.single_stage_lr,
        single_stage_epochs=args.single_stage_epochs,
        layout=args.layout,
        task=args.task,
        pipeline_root=args.pipeline_root,
        run_name=args.run_name,
        parallelism=args.parallelism,
        report_dir=args.report_dir,
    )
    # A CLI handler's output is the report itself (cli.py is exempt from T201 in pyproject; this
    # file is its extension).
    print(result.markdown)
    print("\n".join(summary_lines(result)))
    if not args.data:
        print("(trained and evaluated on SYNTHETIC demo data: the figures say nothing about real dermoscopy)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ablation`` to the main CLI's subcommands."""
    p = subparsers.add_parser(
        "ablation",
        help="two-stage vs single-stage fine-tuning over seeds (one KFP pipeline, run locally); "
        "--protocol both adds the LEAKY (negative control)",
        description="Runs every (variant, seed) trial as one Kubeflow pipeline (ParallelFor) under kfp.local "
        "and writes a comparison table (mean ± sd per arm, paired differences two_stage − single_stage "
        "per seed with a 95% t interval) to an MLflow parent run in experiment "
        f"{lib.ABLATION_EXPERIMENT}. Nothing is registered.",
    )
    p.add_argument("--data", default="", help="data folder, manifest/metadata CSV, or s3://bucket/prefix")
    p.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "folder", "manifest", "isic", "challenge"],
        help="data layout (default: detected)",
    )
    p.add_argument(
        "--task",
        default="malignant",
        choices=["malignant", "melanoma"],
        help="malignant-vs-benign, or melanoma-vs-rest when the metadata has the diagnosis",
    )
    p.add_argument(
        "--variants",
        default=",".join(lib.VARIANTS),
        help="comma-separated training variants: two_stage (head, then all layers) and/or single_stage "
        "(all layers from the start) (default: both)",
    )
    p.add_argument(
        "--protocol",
        default="honest",
        choices=["honest", "leaky", "both"],
        help="honest: grouped split, then oversample train only; leaky: the published oversample-then-split, "
        f"a {lib.LEAKY_LABEL}; both: honest plus the control (default: honest)",
    )
    p.add_argument(
        "--seeds",
        default="0,1,2",
        help="comma-separated seeds; each fixes split, oversampling, augmentation and init, and pairs the "
        "variants (default: 0,1,2)",
    )
    p.add_argument(
        "--single-stage-lr",
        type=float,
        default=lib.SINGLE_STAGE_LR,
        help="Adam learning rate of single-stage fine-tuning: between the head rate and the Stage 2 rate; "
        f"an untuned prior, sweep it (default: {lib.SINGLE_STAGE_LR:g})",
    )
    p.add_argument(
        "--single-stage-epochs",
        type=int,
        default=None,
        help="single-stage maximum epochs (default: stage1 + stage2 epochs, the same budget)",
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
    p.add_argument("--report-dir", default="ablation_report", help="where the comparison files are written")
    p.add_argument(
        "--demo-images", type=int, default=cfg.DEMO_IMAGES, help="images in the generated demo set"
    )
    cli._add_config_options(p)
    cli._add_cluster_options(p)
    p.set_defaults(func=_cmd_ablation)
