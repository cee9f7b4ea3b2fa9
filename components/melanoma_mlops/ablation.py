"""The ablation: two-stage vs single-stage fine-tuning over seeds, with the paper's leak as a control.

What it answers. arXiv 2606.17504 reports test AUC 0.9559 for two-stage ResNet50 fine-tuning (Stage 1:
head only on a frozen base; Stage 2: every layer at lr 1e-5). Two questions decide whether that
number means anything:

1. Does the two-stage schedule beat the obvious baseline, **single-stage** fine-tuning (every layer
   trainable from the first epoch, one learning rate), on the same data? Each seed fixes the split,
   the oversampling, the augmentation and the weight initialisation; both variants see the same
   split for a given seed, so the comparison is *paired* by seed and the seed-to-seed spread is
   shown next to the mean.
2. How much of the published number is the leak? The paper oversampled the whole data set to 1:1
   *before* splitting, so copies of one malignant image sat in train and test. The ``leaky`` protocol
   reproduces exactly that (:func:`melanoma_mlops.leakage.paper_leaky_split`) as a **negative
   control**, labelled ``LEAKY (negative control)`` everywhere, tagged ``leaky=true`` in MLflow and
   never registrable (:func:`assert_registrable`). Its report counts the test images that have a
   copy in its training set; the honest arms are counted the same way on their real splits (0).

Vocabulary. A *variant* is a training schedule (``two_stage`` | ``single_stage``); a *protocol* is
the data preparation (``honest``: grouped split, then oversample train only | ``leaky``); an *arm*
is one (protocol, variant) pair; a *trial* is one arm at one seed, written ``protocol:variant:seed``
(e.g. ``honest:two_stage:0``) -- plain strings because that is what a KFP ``ParallelFor`` can
iterate over and branch on, locally and on a cluster.

MLflow layout (experiment ``melanoma-ablation``)::

    ablation parent run            comparison table (Markdown/CSV/JSON), summary metrics
      |- validate                  (the shared data validation)
      |- two_stage seed=0          one run per trial: tags arm/variant/protocol/seed/leaky
      |    |- split, oversample, stage1, stage2, evaluate, summarize
      |- LEAKY (negative control) two_stage seed=0
           |- leaky_split, stage1, stage2, evaluate, summarize      (every run tagged leaky=true)

The maths of the comparison (:func:`mean_sd`, :func:`paired_interval`, :func:`build_comparison`)
is pure and works on plain numbers, so it is tested on hand-made values.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from scipy import stats

from . import EXPERIMENT_NAME, leakage, manifest, metrics, tracking
from .errors import ConfigError
from .leakage import LEAKY_LABEL, LEAKY_TAG, PARENT_TAG

if TYPE_CHECKING:
    from .training import StageResult

logger = logging.getLogger(__name__)

ABLATION_EXPERIMENT = "melanoma-ablation"
# The reused steps (split, stage1, evaluate ...) open their MLflow runs through
# tracking.configure(); this variable tells it which experiment to use so an ablation's step runs
# sit in melanoma-ablation next to their parents instead of in the main experiment.
EXPERIMENT_ENV = tracking.EXPERIMENT_ENV

VARIANTS = ("two_stage", "single_stage")
PROTOCOLS = ("honest", "leaky")
PIPELINE_TAG = "ablation"

SINGLE_STAGE_LR = 1e-4
"""Default learning rate of single-stage fine-tuning (a parameter: ``--single-stage-lr``).

Why 1e-4: with every layer trainable from the start, the randomly initialised head sends large,
noisy gradients into the pretrained base. The Stage 1 rate (1e-3) lets them wreck the ImageNet
features in the first epochs; the Stage 2 rate (1e-5) is too small to train a random head within the
epoch budget. 1e-4 -- one decade below the head rate and one above the fine-tuning rate -- is the
customary Adam rate for end-to-end ResNet50 fine-tuning. It is a prior, not a tuned value: a
single-stage baseline at a poor rate would be a straw man, so rerun the ablation with
``--single-stage-lr 1e-5`` and ``1e-3`` before concluding that two stages are better.
"""

REPORT_METRICS = (
    "auc_roc",
    "pr_auc",
    "pauc_80",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "f1",
    "ece",
)
"""Test metrics in the comparison table (all at the threshold frozen on validation)."""
CONFIDENCE = 0.95
LOWER_IS_BETTER = frozenset({"ece"})
# Largest possible |a - b| per metric: every reported metric lies in [0, 1] except the ISIC pAUC
# above 80% TPR, which lies in [0, 0.2].
DIFFERENCE_BOUND = {m: 0.2 if m == "pauc_80" else 1.0 for m in REPORT_METRICS}

# = evaluate.EVALUATION_FILE; not imported because evaluate pulls in TensorFlow, and the small steps
# (start_trial, summarize, compare ...) should not pay seconds of TensorFlow import each.
EVALUATION_FILE = "evaluation.json"
SUMMARY_FILE = "trial_summary.json"
REPORT_MD = "comparison.md"
REPORT_CSV = "comparison.csv"
REPORT_JSON = "comparison.json"
TRIALS_CSV = "trials.csv"


# --------------------------------------------------------------------------------------------
# arms and trials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One (protocol, variant) pair: a row of the comparison table."""

    protocol: str
    variant: str

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant {self.variant!r} is not one of {', '.join(VARIANTS)}")

    @property
    def key(self) -> str:
        """``protocol:variant``: what the pipeline branches on."""
        return f"{self.protocol}:{self.variant}"

    @property
    def leaky(self) -> bool:
        return self.protocol == "leaky"

    @property
    def label(self) -> str:
        """Human label; the leaky control can never be mistaken for a result."""
        return f"{LEAKY_LABEL} {self.variant}" if self.leaky else self.variant

    @property
    def metric_prefix(self) -> str:
        """MLflow metric-name-safe prefix (no colons): ``honest.two_stage``."""
        return f"{self.protocol}.{self.variant}"

    @classmethod
    def parse(cls, key: str) -> Arm:
        protocol, _, variant = key.partition(":")
        return cls(protocol, variant)


