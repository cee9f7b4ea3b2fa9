"""The ablation's report files: the Markdown (rendered by :mod:`.comparison_md`), long-format CSV, JSON, the
trials table and the per-seed AUC plot; plus the flat metrics and the note on the MLflow parent run."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from melanoma_mlops.artifacts import (
    ABLATION_PLOT_PNG,
    ABLATION_REPORT_CSV,
    ABLATION_REPORT_JSON,
    ABLATION_REPORT_MD,
    ABLATION_TRIALS_CSV,
    TRIAL_SUMMARY_FILE,
)
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.experiments.ablation.comparison_md import render_markdown
from melanoma_mlops.experiments.ablation.design import Arm
from melanoma_mlops.experiments.ablation.stats import Stat, _by_arm, _num, _value

REPORT_MD, REPORT_CSV, REPORT_JSON, TRIALS_CSV, PLOT_PNG = (
    ABLATION_REPORT_MD,
    ABLATION_REPORT_CSV,
    ABLATION_REPORT_JSON,
    ABLATION_TRIALS_CSV,
    ABLATION_PLOT_PNG,
)
#: The test AUC arXiv 2606.17504 reports, obtained with the leak.
PUBLISHED_AUC = 0.9559


def plot_auc_per_seed(comparison: Mapping[str, Any], path: str | Path) -> Path:
    """Test AUC of every trial, one column per arm, one marker per seed (lines join a seed's arms),
    the arm's mean as a bar and the published 0.9559 as a dashed line. Matplotlib without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = [a["arm"] for a in comparison["arms"]]
    by_arm = _by_arm(comparison["trials"])
    seeds = sorted({int(t["seed"]) for t in comparison["trials"]})
    fig = Figure(figsize=(1.9 * len(arms) + 2.2, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, seed in enumerate(seeds):
        xs = [i for i, a in enumerate(arms) if seed in by_arm[a]]
        ys = [_value(by_arm[arms[i]][seed], "auc_roc") for i in xs]
        ax.plot(
            xs, [np.nan if y is None else y for y in ys], "o-", color=f"C{k}", alpha=0.7, label=f"seed {seed}"
        )
    for i, a in enumerate(comparison["arms"]):
        mean = a["metrics"]["auc_roc"].mean
        ax.hlines(mean, i - 0.25, i + 0.25, color="black", lw=2, label="arm mean" if i == 0 else None)
    ax.axhline(PUBLISHED_AUC, ls="--", color="grey", lw=1, label=f"published (leaky) {PUBLISHED_AUC}")
    ax.set_xticks(range(len(arms)), [_short_label(a) for a in arms])
    ax.set_ylabel("test AUC-ROC")
    ax.set_title("Test AUC per arm and seed")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _short_label(key: str) -> str:
    arm = Arm.parse(key)
    return f"LEAKY\n{arm.variant}" if arm.leaky else f"honest\n{arm.variant}"


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
            name = f"{Arm.parse(block['a']).label} - {Arm.parse(block['b']).label}"
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
    """Write comparison.md, comparison.csv (long format), comparison.json, trials.csv and the plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (REPORT_MD, REPORT_CSV, REPORT_JSON, TRIALS_CSV, PLOT_PNG)}
    plot_auc_per_seed(comparison, paths[PLOT_PNG])
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
                    "test_linked_in_train",
                    "test_linked_share",
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


def write_trial_summary(summary: Mapping[str, Any], summary_dir: str | Path) -> tuple[Path, str]:
    """The trial summary as ``trial_summary.json`` in ``summary_dir``; returns (the file, its JSON)."""
    out = Path(summary_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics.json_safe(summary), indent=2, allow_nan=False)
    (out / TRIAL_SUMMARY_FILE).write_text(text)
    return out / TRIAL_SUMMARY_FILE, text


def trial_leak_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """A trial summary's leak counts as ``leak/*`` metrics of the trial run."""
    return {
        "leak/test_copies_in_train": summary["test_copies_in_train"],
        "leak/test_copies_share": summary["test_copies_share"],
        "leak/test_linked_in_train": summary["test_linked_in_train"],
        "leak/test_linked_share": summary["test_linked_share"],
        "leak/val_copies_in_train": summary["val_copies_in_train"],
        **{f"leak/{k}": v for k, v in summary["leakage"].items()},
    }


NOTE_LIMIT = 7500  # MLflow caps a tag value (the run description is one) at 8000 characters


def run_note(markdown: str, limit: int = NOTE_LIMIT) -> str:
    """The report as the parent run's description, cut at a line boundary if MLflow would refuse it."""
    if len(markdown) <= limit:
        return markdown
    tail = f"\n\n(truncated: the full report is the artifact ablation/{REPORT_MD})\n"
    cut = markdown.rfind("\n", 0, limit - len(tail))
    return markdown[: max(cut, 0)] + tail
