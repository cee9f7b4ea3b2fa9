"""``melanoma-mlops evaluate``: external validation of a registered model on another data set.

The work is the step library's (:func:`melanoma_mlops.steps.external.external_step`); this module
parses the options (the ``data`` and ``external`` configuration groups, generated from config.py),
refuses a missing data source or store before anything is recorded, and prints the result.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines.cli.options import add_config_options, check_local_data, config_from_args
from melanoma_pipelines.cli.store import use_tracking_store
from melanoma_pipelines.params import EXTERNAL_GROUPS, EXTERNAL_TRAINING_ONLY

logger = logging.getLogger(__name__)
GROUPS = EXTERNAL_GROUPS
#: Options of the data group that only a training run uses: refused, not silently ignored.
IGNORED = EXTERNAL_TRAINING_ONLY


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the main parser's subcommands."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="external validation: a registered model on another data set, as its own MLflow run",
        description="Validate another data set (any supported layout), leave out (or refuse, "
        "--on-overlap fail) its images that copy the model's own train/val/test images, score the rest "
        "at the model's frozen threshold, and record whole-set and per-subgroup figures with 95%% "
        "intervals as an MLflow run; the version gets external.NAME.* tags and a model-card row "
        "(docs/evaluation.md).",
    )
    evaluate.add_argument(
        "--model-uri", default=f"models:/{MODEL_NAME}@{CHAMPION}", help="models:/NAME@ALIAS or models:/NAME/N"
    )
    evaluate.add_argument("--data", required=True, help="data folder, manifest CSV or s3:// prefix")
    evaluate.add_argument("--name", required=True, help="the data set's name (tags external.NAME.*)")
    evaluate.add_argument("--out", default=None, help="folder of the outputs (default: ./external/NAME)")
    add_config_options(evaluate, GROUPS)
    evaluate.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    for option in IGNORED:
        if getattr(args, option) is not None:
            raise ConfigError(
                f"--{option.replace('_', '-')}: evaluate neither splits the data nor chooses the task (the "
                "model's own task labels the images); leave the option out"
            )
    check_local_data(args.data)
    run_cfg = config_from_args(args)
    use_tracking_store()
    # Refused before TensorFlow is imported (the step's scoring needs it) and before any run exists.
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry import external as registry_external

    registry_external.resolve(MlflowClient(), args.model_uri)
    registry_external.check_name(args.name)
    from melanoma_mlops.steps.external import external_step

    out = Path(args.out or Path("external") / args.name)
    result = external_step(
        args.model_uri, args.data, args.name, str(out),
        data_cfg=run_cfg.data, cfg=run_cfg.external, explain=run_cfg.explain, seed=run_cfg.seed,
    )  # fmt: skip
    t, ci = result["external"], result["ci"]
    print(f"external validation {args.name}: {args.model_uri} (version {result['model_version']})")
    print(f"  images scored       {result['n']} ({result['overlaps']} overlapping the model's own left out)")
    print(f"  threshold (frozen)  {result['threshold']:.4f}")
    for key in ("auc_roc", "sensitivity", "specificity"):
        low, high = ci[key]
        print(f"  {key:<19} {t[key]:.3f} [{low:.3f}, {high:.3f}]")
    print(f"  ECE                 {result['calibration']['ece']:.3f}")
    print(f"  MLflow run          {result['run_id']}")
    for line in _evidence_lines(out, MlflowClient().get_run(result["run_id"]).data.params.get("task", "")):
        print(line)
    return 0


def _evidence_lines(out: Path, task: str) -> list[str]:
    """The slices and the overlaps found, from the files the step wrote under ``out``: what a reader
    checks first after the whole-set figures (all of it is on the MLflow run too)."""
    import pandas as pd

    from melanoma_mlops.artifacts import SUBGROUPS_FILE
    from melanoma_pipelines.results import subgroup_table_lines

    table = pd.read_csv(out / "evaluation" / SUBGROUPS_FILE, dtype={"subgroup": str, "value": str},
                        keep_default_na=False)  # fmt: skip
    lines = subgroup_table_lines(table, task or "malignant", str(out / "evaluation" / SUBGROUPS_FILE))
    found = pd.read_csv(out / "overlaps.csv", dtype=str, keep_default_na=False)
    lines.append(f"overlaps with the model's own images, left out ({len(found)}; {out / 'overlaps.csv'}):")
    lines += [
        f"  {Path(r.image_uri).name:<18} {r.kind} copy of {Path(r.reference_uri).name}"
        + (f" ({r.reference_split})" if r.reference_split else "")
        for r in found.itertuples()
    ]
    return lines
