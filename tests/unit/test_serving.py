"""The registered pyfunc: every accepted input form, training-identical pixels, clear refusals,
``melanoma-mlops predict`` (``mlflow models serve`` answering JSON over HTTP: test_serving_server.py
in tests/integration).
"""

from __future__ import annotations

import base64
import io
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import registry_helpers as rh
from mlflow.exceptions import MlflowException
from PIL import Image

from melanoma_mlops.errors import DataError
from melanoma_mlops.model import dataset
from melanoma_mlops.serving import decoding, formats, headers, inputs, memory_budget, pyfunc
from melanoma_mlops.serving.errors import InvalidImageError
from melanoma_pipelines import cli

MODEL = "serving-test-model"
SERVE_TIMEOUT_S = 180  # `mlflow models serve` imports TensorFlow and loads the model first


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rh.Prepared]:
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        rh.use_store(root)
        yield rh.store_with_champion(root, MODEL)


@pytest.fixture(scope="module")
def loaded(store: rh.Prepared) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return rh.lesion(np.random.default_rng(3), malignant=True, size=40)


@pytest.fixture(scope="module")
def png(image: np.ndarray) -> bytes:
    return rh.png_bytes(image)


def probability(loaded: mlflow.pyfunc.PyFuncModel, frame: object) -> float:
    return float(loaded.predict(frame)["probability"].iloc[0])


# ---------------------------------------------------------------------------------------------
# input forms
# ---------------------------------------------------------------------------------------------


def test_output_is_probability_label_and_class_at_the_frozen_threshold(
    loaded: mlflow.pyfunc.PyFuncModel, store: rh.Prepared, png: bytes
) -> None:
    test = pd.read_csv(store.manifests["test"])
    frame = pd.DataFrame({"image": [Path(u).read_bytes() for u in test["image_uri"]]})
    out = loaded.predict(frame)

    assert list(out.columns) == ["probability", "label", "class_name"]
    assert out["probability"].between(0, 1).all()
    threshold = pyfunc.unwrap(loaded).threshold
    assert threshold == pytest.approx(store.variants["good"].evaluation["threshold"])
    assert (out["label"] == (out["probability"] >= threshold).astype(int)).all()
    assert set(out["class_name"]) <= {"benign", "malignant"}
    assert (out["class_name"] == np.where(out["label"] == 1, "malignant", "benign")).all()


def test_bytes_base64_and_arrays_give_the_same_answer(
    loaded: mlflow.pyfunc.PyFuncModel, png: bytes, image: np.ndarray
) -> None:
    b64 = base64.b64encode(png).decode()
    forms = {
        "bytes": pd.DataFrame({"image": [png]}),
        "base64": pd.DataFrame({"image": [b64]}),
        "base64 with MIME line breaks": pd.DataFrame({"image": [base64.encodebytes(png).decode()]}),
        "data URL": pd.DataFrame({"image": [f"data:image/png;base64,{b64}"]}),
        "base64 text as bytes (inputs/instances JSON)": pd.DataFrame({"image": [b64.encode()]}),
        "HxWx3 uint8 array": pd.DataFrame({"image": [image]}),
        "HxWx4 RGBA array": pd.DataFrame(
            {"image": [np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])]}
        ),
        "dict": {"image": [png]},
        "4-D batch via to_model_input": inputs.to_model_input(image[None]),
    }
    expected = probability(loaded, forms["bytes"])
    for name, frame in forms.items():
        assert probability(loaded, frame) == pytest.approx(expected, abs=1e-6), name


def test_a_4d_array_is_accepted_by_the_model_itself(
    loaded: mlflow.pyfunc.PyFuncModel, image: np.ndarray
) -> None:
    batch = np.stack([image, image[::-1]])
    inner = pyfunc.unwrap(loaded)

    direct = inner.predict(None, batch)
    via_pyfunc = loaded.predict(inputs.to_model_input(batch))

    assert len(direct) == 2
    np.testing.assert_allclose(direct["probability"], via_pyfunc["probability"], atol=1e-6)
    # MLflow's schema enforcement refuses an n-d array for a column signature before predict
    # runs: the documented reason for to_model_input.
    with pytest.raises(MlflowException):
        loaded.predict(batch)


