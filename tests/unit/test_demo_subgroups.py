"""The demo's subgroups and its second clinic: sex, age and site with the public exports'
frequencies (missing values included), a site that is genuinely harder to read, and clinic 2 --
another camera, skin types, a manifest layout, and planted re-uploads that the duplicate audit
finds, exactly those."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.data import demo, demo_clinic, demo_cohort, subgroups
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError


@pytest.fixture(scope="module")
def clinics(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clinics")
    demo.generate(root / "clinic1", n=400, size=64, seed=3)
    demo_clinic.generate(root / "clinic2", root / "clinic1", n=120, seed=3)
    return root / "clinic1", root / "clinic2"


def _metadata(root: Path) -> pd.DataFrame:
    with (root / "metadata.csv").open() as fh:
        return pd.DataFrame(list(csv.DictReader(fh)))


def test_sex_age_and_site_have_realistic_frequencies_and_some_missing_values(clinics) -> None:
    meta = _metadata(clinics[0])
    sex = meta["sex"].value_counts(normalize=True)
    assert 0.4 < sex["male"] < 0.65 and 0.35 < sex["female"] < 0.6 and 0 < sex.get("", 0) < 0.06
    assert (
        0 < (meta["age_approx"] == "").mean() < 0.05 and 0 < (meta["anatom_site_general"] == "").mean() < 0.05
    )
    sites = set(meta["anatom_site_general"]) - {""}
    assert sites <= {s for table in demo_cohort.SITES_BY_DIAGNOSIS.values() for s, _ in table}
    assert {"posterior torso", "head/neck", "palms/soles"} <= sites
    # Where the literature puts them: carcinomas on the head and neck, naevi on the trunk.
    by_dx = meta[meta["anatom_site_general"] != ""].groupby("diagnosis_3")["anatom_site_general"]
    assert by_dx.agg(lambda s: (s == "head/neck").mean())["Basal cell carcinoma"] > 0.4
    assert by_dx.agg(lambda s: s.str.contains("torso").mean())["Nevus"] > 0.4
    ages = pd.to_numeric(meta["age_approx"], errors="coerce")
    assert ages[meta["diagnosis_1"] == "Malignant"].mean() > ages[meta["diagnosis_1"] == "Benign"].mean() + 8


def test_the_loader_carries_them_onto_the_declared_subgroup_columns(clinics) -> None:
    m = load_source(str(clinics[0])).manifest
    # the ISIC attribution is the clinic (data/sources/common.CARRY): one generator, one clinic,
    # which the card names rather than slices
    assert [s.name for s in subgroups.present(m)] == ["sex", "age_band", "anatom_site", "clinic"]
    frame = subgroups.slice_frame(m, (30, 50, 70))
    assert frame["clinic"].nunique() == 1
    assert "unknown" in set(frame["sex"]) and "head/neck" in set(frame["anatom_site"])


def test_on_a_hard_site_the_drawn_features_follow_the_atypia_less() -> None:
    """The lesions' visible size tracks their latent atypia on the trunk, much less on head/neck."""
    from melanoma_mlops.data.demo_lesions import make_lesion

    rng = np.random.default_rng(0)
    corr = {}
    for site in ("posterior torso", "head/neck"):
        lesions = [make_lesion(rng, int(i % 2), 0.25, site) for i in range(400)]
        atypia = np.array([les.atypia for les in lesions])
        radius = np.array([les.radius for les in lesions])
        corr[site] = np.corrcoef(atypia, radius)[0, 1]
        assert {les.look for les in lesions} == {"" if site == "posterior torso" else "sun-damaged"}
    assert corr["posterior torso"] > 0.8 and corr["head/neck"] < 0.6


def test_clinic2_is_a_manifest_with_skin_tones_and_one_clinic_and_device(clinics) -> None:
    _, clinic2 = clinics
    src = load_source(str(clinic2))
    m = src.manifest
    assert src.layout == "manifest" and len(m) == 120 + demo_clinic.EXACT_COPIES + demo_clinic.NEAR_COPIES
    assert [s.name for s in subgroups.present(m)] == [
        "sex",
        "age_band",
        "anatom_site",
        "skin_tone",
        "clinic",
        "device",
    ]
    assert set(subgroups.slice_frame(m, (30, 50, 70))["skin_tone"]) - {"unknown"} <= set(demo_clinic.SKIN_P)
    assert set(m["clinic"]) == {"clinic 2"} and set(m["device"]) == {"phone dermatoscope"}
    assert demo.is_synthetic(str(clinic2))
    marker = (clinic2 / demo.MARKER).read_text()
    assert "3 exact copies, 3 recompressed and resized" in marker and demo_clinic.PLANTED_FILE in marker


def test_the_duplicate_audit_finds_exactly_the_planted_re_uploads(clinics) -> None:
    """Audit clinic 1 and clinic 2 together: every cross-clinic pair is a planted one, and every
    planted one is found, the exact copies by their bytes and the others only by the near hash."""
    from melanoma_mlops.data import dedup

    clinic1, clinic2 = clinics
    planted = json.loads((clinic2 / demo_clinic.PLANTED_FILE).read_text())["overlaps"]
    uris = sorted(str(p) for p in clinic1.glob("ISIC_*.jpg")) + sorted(
        str(p) for p in (clinic2 / "images").glob("*.jpg")
    )
    audit = dedup.audit_duplicates(dedup.fingerprint_images(pd.DataFrame({"image_uri": uris, "label": 0})))
    pairs = audit.pairs
    cross = pairs[
        pairs["image_uri_a"].str.contains("clinic2") != pairs["image_uri_b"].str.contains("clinic2")
    ]
    found = {
        (Path(b if "clinic2" in b else a).name, Path(a if "clinic2" in b else b).name, kind)
        for a, b, kind in zip(cross["image_uri_a"], cross["image_uri_b"], cross["kind"], strict=True)
    }
    expected = {(Path(p["image_path"]).name, p["clinic1_file"], p["kind"]) for p in planted}
    assert found == expected
    assert {p["kind"] for p in planted} == {"exact", "near"}
    for p in planted:
        same_bytes = p["sha256"] == p["clinic1_sha256"]
        assert same_bytes == (p["kind"] == "exact")


def test_clinic2_without_a_clinic1_set_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no clinic-1 demo set there .*melanoma-mlops demo-data --out"):
        demo_clinic.generate(tmp_path / "c2", tmp_path / "missing")


def test_the_cli_says_error_and_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from melanoma_pipelines import cli

    assert (
        cli.main(
            ["demo-data", "--clinic", "2", "--out", str(tmp_path / "c2"), "--from", str(tmp_path / "none")]
        )
        != 0
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: --from {tmp_path / 'none'}: no clinic-1 demo set there")
    assert cli.main(["demo-data", "--clinic", "2", "--layout", "folder", "--out", str(tmp_path / "c2")]) != 0
    assert "error: --layout: clinic 2 is always written as a manifest CSV" in capsys.readouterr().err
    assert not (tmp_path / "c2" / "labels.csv").exists()
