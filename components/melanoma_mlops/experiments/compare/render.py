"""The comparison as a person or a script reads it: console text, one self-contained HTML page (the
MLflow UI shows it in the run's Artifacts tab), and JSON-ready data.

Pure: a :class:`~melanoma_mlops.experiments.compare.comparison.Comparison` in, strings out.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from melanoma_mlops.experiments.compare.comparison import (
    N_BOOT,
    Comparison,
    Estimate,
    Pairing,
    interval,
    signed,
    test_set_summary,
)

#: A param value longer than this is shortened in the console table (the JSON and HTML keep it whole).
MAX_CELL = 48


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _estimate(e: Estimate | None) -> str:
    if e is None:
        return "-"
    return f"{e.value:.3f} {interval(e.low, e.high)}"


def _difference(p: Pairing, metric: str) -> str:
    d = p.differences.get(metric)
    if d is None:
        return "not paired"
    return f"{signed(d.delta)} {interval(*d.ci)}"


def _cell(value: str | None) -> str:
    text = "(none)" if value is None else value
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _started(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000)) if ms else "?"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent + "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def text_lines(c: Comparison) -> list[str]:
    """The console answer: the runs, what differs, the metrics side by side, the verdicts."""
    lines = [f"runs ({c.labels[0]} is the reference: each other run is compared with it):"]
    lines += _table(
        ["", "run id", "name", "started"],
        [
            [label, r.run_id[:12], r.name, _started(r.start_time)]
            for label, r in zip(c.labels, c.runs, strict=True)
        ],
    )
    if c.params:
        lines.append("what differs (params):")
        lines += _table(
            ["param", *c.labels], [[k, *(_cell(v) for v in vals)] for k, vals in c.params.items()]
        )
    else:
        lines.append(
            "what differs (params): nothing: the same settings (the differences below are run-to-run noise)"
        )
    diff_heads = [f"{p.label} - {p.reference} (paired 95% CI)" for p in c.pairings]
    lines.append("test metrics, 95% CI (bootstrap by lesion/patient group), each run at its own threshold:")
    lines += _table(
        ["metric", *c.labels, *diff_heads],
        [
            [k, *(_estimate(e) for e in ests), *(_difference(p, k) for p in c.pairings)]
            for k, ests in c.metrics.items()
        ],
    )
    lines += [f"test set: {test_set_summary(p)}" for p in c.pairings]
    for p in c.pairings:
        if p.verdict:
            lines.append(f"verdict: {p.verdict}")
        if p.caution:
            lines.append(f"  caution: {p.caution}")
    return lines


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
td.better { background: #dafbe1; } td.worse { background: #ffebe9; }
p.verdict { font-size: 1.1em; font-weight: 600; }
.note { color: #57606a; }
"""


def _h(value: Any) -> str:
    return html.escape(str(value))


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are already-escaped HTML (a ``<td>`` may carry a class)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _diff_td(p: Pairing, metric: str) -> str:
    d = p.differences.get(metric)
    if d is None:
        return '<td class="note">not paired</td>'
    kind = "better" if d.differs and d.delta > 0 else "worse" if d.differs else ""
    return f'<td class="{kind}">{_h(_difference(p, metric))}</td>'


def html_page(c: Comparison) -> str:
    """One self-contained page (inline CSS, nothing fetched): MLflow's artifact viewer renders it."""
    runs = _html_table(
        ["", "run id", "name", "started"],
        [
            [f"<td>{_h(label)}</td>"]
            + [f"<td>{_h(v)}</td>" for v in (r.run_id, r.name, _started(r.start_time))]
            for label, r in zip(c.labels, c.runs, strict=True)
        ],
    )
    params = (
        _html_table(
            ["param", *map(_h, c.labels)],
            [
                [f"<td>{_h(k)}</td>", *(f"<td>{_h('(none)' if v is None else v)}</td>" for v in vals)]
                for k, vals in c.params.items()
            ],
        )
        if c.params
        else '<p class="note">Nothing: the same settings (the differences below are run-to-run noise).</p>'
    )
    metrics = _html_table(
        [
            "metric",
            *map(_h, c.labels),
            *(_h(f"{p.label} - {p.reference} (paired 95% CI)") for p in c.pairings),
        ],
        [
            [
                f"<td>{_h(k)}</td>",
                *(f"<td>{_h(_estimate(e))}</td>" for e in ests),
                *(_diff_td(p, k) for p in c.pairings),
            ]
            for k, ests in c.metrics.items()
        ],
    )
    verdicts = "".join(
        f'<p class="verdict">{_h(p.verdict)}</p>'
        + (f'<p class="note">Caution: {_h(p.caution)}</p>' if p.caution else "")
        for p in c.pairings
        if p.verdict
    )
    sets = "".join(f'<p class="note">Test set: {_h(test_set_summary(p))}</p>' for p in c.pairings)
    title = " vs ".join(c.labels)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>compare {title}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Run comparison: {_h(title)}</h1>{verdicts}"
        f"<h2>Runs</h2><p class='note'>{_h(c.labels[0])} is the reference: "
        f"each other run is compared with it.</p>{runs}"
        f"<h2>What differs (params)</h2>{params}"
        f"<h2>Test metrics</h2><p class='note'>95% intervals: bootstrap by lesion/patient group "
        f"({N_BOOT} resamples), each run at its own frozen threshold. Green/red: the paired interval of the "
        f"difference excludes 0. The intervals are per metric, not adjusted for looking at "
        f"{len(c.metrics)} of them.</p>{metrics}{sets}"
        f"<p class='note'>Written by <code>melanoma-mlops compare</code>.</p></body></html>"
    )


def as_dict(c: Comparison) -> dict[str, Any]:
    """The comparison as plain JSON-ready data (``compare --json``; NaN as None)."""
    return {
        "runs": [
            {
                "label": label,
                "run_id": r.run_id,
                "name": r.name,
                "status": r.status,
                "start_time": r.start_time,
                "url": r.url,
                "threshold": _num(r.threshold),
                "test_fingerprint": r.test_fingerprint,
                "n_test": None if r.predictions is None else len(r.predictions),
            }
            for label, r in zip(c.labels, c.runs, strict=True)
        ],
        "params": {k: dict(zip(c.labels, v, strict=True)) for k, v in c.params.items()},
        "metrics": {
            k: {
                label: None
                if e is None
                else {"value": _num(e.value), "ci_low": _num(e.low), "ci_high": _num(e.high)}
                for label, e in zip(c.labels, ests, strict=True)
            }
            for k, ests in c.metrics.items()
        },
        "pairings": [_pairing_dict(p) for p in c.pairings],
        "confidence": 0.95,
        "n_boot": N_BOOT,
    }


def _pairing_dict(p: Pairing) -> dict[str, Any]:
    return {
        "run": p.label,
        "reference": p.reference,
        "paired": not p.unpaired_reason,
        "unpaired_reason": p.unpaired_reason or None,
        "n_images": p.n_images,
        "n_malignant": p.n_malignant,
        "unit": p.unit or None,
        "differences": {
            k: {
                "delta": _num(d.delta),
                "ci_low": _num(d.ci[0]),
                "ci_high": _num(d.ci[1]),
                "differs": d.differs,
            }
            for k, d in p.differences.items()
        },
        "verdict": p.verdict or None,
        "caution": p.caution or None,
    }
