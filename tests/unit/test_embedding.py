"""The compact embedding: the projection fitted, applied and read back; the pyfunc's one forward
pass giving probability and pooled features; records with and without an embedding; and the drift
rule on embedding axes, shifted and not (docs/monitoring.md)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.decomposition import PCA

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.model.embedding import EmbeddingProjection, embedding_columns
from melanoma_mlops.monitoring import drift, monitor
from melanoma_mlops.serving import log_sink, prediction_log, pyfunc
from melanoma_mlops.serving.contract import ModelContract
from melanoma_mlops.serving.image_stats import STAT_COLUMNS
from melanoma_mlops.serving.log_records import ModelIdentity

SINCE = datetime.now(UTC) - timedelta(hours=1)


def png(value: int, size: int = 40) -> bytes:
    pixels = np.clip(np.random.default_rng(value).normal(value, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def log_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A process that serves predictions as ``test``, logging into ``tmp_path/log``."""
    monkeypatch.setenv(prediction_log.SOURCE_ENV, "test")
    monkeypatch.setenv(prediction_log.LOG_ENV, str(tmp_path / "log"))
    for name in (prediction_log.IMAGES_ENV, prediction_log.FORMAT_ENV, prediction_log.QUEUE_ENV):
        monkeypatch.delenv(name, raising=False)
    prediction_log.reset()
    yield tmp_path / "log"
    prediction_log.reset()


def features(rng: np.random.Generator, n: int, width: int = 64, shift: float = 0.0) -> np.ndarray:
    """Features that vary mostly along 4 directions (as pooled features do along a few), plus noise."""
    basis = np.random.default_rng(99).normal(size=(4, width))
    return rng.normal(shift, [5, 4, 3, 2], (n, 4)) @ basis + rng.normal(0, 0.1, (n, width))


def test_the_projection_is_sklearns_pca_and_survives_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, new = features(rng, 200), features(rng, 7)
    projection = EmbeddingProjection.fit(train, dims=16)
    assert projection.dims == 16 and projection.n_fitted == 200
    assert projection.explained_variance > 0.95  # four directions carry nearly all of it
    expected = PCA(n_components=16, random_state=0).fit(train).transform(new)
    np.testing.assert_allclose(projection.apply(new), expected, rtol=1e-3, atol=1e-3)
    path = projection.save(tmp_path / "projection.json")
    assert "PCA" in json.loads(path.read_text())["method"]
    np.testing.assert_array_equal(EmbeddingProjection.load(path).apply(new), projection.apply(new))
    assert projection.columns == embedding_columns(16) and projection.columns[-1] == "emb_15"


def test_few_images_give_fewer_axes_and_bad_files_name_themselves(tmp_path: Path) -> None:
    assert EmbeddingProjection.fit(features(np.random.default_rng(1), 5), dims=16).dims == 4
    with pytest.raises(ConfigError, match="at least 2 training images"):
        EmbeddingProjection.fit(np.zeros((1, 8)))
    bad = tmp_path / "projection.json"
    bad.write_text('{"mean": [1, 2], "components": [[1, 2, 3]]}')
    with pytest.raises(ConfigError, match=f"{bad}: not an embedding projection"):
        EmbeddingProjection.load(bad)
    with pytest.raises(ValueError, match="width 3"):
        EmbeddingProjection.fit(features(np.random.default_rng(1), 20, width=8)).apply(np.zeros((2, 3)))


@pytest.fixture(scope="module")
def embedded(tiny_classifier: Any) -> pyfunc.MelanomaClassifier:
    """The tiny classifier as the pyfunc holds it, with a projection of its 2048 pooled features
    (fitted here on stand-in features: the register step fits it on the training images')."""
    clf = pyfunc.MelanomaClassifier()
    clf.model = tiny_classifier
    clf.contract = ModelContract(image_size=32, threshold=0.5)
    clf.identity = ModelIdentity("melanoma-test", "4", "m-456")
    clf.use_projection(EmbeddingProjection.fit(features(np.random.default_rng(2), 40, width=2048), dims=16))
    return clf


def test_one_forward_pass_gives_the_probability_and_the_pooled_features(
    embedded: pyfunc.MelanomaClassifier, tiny_classifier: Any
) -> None:
    """The two-output model is the classifier itself: the same probability, plus what its head
    decides from (a second pass would double the cost of every request)."""
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    probs, pooled = embedded.scores(pixels)
    assert pooled is not None and pooled.shape == (2, 2048)
    direct = [
        float(np.asarray(tiny_classifier(pixels[i : i + 1], training=False)).ravel()[0]) for i in range(2)
    ]
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)
    assert embedded.scorer is not None and embedded.scorer.get_layer("resnet50") is tiny_classifier.get_layer(
        "resnet50"
    )


