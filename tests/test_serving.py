"""The registered pyfunc: every accepted input form, training-identical pixels, clear refusals,
``melanoma-mlops predict``, and (integration) ``mlflow models serve`` answering JSON over HTTP.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.error
import urllib.request
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
from melanoma_mlops.serving import inputs, pyfunc
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
    err = inputs.InvalidImageError("row 0: not a readable image")
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
    assert inputs.sniff_format(raw) == "PNG"


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
# mlflow models serve (integration)
# ---------------------------------------------------------------------------------------------


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def test_mlflow_models_serve_answers_json_for_the_champion(
    store: rh.Prepared, tmp_path: Path, png: bytes
) -> None:
    from servers import free_port

    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    env = rh.venv_env({"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()})
    b64 = base64.b64encode(png).decode()
    expected = probability(
        mlflow.pyfunc.load_model(f"models:/{MODEL}@champion"), pd.DataFrame({"image": [png]})
    )

    with rh.background(
        cmd, tmp_path / "serve.log", env, f"http://127.0.0.1:{port}/ping", SERVE_TIMEOUT_S
    ) as ping:
        url = ping.removesuffix("/ping") + "/invocations"
        bodies = {
            "dataframe_split": {"dataframe_split": {"columns": ["image"], "data": [[b64]]}},
            "dataframe_records": {"dataframe_records": [{"image": b64}]},
            "inputs": {"inputs": {"image": [b64]}},
        }
        for name, body in bodies.items():
            status, answer = post(url, body)
            assert status == 200, (name, answer)
            (row,) = answer["predictions"]
            assert 0.0 <= row["probability"] <= 1.0, name
            assert row["probability"] == pytest.approx(expected, abs=1e-5), name
            assert row["label"] in (0, 1) and row["class_name"] in ("benign", "malignant"), name

        status, answer = post(
            url, {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b"no").decode()]]}}
        )
        assert status == 400
        assert "row 0: not a readable image" in answer["message"]
