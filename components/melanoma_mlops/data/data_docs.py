"""One self-contained HTML page of the Great Expectations validation, for MLflow's artifact viewer.

GX Data Docs are a small site: relative links to ``static/`` and stylesheets and scripts from public
CDNs (Bootstrap, jQuery, Vega). Inside MLflow's artifact viewer (and on a machine without Internet)
none of that loads and the page renders unstyled. :func:`self_contained` takes the validation
result page, drops every external or relative stylesheet, script and image, and inlines GX's own
stylesheet plus the few Bootstrap rules the page uses, so the file looks right anywhere by itself.

The validation report also says what never reached the expectations: the rows the label policy
excluded (ISIC ``Indeterminate``, a malignant lesion without a finer diagnosis under ``--task
melanoma``, a file outside the class folders ...), counted by reason and listed with their reason
(:func:`with_exclusions`), on this page and on the step's report.
"""

from __future__ import annotations

import html as html_text
import re
from pathlib import Path

import pandas as pd

REPORT_FILE = "data_docs.html"
#: Excluded rows listed one by one on the page (all of them are in the validate run's data/excluded.csv).
MAX_LISTED_EXCLUSIONS = 500
_EXCLUSIONS_ID = "melanoma-exclusions"

#: The Bootstrap 4 rules the GX validation page relies on (layout, tables, badges, alerts, cards).
_BOOTSTRAP_SUBSET = """
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 font-size:14px;line-height:1.5;color:#212529;background:#fff}
a{color:#007bff;text-decoration:none}
h1,h2,h3,h4,h5,h6,.h6{margin:0 0 .5rem;font-weight:500;line-height:1.2}
.container-fluid{width:100%;padding:0 15px;margin:0 auto}
.row{display:flex;flex-wrap:wrap;margin:0 -15px}
.col-12,[class*="col-md-"],[class*="col-sm-"],[class*="col-lg-"]{position:relative;width:100%;padding:0 15px}
.d-flex{display:flex}.d-none{display:none!important}
.table{width:100%;margin-bottom:1rem;border-collapse:collapse}
.table th,.table td{padding:.5rem;vertical-align:top;border-top:1px solid #dee2e6;text-align:left}
.table thead th{border-bottom:2px solid #dee2e6;background:#f8f9fa}
.table-sm th,.table-sm td{padding:.3rem}
.table-responsive{display:block;width:100%;overflow-x:auto}
.badge{display:inline-block;padding:.25em .4em;font-size:75%;font-weight:700;line-height:1;
 border-radius:.25rem;background:#6c757d;color:#fff;white-space:nowrap}
.alert{position:relative;padding:.5rem .75rem;margin-bottom:.5rem;border:1px solid transparent;
 border-radius:.25rem}
.alert-secondary{color:#383d41;background:#e2e3e5;border-color:#d6d8db}
.card{position:relative;display:flex;flex-direction:column;border:1px solid rgba(0,0,0,.125);
 border-radius:.25rem;margin-bottom:1rem;background:#fff}
.card-header{padding:.5rem 1rem;background:rgba(0,0,0,.03);border-bottom:1px solid rgba(0,0,0,.125)}
.card-body{padding:1rem}
.text-success{color:#28a745!important}.text-danger{color:#dc3545!important}
.bg-light{background:#f8f9fa!important}.rounded{border-radius:.25rem}
.m-0{margin:0!important}.mb-0{margin-bottom:0!important}.mb-1{margin-bottom:.25rem}
.mb-2{margin-bottom:.5rem}.mb-3{margin-bottom:1rem}.mb-4{margin-bottom:1.5rem}
.mt-0{margin-top:0}.mt-1{margin-top:.25rem}.ml-1{margin-left:.25rem}.ml-2{margin-left:.5rem}
.mr-2{margin-right:.5rem}.p-0{padding:0!important}.p-1{padding:.25rem}.p-2{padding:.5rem}
.p-3{padding:1rem}.px-0{padding-left:0;padding-right:0}.pb-1{padding-bottom:.25rem}
.nav,.navbar,.breadcrumb-item,.btn,.sticky,.sticky-top,.ge-navigation-sidebar-link{display:none!important}
.fa-check-circle::before{content:"\\2714";color:#28a745}
.fa-times::before,.fa-times-circle::before{content:"\\2718";color:#dc3545}
.melanoma-note{font-size:12px;color:#6c757d;padding:.5rem 15px}
#melanoma-exclusions{padding:.5rem 15px}
#melanoma-exclusions table{border-collapse:collapse;font-size:12px;margin-bottom:1rem}
#melanoma-exclusions th,#melanoma-exclusions td{border:1px solid #dee2e6;padding:.2rem .4rem;text-align:left}
"""