def test_pixels_are_computed_exactly_as_in_training(store: rh.Prepared) -> None:
    test = pd.read_csv(store.manifests["test"], dtype={"sha256": str}, keep_default_na=False)
    training_batch = next(iter(dataset.make_dataset(test.head(4), 24, 4)))[0].numpy()

    served = inputs.images_from_input(
        pd.DataFrame({"image": [Path(u).read_bytes() for u in test["image_uri"].head(4)]}), 24
    )

    np.testing.assert_array_equal(served, training_batch)


def test_empty_input_gives_an_empty_answer(loaded: mlflow.pyfunc.PyFuncModel) -> None:
    out = pyfunc.unwrap(loaded).predict(None, pd.DataFrame({"image": []}))
    assert len(out) == 0 and list(out.columns) == ["probability", "label", "class_name"]


# ---------------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"garbage bytes", "row 0: not a readable image"),
        ("this is !! not base64", "row 0: 'image' is text but not valid base64"),
        (base64.b64encode(b"valid base64, not an image").decode(), "row 0: not a readable image"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 2), np.uint8), r"\(H, W, 3\)"),
        (None, "row 0: 'image' is empty"),
        ("BOMB", "decompression bomb"),
    ],
    ids=["garbage", "bad-base64", "base64-non-image", "float-array", "two-channels", "none", "bomb"],
)
def test_garbage_is_refused_with_a_data_error(
    loaded: mlflow.pyfunc.PyFuncModel, value: object, message: str
) -> None:
    if isinstance(value, str) and value == "BOMB":
        value = base64.b64encode(rh.bomb_png()).decode()
    with pytest.raises(DataError, match=message):
        loaded.predict(pd.DataFrame({"image": [value]}))


def test_missing_column_and_a_tiff_are_refused(loaded: mlflow.pyfunc.PyFuncModel, image: np.ndarray) -> None:
    inner = pyfunc.unwrap(loaded)
    with pytest.raises(DataError, match="needs an 'image' column"):
        inner.predict(None, pd.DataFrame({"picture": [b"x"]}))
    # (Through the pyfunc, MLflow's schema enforcement refuses a number before the model sees it.)
    with pytest.raises(DataError, match="not int"):
        inner.predict(None, pd.DataFrame({"image": [12345]}))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="TIFF")
    with pytest.raises(DataError, match="TIFF images are not accepted"):
        inner.predict(None, pd.DataFrame({"image": [buf.getvalue()]}))


def test_the_input_error_is_a_400_for_the_scoring_server() -> None:
    err = InvalidImageError("row 0: not a readable image")
    assert isinstance(err, DataError) and isinstance(err, MlflowException)
    assert err.get_http_status_code() == 400
    assert str(err) == "row 0: not a readable image"


# ---------------------------------------------------------------------------------------------
# what MLflow records
# ---------------------------------------------------------------------------------------------


