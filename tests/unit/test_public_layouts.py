"""The public data sets' published layouts: each auto-detected from its real header, with the label
counts its documented policy gives per task, every exclusion counted with its reason, and its
metadata mapped onto the subgroup columns. Plus the messages for what cannot be read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from datagen import make_challenge_2019, make_challenge_2020, make_isic, write_csv, write_image
from public_data import (
    Counts,
    make_bcn20000,
    make_ddi,
    make_fitzpatrick17k,
    make_ham10000,
    make_pad_ufes_20,
)

from melanoma_mlops import config
from melanoma_mlops.data import labels
from melanoma_mlops.data.sources import layouts
from melanoma_mlops.data.sources.metadata import SITES
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError

PUBLIC: dict[str, Callable[[Path], Counts]] = {
    "ham10000": make_ham10000,
    "bcn20000": make_bcn20000,
    "pad-ufes-20": make_pad_ufes_20,
    "ddi": make_ddi,
    "fitzpatrick17k": make_fitzpatrick17k,
}


@pytest.mark.parametrize("task", ["malignant", "melanoma"])
@pytest.mark.parametrize("layout", list(PUBLIC))
def test_published_header_is_detected_with_the_policy_counts(tmp_path: Path, layout: str, task: str) -> None:
    kept, positives, excluded = PUBLIC[layout](tmp_path)[task]
    result = load_source(str(tmp_path), task=task)
    assert result.layout == layout
    assert len(result.manifest) == kept
    assert int(result.manifest["label"].sum()) == positives
    assert len(result.excluded) == excluded
    # every exclusion names the file (or its published name) and why
    assert (result.excluded["reason"].str.len() > 20).all()
    assert result.excluded["image_uri"].astype(bool).all()
    assert set(result.manifest["label"]) == {0, 1}
    assert result.manifest["diagnosis"].astype(bool).all()
    forced = load_source(str(tmp_path), layout=layout, task=task)
    assert forced.manifest["image_uri"].tolist() == result.manifest["image_uri"].tolist()


def test_ham10000_policy_subgroups_and_lesion_groups(tmp_path: Path) -> None:
    make_ham10000(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest.set_index("image_id")
    assert result.label_mapping == {"bkl": 0, "nv": 0, "mel": 1, "bcc": 1, "df": 0, "vasc": 0}
    assert set(result.excluded["source_label"]) == {"akiec"}
    assert result.excluded["reason"].str.contains("Bowen").all()
    assert m.loc["ISIC_0025837", "anatom_site"] == "palms/soles"  # localization 'acral'
    assert m.loc["ISIC_0028155", "anatom_site"] == "torso"
    assert set(m["anatom_site"]) <= {*SITES, ""}
    assert m.loc["ISIC_0031633", "sex"] == "" and m.loc["ISIC_0031633", "anatom_site"] == ""  # 'unknown'
    assert m["age"].isna().sum() == 1 and m.loc["ISIC_0027419", "age"] == 80
    assert set(m["clinic"]) == {"vidir_modern", "vidir_molemax", "rosendahl", "vienna_dias"}
    assert set(m["dx_type"]) == {"histo", "follow_up", "consensus"}
    assert (m["group_kind"] == "lesion").all()
    assert m.loc["ISIC_0027419", "group_id"] == m.loc["ISIC_0025030", "group_id"] == "lesion:HAM_0000118"
    assert labels.patient_ids(result.manifest) == "absent"
    assert "skin_tone" not in m.columns
    melanoma = load_source(str(tmp_path), task="melanoma")
    assert melanoma.label_mapping["akiec"] == 0 and melanoma.label_mapping["bcc"] == 0


def test_ham10000_first_release_and_bare_dataverse_name(tmp_path: Path) -> None:
    make_ham10000(tmp_path / "v1", with_dataset=False)
    assert "clinic" not in load_source(str(tmp_path / "v1")).manifest.columns
    make_ham10000(tmp_path / "dataverse", bare_name=True)
    result = load_source(str(tmp_path / "dataverse"))
    assert result.layout == "ham10000" and len(result.manifest) == 13
    direct = load_source(str(tmp_path / "dataverse" / "HAM10000_metadata"))
    assert len(direct.manifest) == 13


def test_bcn20000_reads_the_train_csv_beside_the_unlabelled_test_csv(tmp_path: Path) -> None:
    make_bcn20000(tmp_path)
    m = load_source(str(tmp_path)).manifest.set_index("bcn_filename")
    assert m.loc["BCN_0000000011.jpg", "anatom_site"] == "palms/soles"
    assert m.loc["BCN_0000000005.jpg", "sex"] == "" and m["age"].isna().sum() == 1
    assert (m["group_kind"] == "lesion").all() and (m["source_split"] == "train").all()
    with pytest.raises(DataError, match=r"bcn_20k_test.csv is a BCN20000 CSV without a diagnosis"):
        load_source(str(tmp_path / "bcn_20k_test.csv"))


def test_pad_ufes_20_subgroups_and_patient_groups(tmp_path: Path) -> None:
    make_pad_ufes_20(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest.set_index("img_id")
    assert result.label_mapping == {"BCC": 1, "NEV": 0, "MEL": 1, "SCC": 1, "SEK": 0}
    assert set(result.excluded["source_label"]) == {"ACK"}
    assert m.loc["PAT_46_881_939.png", "skin_tone"] == "III"
    assert m.loc["PAT_46_881_939.png", "sex"] == "female" and m.loc["PAT_795_1540_212.png", "sex"] == "male"
    assert m.loc["PAT_1991_2123_980.png", "anatom_site"] == "head/neck"  # region LIP
    assert m.loc["PAT_795_1540_212.png", "anatom_site"] == "upper extremity"  # FOREARM
    assert (
        m.loc["PAT_46_881_939.png", "group_id"] == m.loc["PAT_46_881_14.png", "group_id"] == "patient:PAT_46"
    )
    assert labels.patient_ids(result.manifest) == "present"
    assert "clinic" not in m.columns


def test_ddi_skin_tone_bands_and_no_groups(tmp_path: Path) -> None:
    make_ddi(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest.set_index("DDI_file")
    assert m.loc["000001.png", "skin_tone"] == "V-VI" and m.loc["000036.png", "skin_tone"] == "III-IV"
    assert set(m["skin_tone"]) == {"I-II", "III-IV", "V-VI"}
    assert result.label_mapping == {"True": 1, "False": 0}
    assert result.excluded["source_label"].tolist() == ["actinic-keratosis"]
    assert (m["group_id"] == "").all()
    assert not {"sex", "age", "anatom_site"} & set(m.columns)
    melanoma = load_source(str(tmp_path), task="melanoma").manifest.set_index("DDI_file")
    assert melanoma.loc["000264.png", "label"] == 0  # actinic keratosis: not a melanoma
    assert melanoma.loc["000003.png", "label"] == 0  # mycosis fungoides: malignant, not a melanoma


def test_fitzpatrick17k_partitions_quality_control_and_atlas(tmp_path: Path) -> None:
    make_fitzpatrick17k(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest.set_index("md5hash")
    reasons = result.excluded.set_index("source_label")["reason"]
    assert "non-neoplastic" in reasons["psoriasis"] and "Wrongly labelled" in reasons["kaposi sarcoma"]
    assert "actinic keratosis" in reasons["actinic keratosis"]
    assert m.loc["0e5d9a3bb4b4d1c5a9bcd37b4b2e8f11", "skin_tone"] == ""  # fitzpatrick_scale -1
    assert m.loc["8e7d6c5b4a3928171615141312111009", "skin_tone"] == "VI"
    assert set(m["clinic"]) == {"DermaAmin", "Atlas Dermatologico"}
    # the image downloaded from its url and named url_alphanum is found too
    assert m.loc["4c3f795cf8eb72b946f9bd2642cf23c1", "image_uri"].endswith("4713.jpg")
    assert labels.patient_ids(result.manifest) == "absent"


def test_missing_images_named_as_the_data_set_names_them(tmp_path: Path) -> None:
    make_pad_ufes_20(tmp_path)
    (tmp_path / "imgs_part_1" / "PAT_46_881_939.png").unlink()
    with pytest.raises(
        DataError, match=r"1 images referenced by .*metadata.csv are missing: PAT_46_881_939.png"
    ):
        load_source(str(tmp_path))


# ------------------------------------------------------------------------ ISIC challenge sets
def test_isic_2019_actinic_keratosis_excluded_for_malignant(tmp_path: Path) -> None:
    make_challenge_2019(tmp_path)
    result = load_source(str(tmp_path))
    assert result.layout == "challenge"
    assert len(result.manifest) == 10 and result.manifest["label"].sum() == 4  # MEL x2, BCC, SCC
    assert sorted(result.excluded["source_label"]) == ["AK", "UNK"]
    assert set(result.manifest["clinic"]) == {"BCN20000"}
    assert set(result.manifest["diagnosis"]) >= {"melanoma", "basal cell carcinoma"}
    melanoma = load_source(str(tmp_path), task="melanoma")
    assert len(melanoma.manifest) == 11 and melanoma.label_mapping["AK"] == 0


def test_isic_2018_task3_ground_truth(tmp_path: Path) -> None:
    classes = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    rows = []
    for i, dx in enumerate(["MEL", "NV", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]):
        write_image(tmp_path / "ISIC2018_Task3_Training_Input" / f"ISIC_{24306 + i:07d}.jpg", 3500 + i)
        rows.append({"image": f"ISIC_{24306 + i:07d}", **{c: float(c == dx) for c in classes}})
    write_csv(tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", rows)
    result = load_source(str(tmp_path))
    assert len(result.manifest) == 7 and result.manifest["label"].sum() == 2
    assert result.excluded["source_label"].tolist() == ["AKIEC"]


def test_isic_2020_kaggle_bundle_reads_train_csv_not_the_submission(tmp_path: Path) -> None:
    make_challenge_2020(tmp_path)
    write_csv(tmp_path / "sample_submission.csv", [{"image_name": "ISIC_0052212", "target": 0}])
    write_csv(
        tmp_path / "test.csv",
        [{"image_name": "ISIC_0052212", "patient_id": "IP_2842074", "sex": "female", "age_approx": 50.0,
          "anatom_site_general_challenge": "lower extremity"}],
    )  # fmt: skip
    train = (tmp_path / "train.csv").read_text().splitlines()
    write_image(tmp_path / "train" / "ISIC_0099999.jpg", 3600)
    extra = "ISIC_0099999,IP_999,female,60.0,torso,atypical melanocytic proliferation,benign,0"
    (tmp_path / "train.csv").write_text("\n".join([*train, extra]) + "\n")
    result = load_source(str(tmp_path))
    assert result.layout == "challenge" and len(result.manifest) == 12
    assert "indeterminate" in result.excluded["reason"].iat[0]
    assert set(result.manifest["anatom_site"]) == {"torso"} and set(result.manifest["sex"]) == {"male"}


# ------------------------------------------------------------------------ what cannot be read
def test_unknown_layout_lists_the_columns_found_and_each_layouts_needs(tmp_path: Path) -> None:
    write_image(tmp_path / "pics" / "a.png", 1)
    write_csv(tmp_path / "labels.csv", [{"file": "pics/a.png", "verdict": "benign"}])
    with pytest.raises(DataError) as err:
        load_source(str(tmp_path))
    message = str(err.value)
    assert "cannot tell the layout" in message
    assert "labels.csv has columns [file, verdict]" in message
    for layout in layouts.TABLE:
        assert f"{layout.name}: {layout.needs}" in message
    assert "HAM10000_metadata.csv (image_id, dx" in message and "fitzpatrick17k.csv (md5hash" in message


def test_unknown_csv_given_directly_lists_each_layouts_needs(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "labels.csv", [{"file": "a.png", "verdict": "benign"}])
    with pytest.raises(
        DataError, match=r"labels.csv has columns \['file', 'verdict'\]; expected image_path,label"
    ):
        load_source(str(csv))
    with pytest.raises(DataError, match=r"pad-ufes-20: PAD-UFES-20 metadata.csv \(img_id, diagnostic"):
        load_source(str(csv))


@pytest.mark.parametrize("how", ["folder", "file", "forced"])
def test_semicolon_csv_gets_its_own_message(tmp_path: Path, how: str) -> None:
    write_image(tmp_path / "ISIC_0000001.jpg", 1)
    (tmp_path / "metadata.csv").write_text("isic_id;diagnosis_1;age_approx\nISIC_0000001;Benign;52,5\n")
    data = str(tmp_path / "metadata.csv") if how == "file" else str(tmp_path)
    with pytest.raises(DataError, match=r"metadata.csv is separated by semicolons \(';'\), not commas"):
        load_source(data, layout="isic" if how == "forced" else "auto")


def test_metadata_csv_without_the_expected_column_names_it(tmp_path: Path) -> None:
    make_pad_ufes_20(tmp_path / "pad")
    csv = tmp_path / "pad" / "metadata.csv"
    text = csv.read_text().replace("diagnostic", "diagnosis_text", 1)
    csv.write_text(text)
    with pytest.raises(DataError, match=r"looks like PAD-UFES-20 but lacks column\(s\) diagnostic"):
        load_source(str(tmp_path / "pad"))
    make_isic(tmp_path / "isic")
    csv = tmp_path / "isic" / "metadata.csv"
    csv.write_text(csv.read_text().replace("diagnosis_1", "diagnosis", 1))
    with pytest.raises(DataError, match=r"metadata.csv has columns \[.*\]; expected isic_id, diagnosis_1"):
        load_source(str(tmp_path / "isic"))


def test_class_folders_win_over_a_stray_incomplete_csv(tmp_path: Path) -> None:
    from datagen import make_folder

    make_folder(tmp_path)
    write_csv(tmp_path / "notes.csv", [{"image_id": "x", "localization": "back"}])  # HAM-like, no dx
    assert load_source(str(tmp_path)).layout == "folder"


def test_config_offers_every_layout_of_the_table() -> None:
    assert sorted(config.LAYOUTS) == sorted(("auto", *layouts.NAMES))


def test_isic_archive_skin_type_and_attribution_are_subgroups(tmp_path: Path) -> None:
    rows = []
    for i, (dx, fst, who) in enumerate(
        [("Benign", "II", "Hospital Clínic de Barcelona"), ("Malignant", "", "ViDIR Group"),
         ("Benign", "V", "ViDIR Group"), ("Malignant", "III", "Hospital Clínic de Barcelona")]
    ):  # fmt: skip
        write_image(tmp_path / f"ISIC_{i:07d}.jpg", 3700 + i)
        rows.append(
            {"isic_id": f"ISIC_{i:07d}", "diagnosis_1": dx, "fitzpatrick_skin_type": fst, "attribution": who}
        )
    write_csv(tmp_path / "metadata.csv", rows)
    m = load_source(str(tmp_path)).manifest
    assert m["skin_tone"].tolist() == ["II", "", "V", "III"]
    assert set(m["clinic"]) == {"Hospital Clínic de Barcelona", "ViDIR Group"}


def test_docs_table_states_each_data_sets_policy() -> None:
    """docs/data.md's label-policy table names the class-1 and excluded codes each policy applies."""
    from melanoma_mlops.data.sources import bcn20000, challenge, ham10000, pad_ufes_20

    docs = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in docs.splitlines() if line.startswith("| ")}
    for policy, row in (
        (ham10000.POLICY, "HAM10000 (`dx`)"),
        (bcn20000.POLICY, "BCN20000 (`diagnosis`)"),
        (pad_ufes_20.POLICY, "PAD-UFES-20 (`diagnostic`)"),
        (challenge.POLICY_2019, "ISIC 2019 / 2018 (one-hot)"),
    ):
        cells = [c.strip() for c in rows[row].split("|")[2:-1]]
        malignant, benign, melanoma, _, excluded = cells
        assert {c.strip() for c in malignant.split("(")[0].split(",")} == set(policy.malignant), row
        assert {c.strip() for c in melanoma.split(",")} == set(policy.melanoma), row
        assert set(policy.excluded) <= {c.strip() for c in excluded.split("(")[0].split(",")}, row
        known = set(policy.names) - set(policy.excluded_always)
        assert known == set(policy.malignant) | set(policy.excluded) | {
            c.strip() for c in benign.split(",")
        }, row