_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_REMOTE_URL = re.compile(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)", re.IGNORECASE)
_HREF = re.compile(r'href="(?!#)[^"]*"', re.IGNORECASE)


def validation_page(docs_dir: str | Path) -> Path | None:
    """The validation result page of a Data Docs folder (the newest), else its index."""
    root = Path(docs_dir)
    pages = sorted(root.glob("validations/**/*.html"), key=lambda p: p.stat().st_mtime)
    if pages:
        return pages[-1]
    index = root / "index.html"
    return index if index.is_file() else None


def exclusions_html(excluded: pd.DataFrame | None) -> str:
    """The excluded rows as an HTML section: counts per reason, then each row with its reason."""
    rows = excluded if excluded is not None else pd.DataFrame(columns=["image_uri", "source_label", "reason"])
    esc = html_text.escape
    parts = [f'<div id="{_EXCLUSIONS_ID}"><h3>Excluded by the label policy: {len(rows)} row(s)</h3>']
    if not len(rows):
        parts.append("<p>None: every row of the source had a label the task defines.</p></div>")
        return "".join(parts)
    parts.append(
        "<p>These rows never reached the expectations below: their label has no defined meaning for the "
        "task, so they are left out and listed here, never folded into a class.</p>"
    )
    parts.append("<table><thead><tr><th>reason</th><th>rows</th></tr></thead><tbody>")
    for reason, count in rows["reason"].astype(str).value_counts().items():
        parts.append(f"<tr><td>{esc(str(reason))}</td><td>{int(count)}</td></tr>")
    parts.append("</tbody></table>")
    shown = rows.head(MAX_LISTED_EXCLUSIONS)
    has_row = "row" in rows.columns
    parts.append(
        "<table><thead><tr>"
        + ("<th>CSV row</th>" if has_row else "")
        + "<th>image</th><th>source label</th><th>reason</th></tr></thead><tbody>"
    )
    for _, r in shown.iterrows():
        row_cell = f"<td>{esc(str(r['row']))}</td>" if has_row else ""
        parts.append(
            f"<tr>{row_cell}<td>{esc(str(r['image_uri']))}</td><td>{esc(str(r['source_label']))}</td>"
            f"<td>{esc(str(r['reason']))}</td></tr>"
        )
    parts.append("</tbody></table>")
    if len(rows) > len(shown):
        parts.append(
            f"<p>{len(shown)} of {len(rows)} rows listed; all of them are in data/excluded.csv of the "
            "validate run.</p>"
        )
    parts.append("</div>")
    return "".join(parts)


def with_exclusions(page: str, excluded: pd.DataFrame | None) -> str:
    """``page`` (an HTML document) with the exclusions section at the top of its body."""
    section = exclusions_html(excluded)
    if re.search(r"<body\b[^>]*>", page, flags=re.IGNORECASE):
        return re.sub(r"(<body\b[^>]*>)", lambda m: m.group(1) + section, page, count=1, flags=re.IGNORECASE)
    return section + page


def add_exclusions(path: str | Path, excluded: pd.DataFrame | None) -> None:
    """Write the exclusions section into the HTML file at ``path`` (the step's report)."""
    target = Path(path)
    target.write_text(
        with_exclusions(target.read_text(encoding="utf-8", errors="replace"), excluded), "utf-8"
    )


def self_contained(
    docs_dir: str | Path, out: str | Path, excluded: pd.DataFrame | None = None
) -> Path | None:
    """Write ``out``: the validation page with its styles inline and nothing fetched from elsewhere,
    and the rows the label policy excluded at its top."""
    page = validation_page(docs_dir)
    if page is None:
        return None
    html = page.read_text(encoding="utf-8", errors="replace")
    css = _BOOTSTRAP_SUBSET
    gx_css = Path(docs_dir) / "static" / "styles" / "data_docs_default_styles.css"
    if gx_css.is_file():
        css = gx_css.read_text(encoding="utf-8", errors="replace") + "\n" + css
    css = _REMOTE_URL.sub("none", css)
    html = _SCRIPT.sub("", html)
    html = _LINK.sub("", html)
    html = _IMG.sub("", html)
    html = _HREF.sub('href="#"', html)
    html = _REMOTE_URL.sub("none", html)
    style = f"<style>{css}</style>"
    note = (
        '<div class="melanoma-note">Great Expectations validation of the manifest (self-contained copy; '
        "the full Data Docs site is in the data_docs/ artifacts of the validate run).</div>"
    )
    html = html.replace("</head>", f"{style}</head>", 1) if "</head>" in html else style + html
    html = with_exclusions(html, excluded)
    html = re.sub(r"(<body\b[^>]*>)", r"\1" + note, html, count=1, flags=re.IGNORECASE)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
