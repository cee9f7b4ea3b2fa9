"""The detection app: its logic directly, and the page through Streamlit's AppTest.

AppTest (streamlit 1.67) simulates ``st.file_uploader`` uploads (``FileUploader.upload``), so the
page is driven exactly as a user would, minus the browser (tests/browser/test_app_browser.py has that).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import registry_helpers as rh
from streamlit.testing.v1 import AppTest

from melanoma_mlops.app import champion as app_champion
from melanoma_mlops.app import logic as app_logic
from melanoma_mlops.errors import ConfigError, DataError

APP = Path(__file__).resolve().parents[2] / "app" / "app.py"
MODEL = "app-test-model"
TIMEOUT_S = 120  # the first run loads the model; two cores shared with other tests


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rh.Prepared]:
    root = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        rh.use_store(root)
        mp.setenv(app_logic.MODEL_URI_ENV, f"models:/{MODEL}@champion")
        prep = rh.store_with_champion(root, MODEL)
        log_test_intervals(prep, MODEL)
        yield prep


def log_test_intervals(prep: rh.Prepared, model_name: str) -> None:
    """What the pipeline's evaluate step logs on the parent run (registry_helpers skips that step).

    Through the client: tracking.log_metrics would also log on (and so start) an active run.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.evaluation.evaluate import flat_metrics

    client = MlflowClient()
    parent = client.get_model_version(model_name, "1").tags["pipeline_run_id"]
    values = flat_metrics(prep.variants["good"].evaluation)
    client.log_batch(parent, metrics=[Metric(k, v, 0, 0) for k, v in values.items()])


@pytest.fixture(scope="module")
def champion(store: rh.Prepared) -> app_champion.Champion:
    return app_champion.load_champion(f"models:/{MODEL}@champion", app_logic.Settings.from_env().tracking_uri)


@pytest.fixture
def lesion_png() -> bytes:
    return rh.png_bytes(rh.lesion(np.random.default_rng(7), malignant=True, size=48))


# ---------------------------------------------------------------------------------------------
# app_logic
# ---------------------------------------------------------------------------------------------


def test_champion_carries_version_threshold_and_test_metrics(
    champion: app_champion.Champion, store: rh.Prepared
) -> None:
    assert champion.version == "1"
    assert champion.image_size == rh.SIZE
    assert champion.threshold == pytest.approx(float(champion.tags["threshold"]))
    labels = [label for label, _, _ in champion.metrics()]
    assert labels[:3] == ["AUC (test)", "Sensitivity (test)", "Specificity (test)"]
    assert champion.metrics()[0][1] == f"{float(champion.tags['test_auc_roc']):.3f}"
    # Each metric with the confidence interval the evaluate step computed.
    low, high = store.variants["good"].evaluation["ci"]["auc_roc"]
    assert champion.metrics()[0][2] == f"{low:.3f} - {high:.3f}"
    assert all(ci for _, _, ci in champion.metrics())
    about = app_champion.describe_model(champion)
    assert f"models:/{MODEL}@champion | version 1" in about["caption"]
    assert "promotion gate passed" in about["caption"]
    # What the threshold means for benign lesions, from the version's own test specificity.
    specificity = float(champion.tags["test_specificity"])
    flagged = round((1 - specificity) * 10)
    assert f"{flagged} of 10 benign lesions are flagged too" in about["operating_point"] or (
        flagged == 0 and "fewer than 1 in 10" in about["operating_point"]
    )
    assert f"test specificity {specificity:.2f}" in about["operating_point"]
    # The register step records the calibration it measured and that nothing calibrated the output.
    assert champion.tags["calibrated"] == "false"
    ece = float(champion.tags["calibration_ece"])
    assert about["calibration"].startswith("The probability is not calibrated")
    assert f"ECE {ece:.3f}" in about["calibration"] and "Brier score" in about["calibration"]


@pytest.mark.parametrize(
    ("specificity", "expected"),
    [
        ("0.1667", "about 8 of 10 benign lesions"),
        ("0.96", "fewer than 1 in 10 benign lesions"),
        ("0.5", "about 5 of 10"),
    ],
)
def test_the_operating_point_says_how_many_benign_lesions_are_flagged(
    specificity: str, expected: str
) -> None:
    entry = app_champion.RegistryEntry(
        "models:/m@champion", "models:/m/1", "1", {"test_specificity": specificity}
    )
    assert expected in app_champion.operating_point_text(entry)
    assert app_champion.operating_point_text(app_champion.RegistryEntry("u", "u", "", {})) is None


