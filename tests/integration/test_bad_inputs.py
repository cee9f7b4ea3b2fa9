"""Every bad input named in the data-layer issue, through the real CLI and the local DAG: one clear
message naming the file or value, a non-zero exit code, no traceback, nothing registered."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_pipelines import cli

pytestmark = pytest.mark.integration

TINY = ["--weights", "none", "--image-size", "32", "--stage1-epochs", "1", "--stage2-epochs", "1"]


def _copy(demo_dir: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(demo_dir, tmp / "data", ignore=shutil.ignore_patterns("masks")))


def empty_folder(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    (tmp / "empty").mkdir()
    return str(tmp / "empty"), "is empty: no images found"


def missing_path(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    return str(tmp / "nowhere"), "no such file or folder"


def missing_metadata(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    root = tmp / "isic"
    root.mkdir()
    shutil.copy(next(demo_dir.glob("benign/*.png")), root / "ISIC_0000001.jpg")
    return str(root), "no metadata.csv (isic_id, diagnosis_1) found"


def wrong_columns(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    csv = tmp / "labels.csv"
    csv.write_text("file,diagnosis\na.png,benign\n")
    return str(csv), "labels.csv has columns ['file', 'diagnosis']; expected image_path,label"


def label_outside_mapping(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    data = _copy(demo_dir, tmp)
    rows = [f"{p.relative_to(data)},{p.parent.name}" for p in sorted(data.glob("*/*.png"))]
    rows[3] = rows[3].rsplit(",", 1)[0] + ",maybe"
    csv = data / "manifest.csv"
    csv.write_text("image_path,label\n" + "\n".join(rows) + "\n")
    return str(csv), "'maybe'"


def single_class(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    data = _copy(demo_dir, tmp)
    shutil.rmtree(data / "malignant")
    return str(data), "malignant"


def bad_images(demo_dir: Path, tmp: Path) -> tuple[str, list[str]]:
    """A truncated JPEG, an empty file and a text file named .jpg in one folder: the validate step
    opens every image and names each bad one in the same message."""
    data = _copy(demo_dir, tmp)
    from PIL import Image

    bad = data / "benign" / "lesion_bad.jpg"
    Image.open(next(data.glob("benign/*.png"))).convert("RGB").save(bad, quality=90)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    (data / "malignant" / "lesion_empty.png").write_bytes(b"")
    (data / "benign" / "notes.jpg").write_text("patient notes, not a picture")
    return str(data), [
        "lesion_bad.jpg: corrupt or truncated image",
        "lesion_empty.png: empty file (0 bytes)",
        "notes.jpg: not an image",
    ]


def path_outside_root(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    data = _copy(demo_dir, tmp)
    rows = [f"{p.relative_to(data)},{p.parent.name}" for p in sorted(data.glob("*/*.png"))]
    rows.append("../../etc/passwd,benign")  # never opened, never hashed
    csv = data / "manifest.csv"
    csv.write_text("image_path,label\n" + "\n".join(rows) + "\n")
    return str(csv), "1 path(s) point outside the data root"


def semicolon_csv(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    root = tmp / "semicolons"
    root.mkdir()
    shutil.copy(next(demo_dir.glob("benign/*.png")), root / "ISIC_0000001.jpg")
    (root / "metadata.csv").write_text("isic_id;diagnosis_1\nISIC_0000001;Benign\n")
    return str(root), "metadata.csv is separated by semicolons (';'), not commas"


def unknown_layout(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    root = tmp / "unknown"
    (root / "pics").mkdir(parents=True)
    shutil.copy(next(demo_dir.glob("benign/*.png")), root / "pics" / "a.png")
    (root / "labels.csv").write_text("file,verdict\npics/a.png,benign\n")
    return str(root), "labels.csv has columns [file, verdict]"


def metadata_without_its_column(demo_dir: Path, tmp: Path) -> tuple[str, str]:
    root = tmp / "pad"
    root.mkdir()
    shutil.copy(next(demo_dir.glob("benign/*.png")), root / "PAT_46_881_939.png")
    (root / "metadata.csv").write_text(
        "patient_id,lesion_id,fitspatrick,img_id\nPAT_46,881,3.0,PAT_46_881_939.png\n"
    )
    return str(root), "looks like PAD-UFES-20 but lacks column(s) diagnostic"


#: The problems only opening the images finds (Great Expectations in the validate step); every other
#: case is refused before the run starts (melanoma_pipelines.local.check_before_start).
IN_THE_IMAGES = ("bad_images",)
CASES: dict[str, Callable[[Path, Path], tuple[str, str | list[str]]]] = {
    f.__name__: f
    for f in (
        empty_folder, missing_path, missing_metadata, wrong_columns, label_outside_mapping,
        single_class, bad_images, path_outside_root, semicolon_csv,
        unknown_layout, metadata_without_its_column,
    )
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_message_and_no_model(
    case: str, demo_dir: Path, tmp_path: Path, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = CASES[case](demo_dir, tmp_path)
    layout = ["--layout", "isic"] if case == "missing_metadata" else []
    code = cli.main(["run", "--data", data, *layout, *TINY])
    err = capsys.readouterr().err
    assert code != 0
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert error_lines, err[-2000:]
    message = err[err.index(error_lines[-1]) :]
    for text in [expected] if isinstance(expected, str) else expected:
        assert text in message, message
    assert "Traceback" not in message
    client = MlflowClient()
    assert client.search_registered_models() == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    if case in IN_THE_IMAGES:  # found by the validate step: its run and the parent end FAILED
        assert runs and all(r.info.status == "FAILED" for r in runs), [r.info.status for r in runs]
    else:  # found when the source is read before the run starts: nothing recorded at all
        assert runs == [], [r.info.run_name for r in runs]
