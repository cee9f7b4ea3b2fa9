"""The ablation's comparison as the Markdown a reviewer reads: the headline (the leak's inflation of
test AUC, in words that cannot be misread), the arms, the paired differences, the leak counts.

Text only: the files, the plot and the MLflow summary are
:mod:`melanoma_mlops.experiments.ablation.report`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from melanoma_mlops.artifacts import LEAKY_LABEL
from melanoma_mlops.experiments.ablation.design import Arm
from melanoma_mlops.experiments.ablation.stats import LOWER_IS_BETTER, Stat


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def describe_trial(arm: Arm, seed: int, summary: Mapping[str, Any]) -> str:
    """A trial in one line: its test AUC and how many test rows the training set leaks into."""
    auc = _fmt(summary["metrics"]["auc_roc"])
    return (
        f"{arm.label} seed {seed}: test AUC {auc}; of {summary['n_test']} test rows "
        f"{summary['test_copies_in_train']} have a copy in train, {summary['test_linked_in_train']} a copy "
        "or a same-lesion image"
    )


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