def test_an_older_version_without_calibration_tags_is_still_called_not_calibrated() -> None:
    entry = app_champion.RegistryEntry("u", "u", "1", {}, run_metrics={"test/ece": 0.21})
    text = app_champion.calibration_text(entry)
    assert "not calibrated" in text and "ECE 0.210" in text
    assert "calibrated after training" in app_champion.calibration_text(
        app_champion.RegistryEntry("u", "u", "1", {"calibrated": "true"})
    )


def test_analyse_logs_the_upload(
    champion: app_champion.Champion, lesion_png: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's prediction lands in the prediction log (docs/monitoring.md), named by its hash."""
    import hashlib
    from datetime import UTC, datetime, timedelta

    from melanoma_mlops.serving import log_sink, prediction_log

    monkeypatch.setenv(prediction_log.SOURCE_ENV, "app")
    monkeypatch.setenv(prediction_log.LOG_ENV, str(tmp_path / "log"))
    prediction_log.reset()
    try:
        result = app_logic.analyse(champion, lesion_png)
        prediction_log.flush_active()
    finally:
        prediction_log.reset()
    (record,) = log_sink.read_records(str(tmp_path / "log"), datetime.now(UTC) - timedelta(hours=1)).to_dict(
        "records"
    )
    assert record["source"] == "app" and record["model_name"] == MODEL
    assert record["image_sha256"] == hashlib.sha256(lesion_png).hexdigest()
    assert record["probability"] == pytest.approx(result.probability)


def test_analyse_gives_probability_decision_and_overlay(
    champion: app_champion.Champion, lesion_png: bytes
) -> None:
    result = app_logic.analyse(champion, lesion_png)

    assert 0.0 <= result.probability <= 1.0
    assert result.label == int(result.probability >= champion.threshold)
    assert result.image.shape == (48, 48, 3) and result.image.dtype == np.uint8
    assert result.overlay.shape == result.image.shape
    assert result.heatmap.shape == (48, 48) and 0.0 <= result.heatmap.min() <= result.heatmap.max() <= 1.0
    assert not np.array_equal(result.overlay, result.image)  # the heatmap is actually drawn
    # The colour bar shown under the overlay runs from the colormap's blue (none) to red (strongest).
    assert result.scale.dtype == np.uint8 and result.scale.shape[1] > result.scale.shape[0]
    left, right = result.scale[0, 0], result.scale[0, -1]
    assert left[2] > left[0] and right[0] > right[2]
    assert result.gradcam_flat == (result.heatmap.max() == 0)
    assert app_logic.format_pair(result.probability, champion.threshold)[1] in result.decision_text()
    # The app's number is the served model's number.
    served = champion.pyfunc.predict(pd.DataFrame({"image": [lesion_png]}))["probability"].iloc[0]
    assert result.probability == pytest.approx(served)


@pytest.mark.parametrize(
    ("data", "settings", "message"),
    [
        (b"%PDF-1.4 not an image", app_logic.Settings(), "not a readable image"),
        (b"", app_logic.Settings(), "empty"),
        (rh.bomb_png(), app_logic.Settings(), "decompression bomb"),
        (rh.bomb_png(5000, 5000), app_logic.Settings(max_pixels=1_000_000), "exceeds the limit"),
        (b"\x89PNG" + b"\0" * 4096, app_logic.Settings(max_upload_mb=0.001), "over the 0.001 MB limit"),
    ],
    ids=["not-an-image", "empty", "bomb", "too-many-pixels", "too-large"],
)
def test_check_upload_refuses_with_a_clear_message(
    data: bytes, settings: app_logic.Settings, message: str
) -> None:
    with pytest.raises(DataError, match=message) as info:
        app_logic.check_upload("lesion.png", data, settings)
    assert str(info.value).startswith("lesion.png")


def test_check_upload_refuses_formats_the_app_does_not_offer() -> None:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    with pytest.raises(
        DataError, match=r"lesion\.gif: GIF images are not accepted; use JPEG or PNG\. The app"
    ):
        app_logic.check_upload("lesion.gif", buf.getvalue(), app_logic.Settings())


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(app_logic.MAX_UPLOAD_MB_ENV, "5")
    monkeypatch.setenv(app_logic.MODEL_URI_ENV, "models:/x/3")
    settings = app_logic.Settings.from_env()
    assert settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.model_uri == "models:/x/3"
    monkeypatch.setenv(app_logic.MAX_UPLOAD_MB_ENV, "lots")
    with pytest.raises(ConfigError, match="MELANOMA_APP_MAX_UPLOAD_MB"):
        app_logic.Settings.from_env()


def test_missing_model_is_a_clear_error(store: rh.Prepared) -> None:
    with pytest.raises(ConfigError, match="no model models:/nope@champion"):
        app_champion.load_champion("models:/nope@champion", app_logic.Settings.from_env().tracking_uri)


# ---------------------------------------------------------------------------------------------
# the page (AppTest)
# ---------------------------------------------------------------------------------------------


def loading(at: AppTest) -> bool:
    return any(info.value.startswith("Loading the model") for info in at.info)


def page() -> AppTest:
    """The page once the background loader has finished, as a user sees it after waiting: the page
    re-runs itself every second while the model loads (a fragment); here the test re-runs it."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.run()
    deadline = time.monotonic() + TIMEOUT_S
    while loading(at) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    return at


def test_page_shows_disclaimer_and_model_before_any_upload(store: rh.Prepared) -> None:
    at = page()

    assert not at.exception
    assert "NOT a diagnostic device" in at.warning[0].value
    assert any("version 1" in c.value for c in at.sidebar.caption)
    assert at.sidebar.table  # the test metrics
    assert len(at.file_uploader) == 1
    assert at.file_uploader[0].allowed_type == [".jpg", ".jpeg", ".png"]
    assert not at.metric


def test_upload_shows_probability_decision_and_gradcam(store: rh.Prepared, lesion_png: bytes) -> None:
    at = page()
    at.file_uploader[0].upload("lesion.png", lesion_png, "image/png").run()

    assert not at.exception
    assert not at.error or "at or above the model's operating threshold" in at.error[0].value.lower()
    assert at.metric[0].label == "Estimated probability of malignancy"
    probability = float(at.metric[0].value.rstrip("%")) / 100
    assert 0.0 <= probability <= 1.0
    decisions = [*at.success, *at.error]
    assert len(decisions) == 1 and "operating threshold" in decisions[0].value
    assert len(at.image) == 3
    assert "Grad-CAM" in at.image[1].captions[0]
    assert at.image[2].captions[0].startswith("Colour scale of the overlay: blue = no evidence")
    captions = [c.value for c in at.caption]
    assert any("benign lesions are flagged too" in c for c in captions)  # what the threshold means
    assert any(c.startswith("The probability is not calibrated") for c in captions)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"this is a text file", "not a readable image"),
        ("bomb.png", rh.bomb_png(), "decompression bomb"),
    ],
)
def test_bad_upload_gets_a_message_not_a_traceback(
    store: rh.Prepared, name: str, data: bytes, message: str
) -> None:
    at = page()
    at.file_uploader[0].upload(name, data, "image/png").run()

    assert not at.exception
    assert len(at.error) == 1
    assert at.error[0].value.startswith("This file cannot be analysed:")
    assert message in at.error[0].value
    assert not at.metric and not at.image


def test_oversized_upload_is_refused(
    store: rh.Prepared, lesion_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(app_logic.MAX_UPLOAD_MB_ENV, "0.0001")
    at = page()
    at.file_uploader[0].upload("lesion.png", lesion_png, "image/png").run()

    assert not at.exception
    assert "over the 0.0001 MB limit" in at.error[0].value


def test_page_without_a_champion_says_so(store: rh.Prepared, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(app_logic.MODEL_URI_ENV, "models:/nope@champion")
    at = page()

    assert not at.exception
    assert "The model is not available: no model models:/nope@champion" in at.error[0].value
    assert not at.file_uploader


@pytest.mark.parametrize(
    ("probability", "threshold", "expected"),
    [
        (0.4321, 0.55, ("43.2%", "55.0%")),
        (0.99996, 0.99998, ("99.996%", "99.998%")),
        (0.5, 0.5, ("50.0%", "50.0%")),
    ],
)
def test_probability_and_threshold_are_never_shown_as_equal_when_they_differ(
    probability: float, threshold: float, expected: tuple[str, str]
) -> None:
    assert app_logic.format_pair(probability, threshold) == expected


# ---------------------------------------------------------------------------------------------
# refusals: our words, one list of formats, the limits in force
# ---------------------------------------------------------------------------------------------


def gif() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"%PDF-1.4", "not a readable image (8 bytes); expected JPEG or PNG."),
        (gif(), "GIF images are not accepted; use JPEG or PNG."),
        (rh.bomb_png(30_000, 30_000), "30000x30000 = 900,000,000 pixels exceeds the limit"),
        (rh.bomb_png(12_000, 12_000), "12000x12000 = 144,000,000 pixels exceeds the limit"),
        (b"\xff\xd8\xff" + bytes(23 * 2**20), "23.0 MB is over the 20 MB limit."),
    ],
    ids=["not-an-image", "gif", "900-MP-bomb", "144-MP-bomb", "23-MB"],
)
def test_every_refusal_is_ours_and_names_the_same_formats(data: bytes, says: str) -> None:
    settings = app_logic.Settings(max_pixels=25_000_000)
    with pytest.raises(DataError) as info:
        app_logic.check_upload("lesion.png", data, settings)
    message = str(info.value)
    assert message.startswith(f"lesion.png: {says}")
    assert message.endswith(app_logic.limits_text(settings))
    assert "JPEG or PNG images up to 20 MB" in message
    assert "BMP" not in message and "DOS attack" not in message


def test_the_pixel_limit_is_the_lower_of_the_setting_and_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from melanoma_mlops.serving import memory_budget

    monkeypatch.setattr(memory_budget, "pixel_limit", lambda refresh=False: 40_000_000)
    assert app_logic.Settings(max_pixels=25_000_000).pixel_limit() == 25_000_000
    assert app_logic.Settings(max_pixels=90_000_000).pixel_limit() == 40_000_000
    assert app_logic.Settings().pixel_limit() == 40_000_000
    assert "and 25 megapixels" in app_logic.limits_text(app_logic.Settings(max_pixels=25_000_000))


def test_the_app_limit_never_exceeds_the_servers() -> None:
    assert app_logic.Settings(max_upload_mb=50).within_server_limit(40).max_upload_mb == 40
    assert app_logic.Settings(max_upload_mb=20).within_server_limit(40).max_upload_mb == 20


def test_streamlit_config_next_to_the_app() -> None:
    import tomllib

    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"  # STREAMLIT_SERVER_ADDRESS still wins
    assert config["client"]["toolbarMode"] == "viewer"  # no Deploy button
    # The server's cap leaves room above the app's limit for the app's own message.
    assert (
        app_logic.DEFAULT_MAX_UPLOAD_MB
        < config["server"]["maxUploadSize"]
        <= 2 * app_logic.DEFAULT_MAX_UPLOAD_MB
    )
    assert config["browser"]["gatherUsageStats"] is False


def test_at_most_two_analyses_run_at_once(
    champion: app_champion.Champion, lesion_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from melanoma_mlops.evaluation import gradcam

    active, peak = [0], [0]
    lock, release = threading.Lock(), threading.Event()
    real = gradcam.heatmaps

    def held(*args: object, **kwargs: object) -> object:
        # Each analysis stops inside Grad-CAM until the test lets it go: the ones that got in pile up.
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(120)
        with lock:
            active[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(gradcam, "heatmaps", held)
    threads = [threading.Thread(target=app_logic.analyse, args=(champion, lesion_png)) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while active[0] < app_logic.MAX_CONCURRENT_ANALYSES and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a chance for a third analysis to get in, were the bound missing
    release.set()
    for t in threads:
        t.join()
    assert peak[0] == app_logic.MAX_CONCURRENT_ANALYSES == 2


def test_page_shows_metrics_with_their_confidence_intervals(store: rh.Prepared) -> None:
    at = page()

    table = at.sidebar.table[0].value
    assert list(table.columns) == ["metric", "value", app_champion.CI_LABEL]
    assert table[app_champion.CI_LABEL].str.fullmatch(r"\d\.\d{3} - \d\.\d{3}").all()


def test_a_23_mb_upload_gets_the_apps_message(store: rh.Prepared) -> None:
    at = page()
    at.file_uploader[0].upload("big.jpg", b"\xff\xd8\xff" + bytes(23 * 2**20), "image/jpeg").run()

    assert not at.exception
    assert at.error[0].value.startswith(
        "This file cannot be analysed: big.jpg: 23.0 MB is over the 20 MB limit."
    )
    assert not at.metric
