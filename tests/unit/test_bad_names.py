"""Bad names and paths in a data source (issue 11): a file name that is not UTF-8 is reported by its
bytes and never crashes; a manifest CSV cannot reach outside its data root, and nothing outside it
is even opened; run names are quoted in every MLflow filter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from datagen import make_folder, make_manifest, write_image

from melanoma_mlops import storage, tracking
from melanoma_mlops.config import DataConfig
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import ConfigError, DataError

posix_bytes_names = pytest.mark.skipif(
    sys.platform != "linux", reason="file names as arbitrary bytes: Linux file systems"
)


@posix_bytes_names
def test_a_file_name_that_is_not_utf8_is_left_out_and_named_by_its_bytes(tmp_path: Path) -> None:
    make_folder(tmp_path, n_benign=6, n_malignant=3)
    latin1 = os.fsencode(tmp_path / "malignant") + b"/caf\xe9.png"  # "café" in Latin-1
    write_image(Path(os.fsdecode(latin1)), 99)
    result = load_source(str(tmp_path))
    assert len(result.manifest) == 9  # the other images are all there
    (row,) = result.excluded[result.excluded["reason"].str.contains("not valid UTF-8")].to_dict("records")
    assert "caf\\xe9.png" in row["image_uri"] and "b'" in row["reason"] and "\\xe9" in row["reason"]
    # What validate writes and logs must encode: no surrogate survives into the outputs.
    result.excluded.to_csv(tmp_path / "excluded.csv", index=False, encoding="utf-8")
    result.manifest.to_csv(tmp_path / "manifest.csv", index=False, encoding="utf-8")


@posix_bytes_names
def test_a_data_path_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9mo"))
    make_folder(root, n_benign=2, n_malignant=2)
    with pytest.raises(DataError, match=r"not valid UTF-8 \(bytes b'.*\\xe9mo'\)"):
        load_source(str(root))


def test_manifest_paths_outside_the_data_root_are_refused_before_anything_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    csv = make_manifest(root, n_benign=4, n_malignant=2, groups=False)
    outside = write_image(tmp_path / "elsewhere" / "other.png", 7)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the pipeline")
    rows = pd.read_csv(csv).to_dict("records")
    rows += [
        {"image_path": "../secret.txt", "label": 0},
        {"image_path": str(outside), "label": 1},
    ]
    pd.DataFrame(rows).to_csv(csv, index=False)
    touched: list[str] = []
    for name in ("exists", "read_bytes", "is_dir"):
        real = getattr(storage, name)
        monkeypatch.setattr(storage, name, lambda uri, _real=real: touched.append(str(uri)) or _real(uri))
    with pytest.raises(DataError) as err:
        load_source(str(csv))
    message = str(err.value)
    assert "2 path(s) point outside the data root" in message and "--allow-outside-root" in message
    assert str(secret) in message and str(outside) in message
    assert not any(u in (str(secret), str(outside)) for u in touched)


def test_a_symlink_out_of_the_root_is_outside_too(tmp_path: Path) -> None:
    root = tmp_path / "data"
    csv = make_manifest(root, n_benign=4, n_malignant=2, groups=False)
    target = write_image(tmp_path / "elsewhere" / "x.png", 3)
    (root / "images" / "link.png").symlink_to(target)
    rows = [*pd.read_csv(csv).to_dict("records"), {"image_path": "images/link.png", "label": 0}]
    pd.DataFrame(rows).to_csv(csv, index=False)
    with pytest.raises(DataError, match="outside the data root"):
        load_source(str(csv))


def test_allow_outside_root_lets_a_manifest_name_images_elsewhere(tmp_path: Path) -> None:
    root = tmp_path / "data"
    csv = make_manifest(root, n_benign=4, n_malignant=2, groups=False)
    outside = write_image(tmp_path / "elsewhere" / "other.png", 7)
    rows = [*pd.read_csv(csv).to_dict("records"), {"image_path": str(outside), "label": 1}]
    pd.DataFrame(rows).to_csv(csv, index=False)
    result = load_source(str(csv), allow_outside_root=True)
    assert str(outside) in set(result.manifest["image_uri"])


def test_run_names_with_one_kind_of_quote_are_searchable_and_both_are_refused(mlflow_store: str) -> None:
    from melanoma_pipelines.cli.options import check_run_name
    from melanoma_pipelines.results import find_parent_run

    for name in ("v3 patient's cohort", 'the "big" one'):
        check_run_name(name)
        run_id = tracking.start_pipeline_run(name)
        assert find_parent_run(name) == run_id
    with pytest.raises(ConfigError, match="both ' and \""):
        check_run_name("""it's "both" """)


@posix_bytes_names
def test_the_validate_step_reports_a_non_utf8_name_and_carries_on(
    tmp_path: Path, mlflow_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.steps.validate import validate_step

    data = tmp_path / "data"
    make_folder(data, n_benign=8, n_malignant=4)
    write_image(Path(os.fsdecode(os.fsencode(data / "benign") + b"/l\xe9sion.png")), 42)
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level("WARNING"):
        parent = validate_step(
            str(data),
            str(out / "manifest.csv"),
            str(out / "docs"),
            str(out / "report.html"),
            cfg=DataConfig(min_image_size=8),
        )
    warning = next(r.getMessage() for r in caplog.records if "are not valid UTF-8" in r.getMessage())
    assert "l\\xe9sion.png" in warning
    assert MlflowClient().get_run(parent).data.params["data/images"] == "12"
