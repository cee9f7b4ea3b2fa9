"""Every layout keeps to its data root (issue 24): a symlink out of a local source is left out and
reported by name *without being opened* (an audit hook records every file Python opens), a FIFO is
never read, ``--allow-outside-root`` follows links out on purpose; an s3:// source is confined by
its listing."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from datagen import make_folder, make_isic, write_image

from melanoma_mlops.data import validation
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError

_OPENED: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if _OPENED and event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only inside opened_files()


@contextlib.contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every path Python opens inside the block (``open``, PIL, pandas, os.open ...)."""
    found: list[str] = []
    _OPENED.append(found)
    try:
        yield found
    finally:
        _OPENED.remove(found)


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Path]:
    """Files outside the data root: a valid image (which would train as class 1) and a secret."""
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return {"image": write_image(tmp_path / "elsewhere" / "lesion.png", 99), "secret": secret}


def test_a_class_folder_symlink_out_of_the_root_is_left_out_by_name_and_never_opened(
    tmp_path: Path, outside: dict[str, Path]
) -> None:
    root = make_folder(tmp_path / "data", n_benign=4, n_malignant=3)
    (root / "malignant" / "x.png").symlink_to(outside["image"])
    (root / "malignant" / "p.jpg").symlink_to(outside["secret"])
    (root / "benign" / "pool").symlink_to(outside["image"].parent, target_is_directory=True)
    with opened_files() as opened:
        result = load_source(str(root))
    assert not [p for p in opened if "elsewhere" in p], opened
    assert len(result.manifest) == 7
    assert not result.manifest["image_uri"].str.contains("x.png|p.jpg|pool").any()
    reasons = dict(zip(result.excluded["image_uri"], result.excluded["reason"], strict=True))
    for name in ("malignant/x.png", "malignant/p.jpg", "benign/pool"):
        reason = reasons[str(root / name)]
        assert "leading outside the data root" in reason and "--allow-outside-root" in reason
    targets = dict(zip(result.excluded["image_uri"], result.excluded["target"], strict=True))
    assert targets[str(root / "malignant" / "p.jpg")] == str(outside["secret"])


def test_validation_inspects_no_file_behind_a_link_out_and_reports_it(
    tmp_path: Path, outside: dict[str, Path]
) -> None:
    root = make_folder(tmp_path / "data", n_benign=4, n_malignant=3)
    (root / "malignant" / "p.jpg").symlink_to(outside["secret"])
    (root / "malignant" / "x.png").symlink_to(outside["image"])
    with opened_files() as opened:
        outcome = validation.validate(str(root), 8, tmp_path / "docs")
    assert not [p for p in opened if "elsewhere" in p], opened
    assert len(outcome.manifest) == 7 and outcome.summary["excluded_rows"] == 2
    assert all("leading outside the data root" in r for r in outcome.excluded["reason"])


def test_allow_outside_root_follows_links_out_of_the_root(tmp_path: Path, outside: dict[str, Path]) -> None:
    root = make_folder(tmp_path / "data", n_benign=4, n_malignant=3)
    (root / "malignant" / "x.png").symlink_to(outside["image"])
    (root / "benign" / "pool").symlink_to(outside["image"].parent, target_is_directory=True)
    result = load_source(str(root), allow_outside_root=True)
    labels = dict(zip(result.manifest["image_uri"], result.manifest["label"], strict=True))
    assert labels[str(root / "malignant" / "x.png")] == 1
    assert labels[str(root / "benign" / "pool" / "lesion.png")] == 0


