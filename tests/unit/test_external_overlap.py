"""The cross-data-set duplicate audit finds exactly the planted re-uploads of clinic 2: the byte-for-byte
copies by sha256, the recompressed and resized ones only by the near-duplicate hash, and nothing else
(clinic 2's own re-uploads of its own photographs are not overlaps with clinic 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from melanoma_mlops.data import dedup, demo, demo_clinic, overlap
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("overlap")
    demo.generate(root / "clinic1", n=120, size=64, seed=5)
    demo_clinic.generate(root / "clinic2", root / "clinic1", n=40, seed=5)
    ref = dedup.fingerprint_images(load_source(str(root / "clinic1")).manifest)
    ext = dedup.fingerprint_images(load_source(str(root / "clinic2")).manifest)
    planted = json.loads((root / "clinic2" / demo_clinic.PLANTED_FILE).read_text())["overlaps"]
    return root, ref, ext, planted


def test_the_audit_finds_exactly_the_planted_overlaps(manifests) -> None:
    _, ref, ext, planted = manifests
    found = overlap.cross_overlaps(ext, ref.assign(split="train"))
    got = {(Path(r.image_uri).name, r.kind, Path(r.reference_uri).name) for r in found.itertuples()}
    want = {(Path(p["image_path"]).name, p["kind"], p["clinic1_file"]) for p in planted}
    assert got == want
    assert {"exact", "near"} == {k for _, k, _ in want}  # both kinds are planted, both are found
    assert set(found["reference_split"]) == {"train"}


def test_a_reference_without_the_copied_images_finds_only_the_rest(manifests) -> None:
    _, ref, ext, planted = manifests
    dropped = {p["clinic1_file"] for p in planted[:2]}
    kept = ref[~ref["image_uri"].map(lambda u: Path(u).name in dropped)]
    found = overlap.cross_overlaps(ext, kept)
    assert {Path(u).name for u in found["image_uri"]} == {Path(p["image_path"]).name for p in planted[2:]}


def test_an_unhashed_manifest_is_refused_by_name(manifests) -> None:
    _, ref, ext, _ = manifests
    with pytest.raises(DataError, match=r"evaluated manifest lacks .*phash"):
        overlap.cross_overlaps(ext.drop(columns=["phash"]), ref)