def test_logging_the_model_raises_no_type_hint_warning(tmp_path: Path, store: rh.Prepared) -> None:
    contract = tmp_path / "contract.json"
    contract.write_text(json.dumps({"input": {"image_size": rh.SIZE}, "threshold": 0.5}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlflow.pyfunc.save_model(
            path=str(tmp_path / "model"),
            python_model=pyfunc.MelanomaClassifier(),
            artifacts={
                pyfunc.KERAS_ARTIFACT: str(store.variants["good"].model_dir / rh.MODEL_FILE),
                pyfunc.CONTRACT_ARTIFACT: str(contract),
            },
            signature=pyfunc.SIGNATURE,
            pip_requirements=["mlflow"],  # skip requirement inference, which re-imports the model
        )
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "type hint" in m.lower()], messages


def test_registered_model_ships_a_serving_input_example(store: rh.Prepared) -> None:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion"))
    example = json.loads((local / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image"]
    raw = base64.b64decode(example["dataframe_split"]["data"][0][0])
    assert formats.sniff_format(raw) == "PNG"


# ---------------------------------------------------------------------------------------------
# melanoma-mlops predict
# ---------------------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = rh.registry_cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_prints_a_table(
    store: rh.Prepared, tmp_path: Path, png: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lesion.png"
    path.write_bytes(png)
    code, out, _ = run_cli(["predict", str(path), "--model-name", MODEL], capsys)

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"model models:/{MODEL}@champion (version 1), decision threshold")
    row = next(line for line in lines if line.startswith(str(path)))
    assert row.split()[-1] in {"benign", "malignant"}
    assert 0.0 <= float(row.split()[-2]) <= 1.0
    assert "not a diagnostic device" in out


def test_predict_logs_what_it_scores(
    store: rh.Prepared,
    tmp_path: Path,
    png: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records in the prediction log name the registered version (docs/monitoring.md)."""
    from datetime import UTC, datetime, timedelta

    from melanoma_mlops.serving import log_sink, prediction_log

    monkeypatch.setenv(prediction_log.LOG_ENV, str(tmp_path / "log"))
    monkeypatch.delenv(prediction_log.SOURCE_ENV, raising=False)  # predict sets it; undone after
    prediction_log.reset()
    (tmp_path / "a.png").write_bytes(png)
    try:
        code, out, _ = run_cli(["predict", str(tmp_path / "a.png"), "--model-name", MODEL, "--json"], capsys)
    finally:
        prediction_log.reset()
    assert code == 0
    records = log_sink.read_records(str(tmp_path / "log"), datetime.now(UTC) - timedelta(hours=1))
    assert records[["source", "model_name", "model_version"]].values.tolist() == [["predict", MODEL, "1"]]
    assert records["probability"][0] == pytest.approx(json.loads(out)["predictions"][0]["probability"])


def test_predict_json_by_version(
    store: rh.Prepared, tmp_path: Path, png: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for p in paths:
        p.write_bytes(png)
    code, out, _ = run_cli(
        ["predict", *map(str, paths), "--model-name", MODEL, "--version", "1", "--json"], capsys
    )

    assert code == 0
    report = json.loads(out)
    assert report["model_uri"] == f"models:/{MODEL}/1" and report["version"] == "1"
    assert [p["file"] for p in report["predictions"]] == [str(p) for p in paths]
    assert report["predictions"][0]["probability"] == pytest.approx(report["predictions"][1]["probability"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "missing.jpg: no such file"),
        (
            lambda d: (d / "notes.png", (d / "notes.png").write_text("hello"))[0],
            "notes.png: not a readable image",
        ),
        (lambda d: (d / "empty.png", (d / "empty.png").write_bytes(b""))[0], "empty.png: empty"),
    ],
    ids=["missing", "not-an-image", "empty"],
)
def test_predict_names_the_bad_file_without_a_traceback(
    store: rh.Prepared, tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    bad = make(tmp_path)  # type: ignore[operator]
    code, out, err = run_cli(["predict", str(bad), "--model-name", MODEL], capsys)

    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_predict_unknown_model_or_store(
    store: rh.Prepared,
    tmp_path: Path,
    png: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "lesion.png"
    path.write_bytes(png)
    code, _, err = run_cli(["predict", str(path), "--model-name", MODEL, "--version", "99"], capsys)
    assert code == 2 and f"models:/{MODEL}/99 is not in the registry" in err

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")
    code, _, err = run_cli(["predict", str(path)], capsys)
    assert code == 2 and "no MLflow store at" in err
    assert not (tmp_path / "nowhere").exists()


def test_main_entry_point_runs_predict(
    store: rh.Prepared, tmp_path: Path, png: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lesion.png"
    path.write_bytes(png)
    assert cli.main(["predict", str(path), "--model-name", MODEL, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["file"] == str(path)
    assert cli.main(["predict", str(tmp_path / "nope.png"), "--model-name", MODEL]) == 2
    assert "nope.png: no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bounded memory: headers, the memory-derived limit, JPEG draft decoding, one decode at a time
# ---------------------------------------------------------------------------------------------


def jpeg_bytes(image: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90, **options)
    return buf.getvalue()


def test_a_900_megapixel_bomb_gets_our_message_not_pils() -> None:
    for width, height in ((30_000, 30_000), (12_000, 12_000)):  # above and below PIL's own limit
        with pytest.raises(DataError) as info:
            headers.check_encoded(rh.bomb_png(width, height), "bomb.png")
        message = str(info.value)
        assert message.startswith(f"bomb.png: {width}x{height} = {width * height:,} pixels exceeds the limit")
        assert "DOS attack" not in message and "decompression bomb" in message


def test_formats_are_named_by_one_list() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    with pytest.raises(DataError, match=r"TIFF images are not accepted; use JPEG, PNG, BMP or GIF$"):
        headers.check_encoded(buf.getvalue(), "x.tif")
    with pytest.raises(DataError, match=r"not a readable image \(5 bytes\); expected JPEG or PNG$"):
        headers.check_encoded(b"hello", "x.png", accepted=("JPEG", "PNG"))
    assert formats.IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def test_the_pixel_limit_follows_the_memory() -> None:
    gib = 2**30
    budget = memory_budget.compute_budget(3 * gib, "its cgroup memory limit", resident=1 * gib, slots=1)
    assert budget.bytes_per_decode == gib  # half of what is left once the model is resident
    assert budget.pixels == gib // memory_budget.DECODE_BYTES_PER_PIXEL  # ~67 MP at full size
    assert memory_budget.compute_budget(3 * gib, "x", 1 * gib, slots=2).pixels == budget.pixels // 2
    # the ceiling
    assert memory_budget.compute_budget(64 * gib, "x", 0).pixels == memory_budget.MAX_IMAGE_PIXELS
    assert "3.0 GiB" in budget.describe()


def test_a_png_too_large_for_the_memory_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    tight = memory_budget.DecodeBudget(
        50_000_000 * memory_budget.DECODE_BYTES_PER_PIXEL, 3 * 2**30, "its cgroup memory limit"
    )
    monkeypatch.setitem(memory_budget._budget, "current", tight)
    with pytest.raises(DataError) as info:
        headers.check_encoded(rh.bomb_png(9_000, 9_000), "big.png")
    message = str(info.value)
    assert message.startswith("big.png: 9000x9000 = 81,000,000 pixels exceeds the limit of 50,000,000 pixels")
    assert "PNG: it is decoded at full size" in message and "its cgroup memory limit, 3.0 GiB" in message
    # The same size as a JPEG is decoded at 1/8 scale: it fits (and an explicit lower limit counts).
    header = headers.read_header(_jpeg_header(9_000, 9_000), "big.jpg")
    assert header.draft_scale == 8 and header.decode_bytes < tight.bytes_per_decode
    with pytest.raises(DataError, match="exceeds the limit of 1,000,000 pixels"):
        headers.check_encoded(rh.bomb_png(2_000, 2_000), "x.png", max_pixels=1_000_000)


def _jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG header (SOI, SOF0) declaring ``width`` x ``height``: enough for read_header."""
    import struct

    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


@pytest.mark.parametrize(
    ("size", "scale"), [((900, 900), 1), ((1800, 1000), 1), ((2000, 1800), 2), ((7200, 7200), 8)]
)
def test_jpeg_draft_scale_keeps_four_times_the_model_input(size: tuple[int, int], scale: int) -> None:
    assert headers.draft_scale(*size, target_size=224) == scale
    assert min(size) // scale >= headers.DRAFT_MARGIN * 224 or scale == 1


def test_a_drafted_jpeg_is_within_a_grey_level_of_the_training_pixels() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    large = np.kron(rh.lesion(rng, malignant=True, size=250), np.ones((8, 8, 1), np.uint8))  # 2000 px
    large = np.clip(large + rng.normal(0, 6, large.shape), 0, 255).astype(np.uint8)
    raw = jpeg_bytes(large)
    assert headers.read_header(raw).draft_scale == 2

    served = decoding.decode_encoded(raw, 0, 224)
    training = tf.cast(tf.cast(dataset.decode_resize(tf.constant(raw), 224), tf.uint8), tf.float32).numpy()

    diff = np.abs(served - training)
    assert diff.mean() < 1.5 and diff.max() <= 8, (diff.mean(), diff.max())


def test_small_jpegs_are_decoded_exactly_as_in_training() -> None:
    import tensorflow as tf

    raw = jpeg_bytes(rh.lesion(np.random.default_rng(1), malignant=False, size=300))
    training = tf.cast(tf.cast(dataset.decode_resize(tf.constant(raw), 64), tf.uint8), tf.float32).numpy()
    np.testing.assert_array_equal(decoding.decode_encoded(raw, 0, 64), training)


def test_decodes_run_one_at_a_time(monkeypatch: pytest.MonkeyPatch, png: bytes) -> None:
    import threading
    import time

    active, peak = [0], [0]
    lock = threading.Lock()
    real = dataset.decode_resize

    def counting(encoded: object, size: int) -> object:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)  # long enough for the other threads to try
        with lock:
            active[0] -= 1
        return real(encoded, size)

    monkeypatch.setattr(dataset, "decode_resize", counting)
    threads = [
        threading.Thread(target=inputs.images_from_input, args=(pd.DataFrame({"image": [png, png]}), 16))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == memory_budget.DECODE_SLOTS == 1


def test_400_bodies_of_the_scoring_server_never_echo_the_input(loaded: mlflow.pyfunc.PyFuncModel) -> None:
    """MLflow's scoring server prefixes predict errors with the input's repr; ours keep their text."""
    from mlflow.pyfunc import scoring_server

    marker = b"PATIENT-NAME-" + b"A" * 64
    payloads = {
        "not an image": base64.b64encode(marker).decode(),
        "bomb": base64.b64encode(rh.bomb_png() + marker).decode(),
        "corrupt png": base64.b64encode(rh.png_bytes(np.zeros((8, 8, 3), np.uint8))[:40] + marker).decode(),
    }
    for name, value in payloads.items():
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}})
        with pytest.raises(MlflowException) as info:
            scoring_server.invocations(body, "application/json", loaded, loaded.metadata.get_input_schema())
        answer = info.value.serialize_as_json()
        assert info.value.get_http_status_code() == 400, name
        assert "PATIENT" not in answer and value[:20] not in answer and "QUFB" not in answer, (name, answer)
        assert json.loads(answer)["message"].startswith("row 0: "), (name, answer)