ARMS = tuple(Arm(p, v) for p in PROTOCOLS for v in VARIANTS)
ARM_KEYS = tuple(a.key for a in ARMS)


def parse_list(
    text: str | Sequence[str], allowed: Sequence[str] | None = None, what: str = "value"
) -> list[str]:
    """Split ``a,b`` (or take a sequence), strip, drop empties and duplicates, check membership."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    out = list(dict.fromkeys(s for s in items if s))
    if not out:
        raise ConfigError(f"no {what} given")
    if allowed is not None:
        bad = [s for s in out if s not in allowed]
        if bad:
            raise ConfigError(f"unknown {what} {bad}: choose from {', '.join(allowed)}")
    return out


def parse_seeds(text: str | Sequence[int | str]) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; seeds must be distinct non-negative integers (pairing is by seed)."""
    try:
        seeds = [int(s) for s in parse_list([str(s) for s in text] if not isinstance(text, str) else text)]
    except ValueError as exc:
        raise ConfigError(f"--seeds {text!r}: seeds are comma-separated integers, e.g. 0,1,2") from exc
    if any(s < 0 or s > 2**31 - 1 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must lie in [0, 2**31 - 1]")
    return seeds


def protocols_for(option: str) -> list[str]:
    """``--protocol honest|leaky|both`` -> the protocols to run."""
    if option == "both":
        return list(PROTOCOLS)
    return parse_list([option], PROTOCOLS, "protocol")


def trial_keys(variants: Iterable[str], protocols: Iterable[str], seeds: Iterable[int]) -> list[str]:
    """Every (protocol, variant, seed) as ``protocol:variant:seed``, honest arms first."""
    return [
        f"{Arm(p, v).key}:{int(s)}"
        for p in (p for p in PROTOCOLS if p in set(protocols))
        for v in (v for v in VARIANTS if v in set(variants))
        for s in seeds
    ]


def parse_trial(key: str) -> tuple[Arm, int]:
    """``honest:two_stage:0`` -> (Arm, 0); raises :class:`ConfigError` naming the bad part."""
    arm_key, sep, seed = key.rpartition(":")
    if not sep:
        raise ConfigError(f"trial {key!r} is not protocol:variant:seed (e.g. honest:two_stage:0)")
    try:
        return Arm.parse(arm_key), int(seed)
    except ValueError as exc:
        raise ConfigError(f"trial {key!r}: the seed {seed!r} is not an integer") from exc


def check_trials(trials: Sequence[str]) -> list[tuple[Arm, int]]:
    """Parse every trial; refuse duplicates (a repeated trial would count twice in the means)."""
    parsed = [parse_trial(t) for t in trials]
    if not parsed:
        raise ConfigError("the ablation has no trials: give at least one variant, protocol and seed")
    seen: set[tuple[str, int]] = set()
    for arm, seed in parsed:
        if (arm.key, seed) in seen:
            raise ConfigError(f"trial {arm.key}:{seed} is listed twice")
        seen.add((arm.key, seed))
    return parsed


def single_stage_epochs_default(stage1_epochs: int, stage2_epochs: int) -> int:
    """Single-stage gets the two-stage schedule's total epoch budget, so neither trains longer."""
    return stage1_epochs + stage2_epochs


# --------------------------------------------------------------------------------------------
# the registration guard
# --------------------------------------------------------------------------------------------


# The registration guard (leakage.assert_registrable) lives in leakage.py: register and promotion
# use it without depending on the ablation.
# --------------------------------------------------------------------------------------------
# MLflow helpers
# --------------------------------------------------------------------------------------------


def ablation_experiment_id() -> str:
    return tracking.configure(ABLATION_EXPERIMENT)


def _log_params_once(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    existing = client.get_run(run_id).data.params
    fresh = [Param(k, "" if v is None else str(v)) for k, v in params.items() if k not in existing]
    if fresh:
        client.log_batch(run_id, params=fresh)


def _log_finite(client: MlflowClient, run_id: str, values: Mapping[str, float | None]) -> None:
    """Log the finite values only (MLflow rejects NaN in some stores and NaN says nothing)."""
    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and math.isfinite(float(v))
    ]
    for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
        client.log_batch(run_id, metrics=batch[start : start + 900])


def descendants(client: MlflowClient, run_id: str) -> list[Any]:
    """Runs nested (at any depth) under ``run_id``, in every experiment a step may have used."""
    experiments = {
        exp.experiment_id
        for name in (ABLATION_EXPERIMENT, EXPERIMENT_NAME, os.environ.get(EXPERIMENT_ENV))
        if name and (exp := client.get_experiment_by_name(name)) is not None
    }
    found: list[Any] = []
    frontier = [run_id]
    while frontier:
        current = frontier.pop()
        children = client.search_runs(sorted(experiments), filter_string=f"tags.`{PARENT_TAG}` = '{current}'")
        found.extend(children)
        frontier.extend(c.info.run_id for c in children)
    return found


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def start_ablation_step(
    validate_run_id: str, *, run_name: str, trials: Sequence[str], settings: Mapping[str, Any]
) -> str:
    """Open the ablation's parent run in experiment ``melanoma-ablation``; return its id.

    The shared validate step (reused from the main pipeline) has already opened a parent run for
    the data. When it opened it in the ablation experiment (``MELANOMA_EXPERIMENT`` honoured by
    :func:`tracking.configure`) that run *becomes* the ablation's parent, so the validate step nests
    under it. Otherwise a new parent is created here and the validation run is linked by tag.
    """
    parsed = check_trials(trials)
    arms = list(dict.fromkeys(a for a, _ in parsed))
    seeds = sorted({s for _, s in parsed})
    has_leaky = any(a.leaky for a in arms)
    client = MlflowClient()
    exp_id = ablation_experiment_id()
    validation = client.get_run(validate_run_id)
    tags = {
        "pipeline": PIPELINE_TAG,
        "ablation.arms": ",".join(a.key for a in arms),
        "ablation.seeds": ",".join(str(s) for s in seeds),
        "ablation.includes_leaky_control": str(has_leaky).lower(),
        "data.fingerprint": validation.data.tags.get("data.fingerprint", ""),
        "data.source": validation.data.tags.get("data.source", ""),
    }
    if validation.info.experiment_id == exp_id:
        parent = validate_run_id
    else:
        parent = client.create_run(exp_id, run_name=run_name or None, tags={**tags}).info.run_id
        client.set_tag(validate_run_id, "ablation_run_id", parent)
        tags["validate_run_id"] = validate_run_id
        _log_params_once(client, parent, validation.data.params)
        tracking.finish_pipeline_run(validate_run_id)
        logger.warning(
            "the reused steps record their MLflow runs in experiment %r, not %r: "
            "tracking.configure() does not read %s. The ablation's own runs are complete in %r.",
            client.get_experiment(validation.info.experiment_id).name,
            ABLATION_EXPERIMENT,
            EXPERIMENT_ENV,
            ABLATION_EXPERIMENT,
        )
    for key, value in tags.items():
        client.set_tag(parent, key, value)
    _log_params_once(
        client,
        parent,
        {
            **settings,
            "trials": len(parsed),
            "arms": ",".join(a.key for a in arms),
            "seeds": ",".join(str(s) for s in seeds),
        },
    )
    logger.info(
        "ablation %s: %d trials (%s x seeds %s)%s",
        parent,
        len(parsed),
        ", ".join(a.label for a in arms),
        seeds,
        f"; includes the {LEAKY_LABEL}" if has_leaky else "",
    )
    return parent


def write_run_handle(path: str | Path, run_id: str) -> None:
    """Write a run id as a small file artifact (see the KFP layer for why ids travel this way)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(run_id, encoding="utf-8")


def read_run_handle(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def start_trial_step(ablation_run_id: str, trial: str) -> tuple[str, str, int]:
    """Open the trial's MLflow run under the ablation parent; return (arm key, run id, seed).

    The arm key is what the pipeline branches on; the run id is the ``parent_run_id`` every step of
    the trial (reused or not) nests under, so one trial reads as one run in the MLflow UI.
    """
    arm, seed = parse_trial(trial)
    client = MlflowClient()
    exp_id = client.get_run(ablation_run_id).info.experiment_id
    run = client.create_run(
        exp_id,
        run_name=f"{arm.label} seed={seed}",
        tags={
            PARENT_TAG: ablation_run_id,
            "ablation.trial": trial,
            "ablation.arm": arm.key,
            "ablation.protocol": arm.protocol,
            "ablation.variant": arm.variant,
            "ablation.seed": str(seed),
            LEAKY_TAG: str(arm.leaky).lower(),
            "pipeline": f"{PIPELINE_TAG}-trial",
        },
    )
    client.log_batch(run.info.run_id, params=[Param("variant", arm.variant), Param("protocol", arm.protocol)])
    if arm.leaky:
        logger.warning("trial %s is the %s: it is never registrable", trial, LEAKY_LABEL)
    return arm.key, run.info.run_id, seed


def leaky_split_step(
    manifest_path: str,
    train_path: str,
    val_path: str,
    test_path: str,
    *,
    parent_run_id: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, int]:
    """The published protocol's data preparation, leak included (NEGATIVE CONTROL ONLY).

    Oversample the whole validated manifest to 1:1 first, then a plain stratified row split of the
    oversampled rows (:func:`leakage.paper_leaky_split`). The training manifest is already balanced,
    so there is no separate oversample step; there is deliberately no leakage check that could stop
    it -- the leak is what this arm measures, and :func:`summarize_trial_step` counts it.
    """
    params = {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "oversample_strategy": "random 1:1 of the WHOLE manifest BEFORE the split (LEAKY)",
    }
    with tracking.step_run(parent_run_id, "leaky_split", params):
        mlflow.set_tags({LEAKY_TAG: "true", "protocol": LEAKY_LABEL})
        train, val, test = leakage.paper_leaky_split(
            manifest.read(manifest_path), val_fraction, test_fraction, seed
        )
        for df, path in ((train, train_path), (val, val_path), (test, test_path)):
            manifest.write(df, path)
        counts = {
            "train_images": len(train),
            "val_images": len(val),
            "test_images": len(test),
            "test_copies_in_train": leakage.count_train_copies_in_test(train, test),
            "val_copies_in_train": leakage.count_train_copies_in_test(train, val),
        }
        tracking.log_metrics({f"leaky_split/{k}": v for k, v in counts.items()}, parent_run_id)
        logger.warning(
            "%s split (seed %d): %d train / %d val / %d test rows; %d test rows are copies of training "
            "images",
            LEAKY_LABEL,
            seed,
            len(train),
            len(val),
            len(test),
            counts["test_copies_in_train"],
        )
        return counts


def single_stage(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    lr: float,
    epochs: int,
    patience: int,
    bn_inference: bool,
    seed: int,
    mixed_precision: str = "auto",
    xla: str = "auto",
) -> StageResult:
    """Single-stage fine-tuning: the same classifier with every layer trainable from epoch one.

    Everything except the schedule matches the two-stage variant (architecture, weights, dropout,
    augmentation, early stopping on validation AUC, BatchNorm in inference mode when
    ``bn_inference``, precision and XLA switches), so the paired difference measures the schedule
    alone.
    """
    params = {
        "image_size": image_size,
        "batch_size": batch_size,
        "weights": weights,
        "dropout": dropout,
        "augment": augment,
        "single_stage_lr": lr,
        "single_stage_epochs": epochs,
        "patience": patience,
        "bn_inference": bn_inference,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "xla": xla,
    }
    import keras

    from . import model, training

    with tracking.step_run(parent_run_id, "single_stage", params):
        keras.utils.set_random_seed(seed)
        tracking.log_params({"single_stage_dtype_policy": training.set_precision(mixed_precision)})
        clf = model.build_classifier(image_size, weights, dropout)
        model.unfreeze(clf, bn_inference=bn_inference)
        return training.train_and_save(
            clf, train_manifest, val_manifest, model_dir, stage="single_stage", note="all layers, 1 stage",
            lr=lr, epochs=epochs, patience=patience, image_size=image_size, batch_size=batch_size,
            augment=augment, seed=seed, parent_run_id=parent_run_id, xla=xla,
        )  # fmt: skip


def trial_summary(
    trial: str,
    evaluation: Mapping[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    trial_metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """What the comparison needs from one trial (pure: no MLflow).

    ``test_copies_in_train`` is computed identically for every arm -- test rows whose exact bytes
    (sha256) are in the training manifest the model was trained on -- so the honest arms' zero and
    the leaky arm's count are the same measurement. The full cross-set check (image, bytes,
    duplicate cluster, group) is reported next to it.
    """
    arm, seed = parse_trial(trial)
    report = leakage.check_leakage(train, val, test)
    trial_metrics = trial_metrics or {}
    test_metrics = dict(evaluation.get("test", {}))
    test_metrics["ece"] = evaluation.get("calibration", {}).get("ece")
    n_test = len(test)
    copies = leakage.count_train_copies_in_test(train, test)
    return {
        "trial": trial,
        "arm": arm.key,
        "label": arm.label,
        "protocol": arm.protocol,
        "variant": arm.variant,
        "leaky": arm.leaky,
        "seed": seed,
        "metrics": {k: _num(test_metrics.get(k)) for k in REPORT_METRICS},
        "ci": {k: evaluation.get("ci", {}).get(k) for k in REPORT_METRICS if k in evaluation.get("ci", {})},
        "threshold": _num(evaluation.get("threshold")),
        "n_train": len(train),
        "n_train_unique": int(train["image_uri"].nunique()),
        "n_val": len(val),
        "n_test": n_test,
        "n_test_malignant": int(test["label"].astype(int).sum()),
        "test_copies_in_train": copies,
        "test_copies_share": copies / n_test if n_test else 0.0,
        "val_copies_in_train": leakage.count_train_copies_in_test(train, val),
        "leakage": report.summary(),
        "train_seconds": _num(sum(v for k, v in trial_metrics.items() if k.endswith("/train_seconds"))),
        "epochs_run": int(sum(v for k, v in trial_metrics.items() if k.endswith("/epochs_run"))),
    }


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN; evaluation.json already writes NaN as null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summarize_trial_step(
    evaluation_dir: str,
    train_manifest: str,
    val_manifest: str,
    test_manifest: str,
    summary_dir: str,
    *,
    trial_run_id: str,
    trial: str,
) -> str:
    """Count the leak, collect the trial's figures, log them on the trial run; return the JSON.

    For a leaky trial every run nested under the trial run is tagged ``leaky=true`` too, so a
    filter on that tag in the MLflow UI shows the whole control (the registration guard does not
    need it: it walks up to the trial run).
    """
    arm, seed = parse_trial(trial)
    client = MlflowClient()
    with tracking.step_run(trial_run_id, "summarize"):
        if arm.leaky:
            mlflow.set_tag(LEAKY_TAG, "true")
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        train, val, test = (manifest.read(p) for p in (train_manifest, val_manifest, test_manifest))
        summary = trial_summary(
            trial, evaluation, train, val, test, client.get_run(trial_run_id).data.metrics
        )
        summary["trial_run_id"] = trial_run_id
        out = Path(summary_dir)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(metrics.json_safe(summary), indent=2, allow_nan=False)
        (out / SUMMARY_FILE).write_text(text)
        mlflow.log_artifact(str(out / SUMMARY_FILE))
        counts = {
            "leak/test_copies_in_train": summary["test_copies_in_train"],
            "leak/test_copies_share": summary["test_copies_share"],
            "leak/val_copies_in_train": summary["val_copies_in_train"],
            **{f"leak/{k}": v for k, v in summary["leakage"].items()},
        }
        tracking.log_metrics(counts, trial_run_id)
        if arm.leaky:
            for run in descendants(client, trial_run_id):
                client.set_tag(run.info.run_id, LEAKY_TAG, "true")
        log = logger.warning if arm.leaky else logger.info
        log(
            "%s seed %d: test AUC %s, %d of %d test rows have a copy in train",
            arm.label,
            seed,
            _fmt(summary["metrics"]["auc_roc"]),
            summary["test_copies_in_train"],
            summary["n_test"],
        )
    return text


def finish_trial_step(trial_run_id: str, summary: str) -> str:
    """Close the trial run (FINISHED) and pass its summary on to the comparison."""
    MlflowClient().set_terminated(trial_run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    return summary


# --------------------------------------------------------------------------------------------
# the comparison maths (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean and spread of ``n`` values; ``sd`` (ddof 1) and the interval are NaN when n < 2."""

    n: int
    mean: float
    sd: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    values: tuple[float, ...] = field(default_factory=tuple)


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_sd(values: Iterable[float | None]) -> Stat:
    """Mean ± sample standard deviation (ddof = 1) of the finite values; missing values are dropped."""
    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return Stat(0, float("nan"), float("nan"))
    mean = float(np.mean(vals))
    sd = float(np.std(vals, ddof=1)) if n >= 2 else float("nan")
    return Stat(n, mean, sd, values=tuple(vals))


