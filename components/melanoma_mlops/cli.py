"""``melanoma-mlops``: the one entry point (run, compile, demo-data, ...).

Every training option is generated from :class:`melanoma_mlops.config.TrainConfig`, so the CLI,
the pipeline parameters and the library share one set of names, defaults and ranges.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config as cfg
from .errors import ConfigError, MelanomaError

if TYPE_CHECKING:
    from melanoma_pipelines.cluster import ClusterOptions

logger = logging.getLogger("melanoma_mlops")
LAYOUT_CHOICES = ["auto", "folder", "manifest", "isic", "challenge"]
TASK_CHOICES = ["malignant", "melanoma"]

DEMO_DIR = Path("demo_data")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layout", default="auto", choices=LAYOUT_CHOICES, help="data layout (default: detected)"
    )
    parser.add_argument(
        "--task",
        default="malignant",
        choices=TASK_CHOICES,
        help="malignant-vs-benign, or melanoma-vs-rest when the metadata has the diagnosis",
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (defaults follow the published protocol)")
    for f in dataclasses.fields(cfg.TrainConfig):
        flag = f"--{cfg.option_name(f.name)}"
        help_ = f"{f.metadata['help']} (default: {f.default})"
        if f.type in ("bool", bool):
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            group.add_argument(flag, dest=f.name, type=kind, default=None, help=help_)


def config_from_args(args: argparse.Namespace, preset: dict[str, Any] | None = None) -> cfg.TrainConfig:
    """Explicit options win over the preset, which wins over the dataclass defaults."""
    values = dict(preset or {})
    for f in dataclasses.fields(cfg.TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    return cfg.TrainConfig(**values)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from . import demo_data

    summary = demo_data.generate(args.out, n=args.n, size=args.size, seed=args.seed)
    print(
        f"{demo_data.SYNTHETIC_NOTE}\n"
        f"wrote {summary.n_benign} benign + {summary.n_malignant} malignant to {summary.out_dir}"
    )
    return 0


def _ensure_demo_data(n: int) -> Path:
    from . import demo_data

    marker = DEMO_DIR / demo_data.MARKER
    if not marker.exists() or f"images: {n} " not in marker.read_text():
        logger.info("no --data given: generating %d SYNTHETIC demo images in %s/", n, DEMO_DIR)
        if DEMO_DIR.exists():
            import shutil

            shutil.rmtree(DEMO_DIR)
        demo_data.generate(DEMO_DIR, n=n)
    return DEMO_DIR.resolve()


def _cmd_run(args: argparse.Namespace) -> int:
    from melanoma_pipelines.local import run_local, summary_lines

    if args.data:
        config, data = config_from_args(args), args.data
    else:
        config = config_from_args(args, cfg.DEMO_PRESET)
        data = str(_ensure_demo_data(args.demo_images))
        logger.info("demo preset (options you set still win): %s", cfg.DEMO_PRESET)
    if not data.startswith("s3://") and not Path(data).exists():
        raise ConfigError(
            f"--data {data}: no such file or folder. Pass a data folder, a CSV, or s3://bucket/prefix."
        )
    result = run_local(
        config,
        data,
        layout=args.layout,
        task=args.task,
        pipeline_root=args.pipeline_root,
        run_name=args.run_name,
    )
    print("\n".join(summary_lines(result)))
    if not args.data:
        print("(trained and evaluated on SYNTHETIC demo data: the figures say nothing about real dermoscopy)")
    return 0


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    from melanoma_pipelines import DEFAULT_IMAGE
    from melanoma_pipelines.cluster import ClusterOptions

    d = ClusterOptions()
    group = parser.add_argument_group("cluster options")
    group.add_argument(
        "--image", default=DEFAULT_IMAGE, help=f"image every step runs in (default: {DEFAULT_IMAGE})"
    )
    group.add_argument(
        "--gpus", type=int, default=d.gpus, help="GPUs for stage1/stage2/evaluate/gradcam; 0 = CPU"
    )
    group.add_argument(
        "--accelerator", default=d.accelerator, help=f"GPU resource name (default: {d.accelerator})"
    )
    group.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node selector for the GPU steps (repeatable)",
    )
    group.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="toleration for the GPU steps, e.g. nvidia.com/gpu:NoSchedule (repeatable)",
    )
    group.add_argument(
        "--retries", type=int, default=d.retries, help="retries (exponential backoff) of training steps"
    )
    group.add_argument("--mlflow-secret", default=d.mlflow_secret, help="Secret with MLflow credentials")
    group.add_argument("--data-secret", default=d.data_secret, help="Secret with S3 credentials for the data")
    group.add_argument(
        "--mlflow-config-map", default=d.mlflow_config_map, help="ConfigMap with MLFLOW_TRACKING_URI"
    )


def _cluster_from_args(args: argparse.Namespace) -> ClusterOptions:
    from melanoma_pipelines.cluster import ClusterOptions, Toleration, parse_node_selector

    return ClusterOptions(
        gpus=args.gpus,
        accelerator=args.accelerator,
        node_selector=parse_node_selector(args.node_selector),
        tolerations=tuple(Toleration.parse(t) for t in args.toleration),
        retries=args.retries,
        mlflow_secret=args.mlflow_secret,
        data_secret=args.data_secret,
        mlflow_config_map=args.mlflow_config_map,
    )


def _cmd_compile(args: argparse.Namespace) -> int:
    from melanoma_pipelines.compile import compile_pipeline

    path = compile_pipeline(args.output, image=args.image, cluster=_cluster_from_args(args))
    print(f"wrote {path}")
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from melanoma_pipelines.dag import default_run_name, pipeline_arguments
    from melanoma_pipelines.submit import submit

    if not args.host and not args.dry_run:
        raise ConfigError(
            "--host is required (the KFP API, e.g. http://127.0.0.1:8080), or use --dry-run PATH"
        )
    run_name = args.run_name or default_run_name()
    arguments = pipeline_arguments(
        config_from_args(args), args.data, layout=args.layout, task=args.task, run_name=run_name
    )
    result = submit(
        args.host,
        arguments,
        image=args.image,
        cluster=_cluster_from_args(args),
        experiment=args.experiment,
        run_name=run_name,
        namespace=args.namespace,
        dry_run=args.dry_run,
    )
    print(f"wrote {result} (not submitted)" if args.dry_run else f"submitted run {run_name}: {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="melanoma-mlops",
        description="Two-stage ResNet50 melanoma classifier: leakage-proof data, Kubeflow, MLflow.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline locally (kfp.local); no --data: synthetic demo")
    run.add_argument("--data", default="", help="data folder, manifest/metadata CSV, or s3://bucket/prefix")
    _add_data_options(run)
    run.add_argument(
        "--run-name", default=None, help="MLflow parent run name (default: two-stage-<timestamp>)"
    )
    run.add_argument("--pipeline-root", default="local_outputs", help="where kfp.local keeps step outputs")
    run.add_argument(
        "--demo-images", type=int, default=cfg.DEMO_IMAGES, help="images in the generated demo set"
    )
    _add_config_options(run)
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser("compile", help="write the KFP IR YAML of the pipeline")
    comp.add_argument("--output", "-o", default="pipeline.yaml", help="output YAML path")
    _add_cluster_options(comp)
    comp.set_defaults(func=_cmd_compile)

    sm = sub.add_parser("submit", help="compile and submit a run to a Kubeflow Pipelines host")
    sm.add_argument("--host", default="", help="KFP API endpoint (auth token from $KFP_TOKEN)")
    sm.add_argument("--data", required=True, help="data source as the cluster sees it (s3://bucket/prefix)")
    _add_data_options(sm)
    sm.add_argument("--experiment", default="melanoma-two-stage", help="KFP experiment name")
    sm.add_argument("--run-name", default=None, help="KFP run and MLflow parent run name")
    sm.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    sm.add_argument(
        "--dry-run", metavar="PATH", default=None, help="write the package that would be submitted"
    )
    _add_cluster_options(sm)
    _add_config_options(sm)
    sm.set_defaults(func=_cmd_submit)

    server = sub.add_parser(
        "mlflow-server",
        help="start an MLflow tracking server (local: SQLite + ./mlruns; the same command runs in k8s)",
        add_help=False,
    )
    server.set_defaults(func=None)  # dispatched in main() before parsing

    from . import cli_registry

    cli_registry.add_commands(sub)
    from . import ablation_cli

    ablation_cli.add_commands(sub)

    demo = sub.add_parser("demo-data", help="generate a SYNTHETIC dermoscopy-like dataset with lesion masks")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--n", type=int, default=cfg.DEMO_IMAGES, help="number of images")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mlflow-server"]:
        # Its options belong to mlflow_server's own parser (argparse cannot forward them).
        from . import tracking_server as mlflow_server

        return int(mlflow_server.main(argv[1:], prog="melanoma-mlops mlflow-server") or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except MelanomaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
