"""The ablation's report: Markdown a reviewer reads, long-format CSV, JSON, the trials table."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from melanoma_mlops.artifacts import (
    ABLATION_PLOT_PNG,
    ABLATION_REPORT_CSV,
    ABLATION_REPORT_JSON,
    ABLATION_REPORT_MD,
    ABLATION_TRIALS_CSV,
    LEAKY_LABEL,
)
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.experiments.ablation.design import Arm
from melanoma_mlops.experiments.ablation.stats import LOWER_IS_BETTER, Stat, _by_arm, _num, _value

REPORT_MD, REPORT_CSV, REPORT_JSON, TRIALS_CSV, PLOT_PNG = (
    ABLATION_REPORT_MD,
    ABLATION_REPORT_CSV,
    ABLATION_REPORT_JSON,
    ABLATION_TRIALS_CSV,
    ABLATION_PLOT_PNG,
)
#: The test AUC arXiv 2606.17504 reports, obtained with the leak.
PUBLISHED_AUC = 0.9559


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
    """The report a reviewer reads: the headline (leak inflation), arms, paired differences, leak counts."""
    metrics_ = comparison["metrics"]
    confidence = comparison["confidence"]
    meta = comparison.get("meta", {})
    lines = ["# Ablation: two-stage vs single-stage fine-tuning, and the leak measured", ""]
    if any(a["leaky"] for a in comparison["arms"]):
        lines += [
            f"> **{LEAKY_LABEL}** rows reproduce the published protocol's mistake (oversample the whole "
            "data set, then split): their test sets contain copies of training images. They measure the "
            "leak; they are not results and can never be registered.",
            "",
        ]
    if meta:
        lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    lines += _headline_section(comparison)
    lines += _arms_section(comparison)
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
    lines += _leak_count_section(comparison)
    lines += [
        f"Intervals: Student-t on the per-seed paired differences ({round(confidence * 100)}%, n-1 df), "
        "clipped to the largest possible difference; with few seeds they are wide on purpose. "
        "'a better' counts seeds where a beat b.",
        "",
    ]
    return "\n".join(lines)


def _headline_section(comparison: Mapping[str, Any]) -> list[str]:
    """Test AUC honest vs leaky per variant, the paired difference with its interval, the leak share."""
    blocks = comparison["leak_inflation"]
    if not blocks:
        return []
    level = f"{round(comparison['confidence'] * 100)}%"
    arms = {a["arm"]: a for a in comparison["arms"]}
    header = [
        "variant",
        "honest AUC",
        "LEAKY AUC",
        "leaky − honest",
        f"{level} CI (paired t)",
        "seeds",
        "leaky test rows with a copy in train",
        "… or a same-lesion/patient image",
    ]
    rows, findings = [], []
    for block in blocks:
        stat: Stat = block["metrics"]["auc_roc"]["stat"]
        leaky, honest = arms[block["a"]], arms[block["b"]]
        variant = Arm.parse(block["a"]).variant
        linked = _pm(leaky["test_linked_share"], 3) if "test_linked_share" in leaky else "n/a"
        rows.append(
            [
                variant,
                _pm(honest["metrics"]["auc_roc"]),
                _pm(leaky["metrics"]["auc_roc"]),
                _signed(stat.mean),
                _ci(stat),
                str(stat.n),
                _pm(leaky["test_copies_share"], 3),
                linked,
            ]
        )
        findings.append(_finding(variant, stat, level))
    return [
        "## Headline: the published protocol's inflation of test AUC",
        "",
        *_table(header, rows),
        "",
        *findings,
        "",
    ]


def _finding(variant: str, stat: Stat, level: str) -> str:
    """One sentence on whether the inflation is shown, in words a reader cannot misread."""
    if stat.n < 2:
        return (
            f"- {variant}: leaky − honest test AUC {_signed(stat.mean)} from {stat.n} seed: no interval; "
            "run at least 2 seeds (3 or more) to tell an inflation from seed noise."
        )
    where = f"{_signed(stat.mean)} (95% CI {_ci(stat)}, {stat.n} seeds)".replace("95%", level)
    if stat.ci_low > 0:
        verdict = "the interval excludes 0: the leak inflates the test AUC on this data."
    elif stat.ci_high < 0:
        verdict = "the interval lies below 0: on this data the leaky protocol scored *lower*; see Limits."
    else:
        verdict = "the interval includes 0: this ablation cannot show an inflation on this data (see Limits)."
    return f"- {variant}: leaky − honest test AUC {where}; {verdict}"


def _arms_section(comparison: Mapping[str, Any]) -> list[str]:
    metrics_ = comparison["metrics"]
    lines = [
        "## Per arm",
        "",
        "Test metrics at the decision threshold frozen on validation; mean ± sample sd over seeds.",
        "",
    ]
    header = [
        "arm",
        "seeds",
        *metrics_,
        "test rows with a copy in train",
        "share of test",
        "share with a copy or same-lesion image",
        "train s",
    ]
    rows = [
        [
            f"**{a['label']}**" if a["leaky"] else a["label"],
            ",".join(str(s) for s in a["seeds"]),
            *(_pm(a["metrics"][m]) for m in metrics_),
            _pm(a["test_copies_in_train"], 1),
            _pm(a["test_copies_share"], 3),
            _pm(a["test_linked_share"], 3) if "test_linked_share" in a else "n/a",
            _pm(a["train_seconds"], 1),
        ]
        for a in comparison["arms"]
    ]
    return [*lines, *_table(header, rows), ""]


def _leak_count_section(comparison: Mapping[str, Any]) -> list[str]:
    header = [
        "trial",
        "test rows",
        "test rows with a copy in train",
        "share",
        "with a copy or same-lesion image",
        "share",
        "val rows with a copy in train",
    ]
    rows = [
        [
            f"**{t['label']}** seed {t['seed']}" if t["leaky"] else f"{t['label']} seed {t['seed']}",
            str(t["n_test"]),
            str(t["test_copies_in_train"]),
            _fmt(t["test_copies_share"], 3),
            str(t.get("test_linked_in_train", "n/a")),
            _fmt(t.get("test_linked_share"), 3),
            str(t["val_copies_in_train"]),
        ]
        for t in comparison["trials"]
    ]
    return ["## Leak count per trial", "", *_table(header, rows), ""]


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


NOTE_LIMIT = 7500  # MLflow caps a tag value (the run description is one) at 8000 characters


def run_note(markdown: str, limit: int = NOTE_LIMIT) -> str:
    """The report as the parent run's description, cut at a line boundary if MLflow would refuse it."""
    if len(markdown) <= limit:
        return markdown
    tail = f"\n\n(truncated: the full report is the artifact ablation/{REPORT_MD})\n"
    cut = markdown.rfind("\n", 0, limit - len(tail))
    return markdown[: max(cut, 0)] + tail
