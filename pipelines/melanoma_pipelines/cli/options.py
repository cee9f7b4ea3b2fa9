"""Option helpers every command shares: options generated from the configuration, cluster options,
and the embedded demo data set.

Every training, evaluation and gate option is generated from :mod:`melanoma_mlops.config`, so the
CLI, the pipeline parameters and the library share one set of names, defaults and ranges.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from melanoma_mlops import config as cfg
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import DEFAULT_IMAGE
from melanoma_pipelines.cluster import ClusterOptions, Toleration, parse_node_selector

logger = logging.getLogger(__name__)

DEMO_DIR = Path("demo_data")


def add_config_options(
    parser: argparse.ArgumentParser, groups: Sequence[str] = tuple(cfg.GROUPS), seed: bool = True
) -> None:
    """One option per field of ``groups`` (and ``--seed``), in one argparse group per concern."""
    defaults = cfg.RunConfig().as_params()
    if seed:
        parser.add_argument(
            "--seed", type=int, default=None, help=f"{cfg.SEED_HELP} (default: {defaults['seed']})"
        )
    for name in groups:
        group = parser.add_argument_group(f"{cfg.GROUPS[name].title} options")
        for f in dataclasses.fields(cfg.GROUPS[name]):
            flag = f"--{cfg.option_name(f.name)}"
            help_ = f"{f.metadata['help']} (default: {defaults[f.name]})"
            kind = cfg.kind_of(f)
            if kind is bool:
                group.add_argument(
                    flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_
                )
            else:
                group.add_argument(
                    flag,
                    dest=f.name,
                    type=kind,
                    default=None,
                    choices=f.metadata.get("choices"),
                    help=help_,
                )


def config_from_args(args: argparse.Namespace, preset: dict[str, Any] | None = None) -> cfg.RunConfig:
    """Explicit options win over the preset, which wins over the dataclass defaults."""
    values = dict(preset or {})
    for name in cfg.field_names():
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return cfg.RunConfig.from_params(values)


def ensure_demo_data(n: int) -> Path:
    """The generated SYNTHETIC demo set in ./demo_data (made anew when missing, of another size, or
    written by another version of the generator or with other settings)."""
    from melanoma_mlops.data import demo

    if not demo.is_current(DEMO_DIR, n):
        logger.info("no --data given: generating %d SYNTHETIC demo images in %s/", n, DEMO_DIR)
        if DEMO_DIR.exists():
            shutil.rmtree(DEMO_DIR)
        demo.generate(DEMO_DIR, n=n)
    return DEMO_DIR.resolve()


def data_and_config(args: argparse.Namespace) -> tuple[str, cfg.RunConfig]:
    """``--data`` and the config, or the demo set and the demo preset when no ``--data`` is given."""
    if args.data:
        data, config = args.data, config_from_args(args)
    else:
        config = config_from_args(args, cfg.DEMO_PRESET)
        data = str(ensure_demo_data(args.demo_images))
        logger.info("demo preset (options you set still win): %s", cfg.DEMO_PRESET)
    return data, config


def check_run_name(name: str) -> None:
    """Refuse up front a run name MLflow could not search for (holding both ' and ")."""
    if "'" in name and '"' in name:
        raise ConfigError(
            f"--run-name {name!r} contains both ' and \": MLflow's search filters cannot quote such a name "
            "(so the run could not be found again); drop one of them"
        )
    if not name.strip():
        raise ConfigError("--run-name is empty: give a name, or leave the option out for a generated one")


def check_local_data(data: str) -> None:
    if not data.startswith("s3://") and not Path(data).exists():
        raise ConfigError(
            f"--data {data}: no such file or folder. Pass a data folder, a CSV, or s3://bucket/prefix."
        )


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
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


def cluster_from_args(args: argparse.Namespace) -> ClusterOptions:
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