def test_links_inside_the_root_fifos_and_broken_links_are_reported_not_read(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", n_benign=4, n_malignant=3)
    (root / "benign" / "again").symlink_to(root / "malignant", target_is_directory=True)  # no double count
    (root / "benign" / "loop").symlink_to(root, target_is_directory=True)
    os.mkfifo(root / "malignant" / "pipe.png")  # reading it would block forever
    (root / "malignant" / "gone.png").symlink_to(root / "deleted.png")
    with opened_files() as opened:
        result = load_source(str(root))
    assert str(root / "malignant" / "pipe.png") not in opened
    assert len(result.manifest) == 7
    reasons = dict(zip(result.excluded["image_uri"], result.excluded["reason"], strict=True))
    assert "not followed" in reasons[str(root / "benign" / "again")]
    assert "not followed" in reasons[str(root / "benign" / "loop")]
    assert "not a regular file" in reasons[str(root / "malignant" / "pipe.png")]
    assert "broken symlink" in reasons[str(root / "malignant" / "gone.png")]


def test_a_metadata_image_that_links_out_is_named_in_the_missing_images_error(
    tmp_path: Path, outside: dict[str, Path]
) -> None:
    root = make_isic(tmp_path / "isic").parent
    victim = root / "ISIC_0000003.jpg"
    victim.unlink()
    victim.symlink_to(outside["image"])
    with opened_files() as opened, pytest.raises(DataError) as err:
        load_source(str(root))
    assert str(outside["image"]) not in opened
    assert victim.name in str(err.value) and "leading outside the data root" in str(err.value)


def test_a_top_level_csv_that_links_out_is_never_read(tmp_path: Path, outside: dict[str, Path]) -> None:
    root = make_folder(tmp_path / "data", n_benign=4, n_malignant=3)
    foreign = tmp_path / "elsewhere" / "metadata.csv"
    foreign.write_text("isic_id,diagnosis_1\nISIC_1,Malignant\n")
    (root / "metadata.csv").symlink_to(foreign)
    with opened_files() as opened:
        result = load_source(str(root))
    assert str(foreign) not in opened
    assert result.layout == "folder"


def test_an_s3_source_keeps_to_its_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import pandas as pd
    from datagen import make_manifest
    from moto import mock_aws

    from melanoma_mlops import storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (*storage.ENDPOINT_ENV_VARS, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    csv = make_manifest(tmp_path / "data", n_benign=4, n_malignant=2, groups=False)
    rows = pd.read_csv(csv).to_dict("records")
    rows += [
        {"image_path": "../../private/key.png", "label": 1},
        {"image_path": "s3://derm/exports/v1-other/x.png", "label": 0},  # a sibling prefix, not below it
    ]
    pd.DataFrame(rows).to_csv(csv, index=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="derm")
        for path in sorted(p for p in (tmp_path / "data").rglob("*") if p.is_file()):
            client.upload_file(
                str(path), "derm", f"exports/v1/{path.relative_to(tmp_path / 'data').as_posix()}"
            )
        client.put_object(Bucket="derm", Key="private/key.png", Body=b"secret")
        client.put_object(Bucket="derm", Key="exports/v1-other/x.png", Body=b"other")
        with pytest.raises(DataError) as err:
            load_source("s3://derm/exports/v1/manifest.csv")
        assert "2 path(s) point outside the data root s3://derm/exports/v1" in str(err.value)
        assert "s3://derm/private/key.png" in str(err.value)
        # a folder layout on S3 sees only the keys under its prefix
        assert storage.list_files("s3://derm/exports/v1") == sorted(
            f"s3://derm/exports/v1/{p.relative_to(tmp_path / 'data').as_posix()}"
            for p in (tmp_path / "data").rglob("*")
            if p.is_file()
        )


@pytest.mark.parametrize(
    "make", ["make_ham10000", "make_bcn20000", "make_pad_ufes_20", "make_ddi", "make_fitzpatrick17k"]
)
def test_every_public_layout_keeps_to_its_root(tmp_path: Path, outside: dict[str, Path], make: str) -> None:
    """The published layouts share the confined listing: an image of theirs that links out is never
    opened and is named (excluded with the reason, or in the missing-images error)."""
    import public_data

    root = tmp_path / "data"
    getattr(public_data, make)(root)
    victim = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[0]
    victim.unlink()
    victim.symlink_to(outside["image"])
    with opened_files() as opened:
        try:
            result = load_source(str(root))
        except DataError as err:
            assert victim.stem in str(err) and "leading outside the data root" in str(err), str(err)
        else:
            assert str(victim) not in set(result.manifest["image_uri"])
            reasons = dict(zip(result.excluded["image_uri"], result.excluded["reason"], strict=True))
            assert "leading outside the data root" in reasons[str(victim)], reasons
    assert not [p for p in opened if "elsewhere" in p], opened