# ---------------------------------------------------------------------------------------------
# melanoma-mlops predict: folders, per-file errors, partial results
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path: Path, png: bytes) -> Path:
    folder = tmp_path / "batch"
    (folder / "clinic-a" / "deep").mkdir(parents=True)
    (folder / "a.png").write_bytes(png)
    (folder / "clinic-a" / "b.JPG").write_bytes(jpeg_bytes(rh.lesion(np.random.default_rng(5), True, 40)))
    (folder / "clinic-a" / "deep" / "c.png").write_bytes(png)
    (folder / "clinic-a" / "notes.txt").write_text("ignored: not an image extension")
    (folder / "clinic-a" / "broken.png").write_text("not an image")
    # A valid header over corrupt pixel data: only decoding finds it, in the middle of a batch.
    (folder / "corrupt.png").write_bytes(png[:60] + b"\0" * 40)
    return folder


def test_predict_scores_a_folder_and_reports_the_files_it_could_not(
    store: rh.Prepared, mixed_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["predict", str(mixed_folder), str(tmp_path / "missing.png"), "--model-name", MODEL, "--json"], capsys
    )

    assert code == 1  # some files failed
    report = json.loads(out)
    scored = sorted(Path(p["file"]).name for p in report["predictions"])
    assert scored == ["a.png", "b.JPG", "c.png"]
    errors = {Path(e["file"]).name: e["error"] for e in report["errors"]}
    assert set(errors) == {"missing.png", "broken.png", "corrupt.png"}
    assert errors["missing.png"] == "no such file or folder"
    assert errors["broken.png"].startswith("not a readable image")
    assert "corrupt" in errors["corrupt.png"]