def test_records_carry_the_embedding_and_a_version_without_projection_logs_none(
    embedded: pyfunc.MelanomaClassifier, tiny_classifier: Any, log_env: Path
) -> None:
    images = pd.DataFrame({"image": [png(60), png(200)]})
    embedded.predict(None, images)
    plain = pyfunc.MelanomaClassifier()  # a version registered before embeddings
    plain.model, plain.contract = tiny_classifier, embedded.contract
    plain.identity = ModelIdentity("melanoma-test", "1", "m-1")
    plain.predict(None, images)
    prediction_log.flush_active()
    records = log_sink.read_records(str(log_env), SINCE)
    new, old = records[records["model_version"] == "4"], records[records["model_version"] == "1"]
    assert len(new) == len(old) == 2
    assert new[embedding_columns(16)].notna().all().all()
    assert old[embedding_columns(16)].isna().all().all()  # no embedding: the columns are empty


def test_a_projection_that_fails_logs_the_records_without_embedding_and_counts_them(
    embedded: pyfunc.MelanomaClassifier, log_env: Path
) -> None:
    broken = pyfunc.MelanomaClassifier()
    broken.model, broken.contract, broken.identity = embedded.model, embedded.contract, embedded.identity
    broken.scorer = embedded.scorer
    broken.projection = EmbeddingProjection.fit(
        features(np.random.default_rng(4), 20, width=8)
    )  # wrong width
    answer = broken.predict(None, pd.DataFrame({"image": [png(90)]}))
    assert len(answer) == 1  # the caller got the answer
    prediction_log.flush_active()
    records = log_sink.read_records(str(log_env), SINCE)
    assert len(records) == 1 and not any(c.startswith("emb_") for c in records.columns)
    assert prediction_log.active().counts()["unembedded"] == 1
    assert log_sink.read_counts(str(log_env))[0]["unembedded"] == 1


def profile(rng: np.random.Generator, n: int, axis_shift: float = 0.0, dims: int = 16) -> pd.DataFrame:
    """Image statistics and scores from one distribution; embedding axes centred (as PCA scores
    are) with decreasing spread, shifted by ``axis_shift`` of each axis's spread."""
    data: dict[str, Any] = {c: rng.normal(100, 10, n) for c in STAT_COLUMNS}
    data["probability"] = rng.beta(2, 5, n)
    data["label"] = (data["probability"] >= 0.5).astype(int)
    for i, column in enumerate(embedding_columns(dims)):
        spread = 10.0 / (i + 1)
        data[column] = rng.normal(axis_shift * spread, spread, n)
    return pd.DataFrame(data)


def test_embedding_drift_is_found_when_the_embedding_moves_and_only_then() -> None:
    rng = np.random.default_rng(5)
    shifted = drift.assess(profile(rng, 200), profile(rng, 100, axis_shift=1.0))
    assert shifted.status == "drift" and len(shifted.embedding_columns) == 16
    assert any(r.startswith("16 of 16 embedding axes drifted") for r in shifted.reasons), shifted.reasons
    assert shifted.drifted_share < drift.DRIFT_SHARE  # the image statistics did not move: the embedding did
    for _ in range(20):  # the same distributions: half of 16 axes never drift by chance at p < 0.05
        same = drift.assess(profile(rng, 200), profile(rng, 100))
        assert not any("embedding axes drifted" in r for r in same.reasons), same.reasons


def test_a_version_or_window_without_embedding_is_said_in_one_line() -> None:
    rng = np.random.default_rng(6)
    reference = profile(rng, 200)
    old = drift.assess(reference.drop(columns=embedding_columns(16)), profile(rng, 100))
    assert not old.embedding_columns and old.embedding_line().startswith("embedding: not tested")
    unembedded = profile(rng, 100)
    unembedded[embedding_columns(16)] = np.nan  # the projection failed on every chunk
    assert drift.assess(reference, unembedded).embedding_columns == []


def test_the_report_shows_the_embedding_line_and_every_axis() -> None:
    rng = np.random.default_rng(7)
    report = drift.assess(profile(rng, 200), profile(rng, 100, axis_shift=1.0))
    now = datetime.now(UTC)
    result = monitor.MonitorResult("melanoma-test", "4", now - timedelta(days=7), now, report, "run-1")
    assert set(embedding_columns(16)) <= set(report.to_frame()["column"])
    assert "16 of 16 embedding axes drifted" in monitor.html_report(result)
    assert monitor.summary(result).count("embedding axes drifted") == 1  # a reason, not repeated