def paired_interval(
    differences: Iterable[float | None], confidence: float = CONFIDENCE, bound: float | None = None
) -> Stat:
    """Mean of paired differences with a Student-t interval: mean ± t(1-α/2, n-1) · sd / √n.

    Why t and not a bootstrap: with 3-5 seeds a bootstrap of the differences cannot reach the tails,
    while the t interval is exact under normal differences and honest about how little 3 seeds say
    (t(0.975, 2) = 4.30). With n < 2 there is no interval (NaN); identical differences give a
    zero-width one. ``bound``: the largest possible absolute difference (1 for a metric in [0, 1]);
    the interval is clipped to it, since with 2-3 seeds the raw interval can exceed what is possible.
    """
    base = mean_sd(differences)
    if base.n < 2:
        return base
    half = float(stats.t.ppf(0.5 + confidence / 2, base.n - 1)) * base.sd / math.sqrt(base.n)
    low, high = base.mean - half, base.mean + half
    if bound is not None:
        low, high = max(low, -bound), min(high, bound)
    return Stat(base.n, base.mean, base.sd, low, high, base.values)


def _by_arm(summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for s in summaries:
        out.setdefault(str(s["arm"]), {})[int(s["seed"])] = s
    return out


def _value(summary: Mapping[str, Any], metric: str) -> float | None:
    if metric in summary.get("metrics", {}):
        return summary["metrics"][metric]
    return summary.get(metric)


def paired_differences(
    summaries: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    metrics_: Sequence[str] = REPORT_METRICS,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """``a − b`` per seed present in both arms (keys ``protocol:variant``), per metric, with the interval.

    Returns ``{"a", "b", "seeds", "metrics": {metric: {"per_seed": {seed: diff}, "stat": Stat,
    "a_better": k}}}`` where ``a_better`` counts seeds with a strictly positive difference (for
    ``ece`` lower is better, so it counts negative ones).
    """
    arms = _by_arm(summaries)
    seeds = sorted(set(arms.get(a, {})) & set(arms.get(b, {})))
    out: dict[str, Any] = {"a": a, "b": b, "seeds": seeds, "metrics": {}}
    for m in metrics_:
        per_seed: dict[int, float | None] = {}
        for s in seeds:
            va, vb = _value(arms[a][s], m), _value(arms[b][s], m)
            per_seed[s] = None if va is None or vb is None else float(va) - float(vb)
        diffs = _finite(per_seed.values())
        better = sum(1 for d in diffs if (d < 0 if m in LOWER_IS_BETTER else d > 0))
        out["metrics"][m] = {
            "per_seed": per_seed,
            "stat": paired_interval(per_seed.values(), confidence, DIFFERENCE_BOUND.get(m)),
            "a_better": better,
        }
    return out


def build_comparison(
    summaries: Sequence[Mapping[str, Any]],
    metrics_: Sequence[str] = REPORT_METRICS,
    confidence: float = CONFIDENCE,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, from the trial summaries.

    * ``arms``: per arm, mean ± sd over seeds of each metric and of the leak count;
    * ``paired``: ``two_stage − single_stage`` per seed within each protocol that has both;
    * ``leak_inflation``: ``leaky − honest`` per seed for each variant that has both -- what the
      published protocol adds to the numbers (on a different, contaminated test set: that is the
      point).
    """
    if not summaries:
        raise ConfigError("no trial summaries to compare")
    present = [a for a in ARM_KEYS if any(s["arm"] == a for s in summaries)]
    arms = _by_arm(summaries)
    arm_rows = []
    for key in present:
        arm = Arm.parse(key)
        rows = [arms[key][s] for s in sorted(arms[key])]
        arm_rows.append(
            {
                "arm": key,
                "label": arm.label,
                "leaky": arm.leaky,
                "seeds": sorted(arms[key]),
                "metrics": {m: mean_sd(_value(r, m) for r in rows) for m in metrics_},
                "test_copies_in_train": mean_sd(r["test_copies_in_train"] for r in rows),
                "test_copies_share": mean_sd(r["test_copies_share"] for r in rows),
                "train_seconds": mean_sd(r.get("train_seconds") for r in rows),
            }
        )
    paired = [
        paired_differences(summaries, f"{p}:two_stage", f"{p}:single_stage", metrics_, confidence)
        for p in PROTOCOLS
        if f"{p}:two_stage" in present and f"{p}:single_stage" in present
    ]
    inflation = [
        paired_differences(summaries, f"leaky:{v}", f"honest:{v}", metrics_, confidence)
        for v in VARIANTS
        if f"leaky:{v}" in present and f"honest:{v}" in present
    ]
    trials = sorted(summaries, key=lambda s: (ARM_KEYS.index(s["arm"]), int(s["seed"])))
    return {
        "meta": dict(meta or {}),
        "confidence": confidence,
        "metrics": list(metrics_),
        "arms": arm_rows,
        "paired": paired,
        "leak_inflation": inflation,
        "trials": [dict(t) for t in trials],
    }


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _pm(stat: Stat, digits: int = 4) -> str:
    if stat.n == 0:
        return "n/a"
    if stat.n < 2:  # one seed: no spread to show (the seeds column says so)
        return _fmt(stat.mean, digits)
    return f"{_fmt(stat.mean, digits)} ± {_fmt(stat.sd, digits)}"


def _signed(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    value = float(value)
    if abs(value) < 0.5 * 10**-digits:  # a mean of +x and -x is 0, not "-0.0000"
        value = 0.0
    return f"{value:+.{digits}f}"


def _ci(stat: Stat, digits: int = 4) -> str:
    if stat.n < 2:
        return "n/a (n<2)"
    return f"[{_signed(stat.ci_low, digits)}, {_signed(stat.ci_high, digits)}]"


def _label_of(key: str) -> str:
    return Arm.parse(key).label


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _paired_section(block: Mapping[str, Any], metrics_: Sequence[str], confidence: float) -> list[str]:
    seeds = block["seeds"]
    a_label, b_label = _label_of(block["a"]), _label_of(block["b"])
    header = [
        "metric",
        *(f"seed {s}" for s in seeds),
        "mean",
        f"{round(confidence * 100)}% CI (paired t)",
        "a better",
    ]
    rows = []
    for m in metrics_:
        entry = block["metrics"][m]
        stat: Stat = entry["stat"]
        rows.append(
            [
                m + (" (lower is better)" if m in LOWER_IS_BETTER else ""),
                *(_signed(entry["per_seed"].get(s)) for s in seeds),
                _signed(stat.mean),
                _ci(stat),
                f"{entry['a_better']}/{stat.n}",
            ]
        )
    return [f"a = {a_label}, b = {b_label}; {len(seeds)} paired seeds.", "", *_table(header, rows)]


def render_markdown(comparison: Mapping[str, Any]) -> str:
    """The report a reviewer reads: arms, paired differences, leak inflation, leak counts."""
    metrics_ = comparison["metrics"]
    confidence = comparison["confidence"]
    meta = comparison.get("meta", {})
    has_leaky = any(a["leaky"] for a in comparison["arms"])
    lines = ["# Ablation: two-stage vs single-stage fine-tuning", ""]
    if has_leaky:
        lines += [
            f"> **{LEAKY_LABEL}** rows reproduce the published protocol's mistake (oversample the whole "
            "data set, then split): their test sets contain copies of training images. They measure the "
            "leak; they are not results and can never be registered.",
            "",
        ]
    if meta:
        lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    lines += [
        "Test metrics at the decision threshold frozen on validation; mean ± sample sd over seeds.",
        "",
        "## Per arm",
        "",
    ]
    header = ["arm", "seeds", *metrics_, "test rows with a copy in train", "share of test", "train s"]
    rows = [
        [
            f"**{a['label']}**" if a["leaky"] else a["label"],
            ",".join(str(s) for s in a["seeds"]),
            *(_pm(a["metrics"][m]) for m in metrics_),
            _pm(a["test_copies_in_train"], 1),
            _pm(a["test_copies_share"], 3),
            _pm(a["train_seconds"], 1),
        ]
        for a in comparison["arms"]
    ]
    lines += [*_table(header, rows), ""]
    for block in comparison["paired"]:
        protocol = Arm.parse(block["a"]).protocol
        title = "honest protocol" if protocol == "honest" else LEAKY_LABEL
        lines += [f"## Paired differences two_stage − single_stage ({title})", ""]
        lines += [*_paired_section(block, metrics_, confidence), ""]
    if not comparison["paired"]:
        lines += ["## Paired differences", "", "Not computed: run both variants to compare them.", ""]
    for block in comparison["leak_inflation"]:
        variant = Arm.parse(block["a"]).variant
        lines += [f"## Leak inflation: {LEAKY_LABEL} − honest ({variant}, same seed)", ""]
        lines += [
            "How much the published protocol's oversample-then-split adds to each metric. The two arms are "
            "evaluated on different test sets (the leaky one contains copies of training images).",
            "",
        ]
        lines += [*_paired_section(block, metrics_, confidence), ""]
    lines += ["## Leak count per trial", ""]
    header = [
        "trial",
        "test rows",
        "test rows with a copy in train",
        "share",
        "val rows with a copy in train",
    ]
    rows = [
        [
            f"**{t['label']}** seed {t['seed']}" if t["leaky"] else f"{t['label']} seed {t['seed']}",
            str(t["n_test"]),
            str(t["test_copies_in_train"]),
            _fmt(t["test_copies_share"], 3),
            str(t["val_copies_in_train"]),
        ]
        for t in comparison["trials"]
    ]
    lines += [*_table(header, rows), ""]
    lines += [
        f"Intervals: Student-t on the per-seed paired differences ({round(confidence * 100)}%, n-1 df), "
        "clipped to the largest possible difference; with few seeds they are wide on purpose. "
        "'a better' counts seeds where a beat b.",
        "",
    ]
    return "\n".join(lines)


def comparison_rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows (one per arm or comparison and metric) for the CSV."""
    rows: list[dict[str, Any]] = []

    def add(section: str, name: str, metric: str, stat: Stat, per_seed: Mapping[int, Any]) -> None:
        rows.append(
            {
                "section": section,
                "name": name,
                "metric": metric,
                "n": stat.n,
                "mean": _num(stat.mean),
                "sd": _num(stat.sd),
                "ci_low": _num(stat.ci_low),
                "ci_high": _num(stat.ci_high),
                "per_seed": ";".join(
                    f"{s}={'' if v is None else f'{float(v):.6g}'}" for s, v in per_seed.items()
                ),
            }
        )

    by_arm = _by_arm(comparison["trials"])
    for a in comparison["arms"]:
        for m in comparison["metrics"]:
            per_seed = {s: _value(by_arm[a["arm"]][s], m) for s in a["seeds"]}
            add("arm", a["label"], m, a["metrics"][m], per_seed)
        per_seed = {s: by_arm[a["arm"]][s]["test_copies_in_train"] for s in a["seeds"]}
        add("arm", a["label"], "test_copies_in_train", a["test_copies_in_train"], per_seed)
    for section, blocks in (
        ("paired", comparison["paired"]),
        ("leak_inflation", comparison["leak_inflation"]),
    ):
        for block in blocks:
            name = f"{_label_of(block['a'])} - {_label_of(block['b'])}"
            for m in comparison["metrics"]:
                entry = block["metrics"][m]
                add(section, name, m, entry["stat"], entry["per_seed"])
    return rows


def to_json(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (Stats as dicts, NaN as null)."""

    def convert(obj: Any) -> Any:
        if isinstance(obj, Stat):
            return {k: convert(v) for k, v in obj.__dict__.items()}
        if isinstance(obj, Mapping):
            return {str(k): convert(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [convert(v) for v in obj]
        return obj

    return metrics.json_safe(convert(comparison))


def write_reports(comparison: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write comparison.md, comparison.csv (long format), comparison.json and trials.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (REPORT_MD, REPORT_CSV, REPORT_JSON, TRIALS_CSV)}
    paths[REPORT_MD].write_text(render_markdown(comparison))
    _write_csv(paths[REPORT_CSV], comparison_rows(comparison))
    paths[REPORT_JSON].write_text(json.dumps(to_json(comparison), indent=2, allow_nan=False))
    trial_rows = [
        {
            **{k: t[k] for k in ("trial", "label", "protocol", "variant", "seed", "leaky")},
            **{m: t["metrics"].get(m) for m in comparison["metrics"]},
            **{
                k: t.get(k)
                for k in (
                    "threshold",
                    "n_train",
                    "n_val",
                    "n_test",
                    "n_test_malignant",
                    "test_copies_in_train",
                    "test_copies_share",
                    "val_copies_in_train",
                    "train_seconds",
                    "trial_run_id",
                )
            },
        }
        for t in comparison["trials"]
    ]
    _write_csv(paths[TRIALS_CSV], trial_rows)
    return paths


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path.write_text(buf.getvalue())


def summary_metrics(comparison: Mapping[str, Any]) -> dict[str, float | None]:
    """Flat MLflow metrics for the parent run: ``<protocol>.<variant>/<metric>_mean|_sd`` and diffs."""
    flat: dict[str, float | None] = {}
    for a in comparison["arms"]:
        prefix = Arm.parse(a["arm"]).metric_prefix
        for m, stat in a["metrics"].items():
            flat[f"{prefix}/{m}_mean"], flat[f"{prefix}/{m}_sd"] = stat.mean, stat.sd
        flat[f"{prefix}/test_copies_in_train_mean"] = a["test_copies_in_train"].mean
    for section, blocks in (
        ("paired", comparison["paired"]),
        ("leak_inflation", comparison["leak_inflation"]),
    ):
        for block in blocks:
            name = (
                f"{section}.{Arm.parse(block['a']).metric_prefix}-minus-{Arm.parse(block['b']).metric_prefix}"
            )
            for m, entry in block["metrics"].items():
                stat = entry["stat"]
                flat[f"{name}/{m}_mean"] = stat.mean
                flat[f"{name}/{m}_ci_low"], flat[f"{name}/{m}_ci_high"] = stat.ci_low, stat.ci_high
    return flat


NOTE_LIMIT = 7500  # MLflow caps a tag value (the run description is one) at 8000 characters


def run_note(markdown: str, limit: int = NOTE_LIMIT) -> str:
    """The report as the parent run's description, cut at a line boundary if MLflow would refuse it."""
    if len(markdown) <= limit:
        return markdown
    tail = f"\n\n(truncated: the full report is the artifact ablation/{REPORT_MD})\n"
    cut = markdown.rfind("\n", 0, limit - len(tail))
    return markdown[: max(cut, 0)] + tail


def compare_step(ablation_run_id: str, summaries: Sequence[str | Mapping[str, Any]], out_dir: str) -> str:
    """Build the comparison, write the reports, log them on the ablation parent and close it.

    Returns the Markdown (the KFP layer also writes it as a Markdown artifact).
    """
    parsed = [json.loads(s) if isinstance(s, str) else dict(s) for s in summaries if s]
    client = MlflowClient()
    parent = client.get_run(ablation_run_id)
    params = parent.data.params
    meta = {
        "data": params.get("data") or parent.data.tags.get("data.source", ""),
        "data fingerprint": parent.data.tags.get("data.fingerprint", "")[:16],
        "seeds": params.get("seeds", ""),
        "single_stage_lr": params.get("single_stage_lr", ""),
        "epochs (stage1 + stage2 | single_stage)": (
            f"{params.get('stage1_epochs', '?')} + {params.get('stage2_epochs', '?')} | "
            f"{params.get('single_stage_epochs', '?')}"
        ),
        "MLflow ablation run": ablation_run_id,
    }
    comparison = build_comparison(parsed, meta=meta)
    paths = write_reports(comparison, out_dir)
    markdown = paths[REPORT_MD].read_text()
    client.log_artifacts(ablation_run_id, out_dir, "ablation")
    _log_finite(client, ablation_run_id, summary_metrics(comparison))
    client.set_tag(ablation_run_id, "mlflow.note.content", run_note(markdown))
    client.set_terminated(ablation_run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    logger.info("ablation %s: comparison of %d trials written to %s", ablation_run_id, len(parsed), out_dir)
    return markdown


def experiment_env() -> dict[str, str]:
    """Environment every ablation task runs with (see :data:`EXPERIMENT_ENV`)."""
    return {EXPERIMENT_ENV: ABLATION_EXPERIMENT}