def test_predict_table_lists_what_was_not_scored(
    store: rh.Prepared, mixed_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["predict", str(mixed_folder), "--model-name", MODEL], capsys)

    assert code == 1
    assert "not scored (2 of 5):" in out
    assert f"{mixed_folder / 'clinic-a' / 'broken.png'}: not a readable image" in out
    rows = [line for line in out.splitlines() if re.search(r"\s\d\.\d{4}\s+(benign|malignant)$", line)]
    assert len(rows) == 3
    # What the threshold means for benign lesions, and that the probability is not a risk.
    assert "benign lesions are flagged too (test specificity" in " ".join(out.split())
    assert "The probability is not calibrated" in out


def test_predict_on_a_folder_without_images(
    store: rh.Prepared, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(["predict", str(tmp_path / "empty"), "--model-name", MODEL], capsys)
    assert code == 2 and out == ""
    assert "empty: no .jpg/.jpeg/.png/.bmp/.gif files in this folder" in err


def test_the_scoring_server_is_hardened_against_echoing_requests(
    loaded: mlflow.pyfunc.PyFuncModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own errors (a body that is not JSON, a missing column) quote the request; not ours."""
    from mlflow.pyfunc import scoring_server

    for name in ("_decode_json_input", "invocations", "_melanoma_no_echo"):
        monkeypatch.setattr(scoring_server, name, getattr(scoring_server, name, False))  # restored after
    monkeypatch.setattr(scoring_server, "_melanoma_no_echo", False)
    pyfunc.harden_scoring_server()
    pyfunc.harden_scoring_server()  # idempotent
    schema = loaded.metadata.get_input_schema()
    marker = "PATIENT-NAME-" + "A" * 64
    bodies = {
        "not JSON": marker.encode() + b" {{{" * 100,
        "not UTF-8": b"\xff\xfe" + marker.encode(),
        "wrong column": json.dumps({"dataframe_split": {"columns": ["picture"], "data": [[marker]]}}),
    }
    messages = {}
    for name, body in bodies.items():
        with pytest.raises(MlflowException) as info:
            scoring_server.invocations(body, "application/json", loaded, schema)
        answer = info.value.serialize_as_json()
        assert info.value.get_http_status_code() == 400, name
        assert "PATIENT" not in answer and "AAAA" not in answer, (name, answer)
        messages[name] = json.loads(answer)["message"]
    assert messages["not JSON"].startswith("the request body (") and "is not JSON" in messages["not JSON"]
    assert messages["not UTF-8"].endswith("is not UTF-8 JSON")
    assert messages["wrong column"].startswith("Model is missing inputs ['image']")
    # An ordinary request is untouched.
    ok = json.dumps(
        {
            "dataframe_split": {
                "columns": ["image"],
                "data": [
                    [base64.b64encode(rh.png_bytes(rh.lesion(np.random.default_rng(0), True, 32))).decode()]
                ],
            }
        }
    )
    assert scoring_server.invocations(ok, "application/json", loaded, schema).status == 200


def test_predict_on_a_data_set_folder_scores_its_images_not_its_lesion_masks(
    store: rh.Prepared, tmp_path: Path, png: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """A demo or ISIC folder holds a mask per image under masks/ (the data sources' MASK_FOLDERS):
    `predict FOLDER` means the lesion images; a masks folder named on its own is still scored."""
    data = tmp_path / "data"
    for rel in ("benign/a.png", "malignant/b.png", "masks/benign/a.png", "Mask/b_segmentation.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(png)
    code, out, _ = run_cli(["predict", str(data), "--model-name", MODEL, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert [p["file"] for p in report["predictions"]] == [
        str(data / "benign/a.png"),
        str(data / "malignant/b.png"),
    ]
    assert report["masks_skipped"] == 2 and not report["errors"]

    code, out, _ = run_cli(["predict", str(data), "--model-name", MODEL], capsys)
    assert code == 0 and "left out 2 lesion masks (files below a masks/ folder" in out

    code, out, _ = run_cli(["predict", str(data / "masks"), "--model-name", MODEL, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert [p["file"] for p in report["predictions"]] == [str(data / "masks/benign/a.png")]
    assert report["masks_skipped"] == 0

    only_masks = tmp_path / "only"
    (only_masks / "masks").mkdir(parents=True)
    (only_masks / "masks" / "a.png").write_bytes(png)
    code, _, err = run_cli(["predict", str(only_masks), "--model-name", MODEL], capsys)
    assert code == 2 and err.startswith("error: ") and "only lesion masks (below masks/)" in err, err
