"""Runs that compare themselves, in a real MLflow UI (issue 12): two tiny local runs that differ in one
option (``--stage2-lr``), a real ``mlflow server`` on 127.0.0.1 over their store (what ``make ui``
serves), and headless Chromium driven by Playwright (Debian's /usr/bin/chromium; nothing downloaded).

Checked: the experiment opens in the model-training view from the link a run prints; the parent runs'
names show the difference; a parent run page shows the test AUC with its interval, the registered
version and the model card; the Compare view shows the changed parameter, and the ``stage2/val_auc``
chart draws both runs' curves labelled by run name. Issue 22: a browser that never chose a view
walks root -> experiment -> Compare -> run -> model version by clicking and never sees the GenAI
view, reaching the version from the parent run's "Registered models"; the runs-table link we print
shows the test metrics as columns; ``compare``'s page is shown in the newest run's Artifacts tab.

``MELANOMA_UI_SCREENSHOTS=docs`` writes the screenshots the README shows (docs/mlflow_*.png).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium

from melanoma_mlops import tracking, ui_links
from melanoma_pipelines import cli, results

TIMEOUT_MS = 60_000
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_runs(two_pipeline_runs: dict) -> Iterator[dict]:
    """The two local runs (conftest), then a tracking server over their store, as ``make ui`` serves it."""
    from servers import mlflow_server

    runs = two_pipeline_runs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", runs["uri"])
        run_url = results.run_url(runs["changed"].info.run_id)  # the link the run printed
    store = runs["store"]
    with mlflow_server(
        runs["work"] / "server", str(store / "artifacts"), backend_store_uri=runs["uri"]
    ) as url:
        yield {**runs, "url": url, "run_url": run_url}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def _page(browser: object, url: str) -> object:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})  # type: ignore[attr-defined]
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


def _shot(page: object, name: str) -> None:
    folder = os.environ.get("MELANOMA_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"mlflow_{name}.png"))  # type: ignore[attr-defined]


def test_the_experiment_opens_in_the_model_training_view_with_named_runs(browser, two_runs: dict) -> None:
    exp, base, changed = two_runs["exp"], two_runs["base"], two_runs["changed"]
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    # The generated name says what differs from the first run (named by --run-name): the option.
    assert "lr2=3e-05" in changed.info.run_name.split() and base.info.run_name == "tiny"
    link = two_runs["run_url"].replace(results.LOCAL_UI, two_runs["url"])
    assert "workflowType=machine_learning" in link
    page = _page(
        browser, f"{two_runs['url']}/#/experiments/{exp.experiment_id}?workflowType=machine_learning"
    )
    page.get_by_text(base.info.run_name, exact=True).wait_for()
    page.get_by_text(changed.info.run_name, exact=True).wait_for()
    assert page.get_by_text("Model training").count() >= 1
    assert page.get_by_text("Traces: No data").count() == 0
    assert page.get_by_text(base.data.tags["data.fingerprint"][:12], exact=False).count() >= 1  # Dataset
    _shot(page, "runs")
    page.close()


def test_the_parent_run_page_shows_auc_with_ci_the_model_and_its_card(browser, two_runs: dict) -> None:
    exp, run = two_runs["exp"], two_runs["changed"]
    m = run.data.metrics
    auc = (
        f"test AUC {m['test/auc_roc']:.3f} [{m['test/auc_roc_ci_low']:.3f}, {m['test/auc_roc_ci_high']:.3f}]"
    )
    page = _page(
        browser,
        f"{two_runs['url']}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning",
    )
    page.get_by_text(auc, exact=False).first.wait_for()
    version = run.data.tags["model.version"]
    page.get_by_role("link", name=f"melanoma-resnet50 version {version}").wait_for()
    if page.get_by_text("Show more", exact=True).count():
        page.get_by_text("Show more", exact=True).first.click()  # the whole description
    page.get_by_text("Description", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    _shot(page, "run")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("model_card.md").first.click()
    page.get_by_text("Intended use", exact=False).first.wait_for()
    for name in ("data_docs.html", "gradcam", "evaluation", "promotion"):
        assert page.get_by_text(name, exact=True).count() >= 1, name
    _shot(page, "model_card")
    # The Data Docs page renders styled inside MLflow's viewer: its CSS is inline, nothing fetched.
    page.get_by_text("data_docs.html", exact=True).click()
    frame = page.frame_locator("iframe").first
    frame.get_by_text("self-contained copy", exact=False).wait_for()
    color = frame.locator(".alert-secondary").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert color == "rgb(226, 227, 229)", color  # Bootstrap's alert-secondary, from the inline subset
    _shot(page, "data_docs")
    page.close()


def test_the_compare_view_shows_the_changed_parameter_and_both_curves(browser, two_runs: dict) -> None:
    exp, base, changed = two_runs["exp"], two_runs["base"], two_runs["changed"]
    ids = json.dumps([changed.info.run_id, base.info.run_id])
    page = _page(
        browser,
        f'{two_runs["url"]}/#/compare-runs?runs={ids}&experiments=["{exp.experiment_id}"]'
        "&workflowType=machine_learning",
    )
    row = page.locator("tr", has_text="stage2_lr").first
    row.wait_for()
    assert re.search(r"stage2_lr\s+3e-05\s+1e-05", row.inner_text()), row.inner_text()
    page.get_by_role("switch").first.click()  # the parameter table's "Show diff only"
    page.locator("tr", has_text="stage2_lr").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    assert page.locator("tr", has_text="image_size").count() == 0  # equal settings are hidden
    _shot(page, "compare")
    key = urllib.parse.quote('"stage2/val_auc"', safe="")
    page.goto(
        f'{two_runs["url"]}/#/metric?runs={ids}&metric={key}&experiments=["{exp.experiment_id}"]'
        f"&plot_metric_keys=%5B{key}%5D&x_axis=step&show_point=true&workflowType=machine_learning"
    )
    for run in (changed, base):  # the legend names each curve by its run
        page.get_by_text(f"{run.info.run_name} (stage2/val_auc)", exact=True).wait_for()
    _shot(page, "metric")
    page.close()


#: Sidebar entries only the GenAI view has (MLflow 3.17): none may show on the model-training path.
GENAI_ONLY = ("Judges", "Playground", "Agent versions", "Sessions")


def _in_model_training_view(page: object, where: str) -> None:
    """The switch says model training (stored by our server's default), the URL does not ask for
    GenAI, and no GenAI-only entry or the GenAI overview is on the page."""
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]
    stored = page.evaluate("() => window.localStorage.getItem('mlflow.workflowType_v1')")  # type: ignore[attr-defined]
    assert stored == '"machine_learning"', (where, stored)
    assert "workflowType=genai" not in page.url, (where, page.url)  # type: ignore[attr-defined]
    shown = [w for w in GENAI_ONLY if page.get_by_text(w, exact=True).count()]  # type: ignore[attr-defined]
    assert not shown, (where, shown)
    assert page.get_by_text("Traces: No data").count() == 0, where  # type: ignore[attr-defined]


def test_every_path_from_the_root_stays_in_the_model_training_view(browser, two_runs: dict) -> None:
    """Root -> experiment -> Compare -> run -> model version, by clicking, in a browser that never
    chose a view: never the GenAI view, and the parent run links its registered version."""
    base, changed = two_runs["base"], two_runs["changed"]
    version = changed.data.tags["model.version"]
    page = _page(browser, f"{two_runs['url']}/")
    page.get_by_role("link", name="melanoma-two-stage").first.click()
    page.get_by_text(changed.info.run_name, exact=True).wait_for()
    _in_model_training_view(page, "experiment")
    for run in (changed, base):
        page.locator(f"[row-id='{run.info.run_id}'] .ag-checkbox-input-wrapper").first.click()
    page.get_by_role("button", name="Compare").first.click()
    page.locator("tr", has_text="stage2_lr").first.wait_for()
    _in_model_training_view(page, "compare")
    page.get_by_role("link", name=changed.info.run_id).first.click()
    page.get_by_text("Registered models", exact=True).first.wait_for()
    _in_model_training_view(page, "run")
    link = page.locator(f"a[href*='#/models/melanoma-resnet50/versions/{version}']", has_text=f"v{version}")
    link.first.click()  # the "Registered models" entry of the parent run's overview
    page.get_by_text(f"Version {version}", exact=True).first.wait_for()
    _in_model_training_view(page, "model version")
    page.close()


def test_the_runs_table_link_shows_the_test_metrics_as_columns(browser, two_runs: dict) -> None:
    page = _page(browser, ui_links.runs_table_url(two_runs["exp"].experiment_id, two_runs["url"]))
    page.get_by_text(two_runs["changed"].info.run_name, exact=True).wait_for()
    for column in ("test/auc_roc", "test/auc_roc_ci_low", "test/sensitivity"):
        page.get_by_text(column, exact=True).first.wait_for()
    _in_model_training_view(page, "runs table")
    page.close()


def test_compare_logs_its_page_on_the_newest_run_for_the_mlflow_ui(
    browser, two_runs: dict, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_runs["uri"])
    assert cli.main(["compare", "--last", "2"]) == 0
    changed = two_runs["changed"]
    page = _page(
        browser, ui_links.run_url(changed.info.run_id, two_runs["exp"].experiment_id, two_runs["url"])
    )
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("compare", exact=True).first.click()
    base = two_runs["base"]
    page.get_by_text(f"A-{base.info.run_id[:8]}_vs_B-{changed.info.run_id[:8]}.html", exact=True).click()
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Run comparison: A vs B", exact=False).wait_for()
    frame.locator("p.verdict").first.wait_for()
    _shot(page, "compare_page")
    page.close()
