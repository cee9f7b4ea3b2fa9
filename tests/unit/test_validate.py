"""The validate step: inspected manifest, GX suite, Data Docs, and failures that name the files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from melanoma_mlops.config import DataConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.data import validation as validate
from melanoma_mlops.errors import DataError
from melanoma_mlops.steps.validate import validate_step


@pytest.fixture
def demo_copy(demo_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_dir, tmp_path / "data"))


def test_demo_data_validates_and_writes_data_docs(demo_dir: Path, tmp_path: Path) -> None:
    outcome = validate.validate(str(demo_dir), 32, tmp_path / "docs")
    assert outcome.success, outcome.failures
    df = outcome.manifest
    assert len(df) == 40
    assert set(df["label"]) == {0, 1}
    assert df["sha256"].str.len().eq(64).all()
    assert (df["width"] == 64).all()
    assert df["mask_uri"].str.contains("masks").all()
    assert outcome.docs_index is not None and outcome.docs_index.exists()
    assert "validations" in {p.name for p in (tmp_path / "docs").iterdir()}


def test_corrupt_truncated_empty_and_fake_images_are_each_named(demo_copy: Path, tmp_path: Path) -> None:
    benign = sorted((demo_copy / "benign").glob("*.png"))
    benign[0].write_bytes(b"")  # 0-byte file
    benign[1].write_bytes(benign[1].read_bytes()[:200])  # truncated PNG
    benign[2].write_bytes(b"this is not a picture at all")  # text with an image extension
    outcome = validate.validate(str(demo_copy), 32, tmp_path / "docs")
    assert not outcome.success
    report = "\n".join(outcome.failures)
    assert f"{benign[0]}: empty file (0 bytes)" in report
    assert f"{benign[1]}: corrupt or truncated image" in report
    assert f"{benign[2]}: not an image" in report


def test_images_below_the_minimum_size_fail(demo_dir: Path, tmp_path: Path) -> None:
    outcome = validate.validate(str(demo_dir), 128, tmp_path / "docs")
    assert not outcome.success
    assert any("min_side" in f and "min_value=128" in f for f in outcome.failures)


def test_single_class_is_rejected_with_a_clear_message(demo_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(demo_copy / "malignant")
    shutil.rmtree(demo_copy / "masks" / "malignant")
    with pytest.raises(DataError, match="malignant"):
        validate.validate(str(demo_copy), 32, tmp_path / "docs")


def test_validate_step_fails_the_run_and_keeps_the_report(
    demo_copy: Path, tmp_path: Path, mlflow_store: str
) -> None:
    (demo_copy / "malignant" / "synth_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError) as err:
        validate_step(
            str(demo_copy),
            str(out / "manifest.csv"),
            str(out / "docs"),
            str(out / "report.html"),
            cfg=DataConfig(min_image_size=32),
        )
    assert "synth_broken.png" in str(err.value)
    assert "Data Docs report" in str(err.value)
    assert (out / "report.html").exists()
    assert not (out / "manifest.csv").exists()


def test_validate_step_writes_the_manifest_and_opens_the_parent_run(
    demo_dir: Path, tmp_path: Path, mlflow_store: str
) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    out.mkdir()
    parent = validate_step(
        str(demo_dir),
        str(out / "manifest.csv"),
        str(out / "docs"),
        str(out / "report.html"),
        cfg=DataConfig(min_image_size=32),
        run_name="t",
    )
    df = manifest.read(out / "manifest.csv")
    assert len(df) == 40
    run = MlflowClient().get_run(parent)
    assert run.data.tags["data.fingerprint"] == manifest.fingerprint(df)
    # Counts are bookkeeping: params of the parent (its metrics are the results users compare).
    assert run.data.params["data/images"] == "40"
    assert not any(k.startswith("data/") for k in run.data.metrics)
    # The data as a dataset input (the UI's Dataset column), its digest the data fingerprint.
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.digest == manifest.fingerprint(df)[:36]
    # One self-contained Data Docs page on the parent: no stylesheet or script from elsewhere.
    page = Path(MlflowClient().download_artifacts(parent, "data_docs.html", str(tmp_path / "dl")))
    html = page.read_text()
    assert "<style>" in html and "http://" not in html and "https://" not in html


def test_the_validation_report_and_data_docs_page_list_the_excluded_rows(
    tmp_path: Path, mlflow_store: str
) -> None:
    """The README says exclusions are listed in the validation report: the page MLflow shows and the
    step's report both name every excluded row with its reason."""
    from datagen import make_isic
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.data.data_docs import exclusions_html

    make_isic(tmp_path / "isic")
    out = tmp_path / "out"
    parent = validate_step(
        str(tmp_path / "isic"), str(out / "manifest.csv"), str(out / "docs"), str(out / "report.html"),
        cfg=DataConfig(min_image_size=8),
    )  # fmt: skip
    page = Path(MlflowClient().download_artifacts(parent, "data_docs.html", str(tmp_path / "dl"))).read_text()
    report = (out / "report.html").read_text()
    for html in (page, report):
        assert "Excluded by the label policy: 2 row(s)" in html
        for isic_id in ("ISIC_0000090", "ISIC_0000091"):
            assert f"{tmp_path / 'isic' / isic_id}.jpg" in html
        assert "diagnosis_1 &#x27;Indeterminate&#x27; is not Benign/Malignant" in html
        assert "<td>Indeterminate</td>" in html
    assert "None: every row of the source had a label" in exclusions_html(None)
