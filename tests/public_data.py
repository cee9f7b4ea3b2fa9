"""The public data sets' published layouts, in miniature: each CSV with its real header (column
names and order as published; sources in docs/data.md) and a few realistic rows written here, and
tiny generated images named and filed as each data set names and files them.

Every generator returns the counts a correct reader must find, per task:
``{task: (kept images, class 1 images, excluded rows)}``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from datagen import write_image

Counts = dict[str, tuple[int, int, int]]


def _write(path: Path, header: list[str], rows: list[list[object]], index_column: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(([""] if index_column else []) + header)
        for i, row in enumerate(rows):
            out.writerow(([i] if index_column else []) + row)
    return path


# ----------------------------------------------------------------------------------- HAM10000
HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
HAM_ROWS: list[list[object]] = [
    ["HAM_0000118", "ISIC_0027419", "bkl", "histo", "80.0", "male", "scalp", "vidir_modern"],
    ["HAM_0000118", "ISIC_0025030", "bkl", "histo", "80.0", "male", "scalp", "vidir_modern"],
    ["HAM_0002730", "ISIC_0026769", "nv", "follow_up", "45.0", "female", "back", "vidir_molemax"],
    ["HAM_0002730", "ISIC_0025661", "nv", "follow_up", "45.0", "female", "back", "vidir_molemax"],
    ["HAM_0001466", "ISIC_0031633", "nv", "consensus", "", "unknown", "unknown", "vidir_molemax"],
    ["HAM_0002761", "ISIC_0029176", "nv", "histo", "60.0", "male", "lower extremity", "rosendahl"],
    ["HAM_0005132", "ISIC_0025837", "mel", "histo", "70.0", "female", "acral", "vidir_modern"],
    ["HAM_0005132", "ISIC_0025209", "mel", "histo", "70.0", "female", "acral", "vidir_modern"],
    ["HAM_0001988", "ISIC_0028155", "mel", "histo", "55.0", "male", "trunk", "vienna_dias"],
    ["HAM_0002048", "ISIC_0024332", "bcc", "histo", "75.0", "male", "face", "rosendahl"],
    ["HAM_0004143", "ISIC_0029417", "bcc", "histo", "65.0", "female", "chest", "rosendahl"],
    ["HAM_0006129", "ISIC_0030877", "df", "consensus", "50.0", "female", "lower extremity", "rosendahl"],
    ["HAM_0001372", "ISIC_0032025", "vasc", "consensus", "35.0", "male", "abdomen", "vidir_modern"],
    ["HAM_0002965", "ISIC_0026149", "akiec", "histo", "85.0", "male", "face", "rosendahl"],
    ["HAM_0003264", "ISIC_0030143", "akiec", "histo", "70.0", "female", "hand", "rosendahl"],
]
HAM_COUNTS: Counts = {"malignant": (13, 5, 2), "melanoma": (15, 3, 0)}


def make_ham10000(root: Path, with_dataset: bool = True, bare_name: bool = False) -> Counts:
    """The original release: HAM10000_metadata.csv (``dataset`` column of later Dataverse
    versions optional) and the images split over the two part folders."""
    header = HAM_HEADER + (["dataset"] if with_dataset else [])
    rows = [row if with_dataset else row[:7] for row in HAM_ROWS]
    for i, row in enumerate(rows):
        part = 1 if i % 2 == 0 else 2
        write_image(root / f"HAM10000_images_part_{part}" / f"{row[1]}.jpg", 3000 + i)
    _write(root / ("HAM10000_metadata" if bare_name else "HAM10000_metadata.csv"), header, rows)
    return HAM_COUNTS


# ----------------------------------------------------------------------------------- BCN20000
BCN_HEADER = [
    "bcn_filename",
    "age_approx",
    "anatom_site_general",
    "diagnosis",
    "lesion_id",
    "capture_date",
    "sex",
    "split",
]
BCN_ROWS: list[list[object]] = [
    ["BCN_0000000001.jpg", "55.0", "anterior torso", "MEL", "BCN_0003884", "2012-05-16", "male", "train"],
    ["BCN_0000000002.jpg", "55.0", "anterior torso", "MEL", "BCN_0003884", "2012-05-16", "male", "train"],
    ["BCN_0000000003.jpg", "30.0", "posterior torso", "NV", "BCN_0000019", "2014-02-03", "female", "train"],
    ["BCN_0000000004.jpg", "30.0", "posterior torso", "NV", "BCN_0000019", "2014-02-03", "female", "train"],
    ["BCN_0000000005.jpg", "", "", "NV", "BCN_0000020", "2011-07-21", "", "train"],
    ["BCN_0000000006.jpg", "75.0", "head/neck", "BCC", "BCN_0001212", "2013-10-01", "male", "train"],
    ["BCN_0000000007.jpg", "80.0", "head/neck", "SCC", "BCN_0001330", "2015-03-09", "female", "train"],
    ["BCN_0000000008.jpg", "70.0", "head/neck", "AK", "BCN_0002001", "2016-01-12", "male", "train"],
    ["BCN_0000000009.jpg", "65.0", "upper extremity", "BKL", "BCN_0002044", "2010-09-30", "female", "train"],
    ["BCN_0000000010.jpg", "40.0", "lower extremity", "DF", "BCN_0002100", "2012-12-12", "female", "train"],
    ["BCN_0000000011.jpg", "25.0", "palms/soles", "VASC", "BCN_0002200", "2014-06-18", "male", "train"],
]
BCN_COUNTS: Counts = {"malignant": (10, 4, 1), "melanoma": (11, 2, 0)}


def make_bcn20000(root: Path) -> Counts:
    """bcn_20k_train.csv with BCN_20k_train/ images, and the unlabelled test CSV beside it."""
    for i, row in enumerate(BCN_ROWS):
        write_image(root / "BCN_20k_train" / str(row[0]), 3100 + i)
    _write(root / "bcn_20k_train.csv", BCN_HEADER, BCN_ROWS)
    test_header = [c for c in BCN_HEADER if c not in ("diagnosis", "split")]
    _write(
        root / "bcn_20k_test.csv", test_header, [["BCN_0000020001.jpg", "45.0", "head/neck", "", "", "male"]]
    )
    return BCN_COUNTS


# -------------------------------------------------------------------------------- PAD-UFES-20
PAD_HEADER = [
    "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
    "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
    "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch",
    "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed",
]  # fmt: skip


def _pad_row(
    patient: int, lesion: int, image: int, dx: str, region: str, fitz: str, gender: str
) -> list[object]:
    if not gender:  # not every patient's clinical data were collected: blanks, as in the release
        return [
            f"PAT_{patient}",
            lesion,
            *[""] * 4,
            63,
            *[""] * 7,
            region,
            *[""] * 2,
            dx,
            "False",
            "False",
            "False",
            "False",
            "False",
            "False",
            f"PAT_{patient}_{lesion}_{image}.png",
            "False",
        ]
    biopsed = "True" if dx in ("BCC", "MEL", "SCC") else "False"
    return [
        f"PAT_{patient}",
        lesion,
        "False",
        "False",
        "POMERANIA",
        "POMERANIA",
        55,
        "False",
        gender,
        "True",
        "True",
        "True",
        "True",
        fitz,
        region,
        "6.0",
        "5.0",
        dx,
        "True",
        "True",
        "False",
        "True",
        "True",
        "True",
        f"PAT_{patient}_{lesion}_{image}.png",
        biopsed,
    ]


PAD_ROWS = [
    _pad_row(46, 881, 939, "BCC", "NECK", "3.0", "FEMALE"),
    _pad_row(46, 881, 14, "BCC", "NECK", "3.0", "FEMALE"),
    _pad_row(1516, 1765, 530, "NEV", "BACK", "2.0", "MALE"),
    _pad_row(1516, 1766, 531, "NEV", "CHEST", "2.0", "MALE"),
    _pad_row(795, 1540, 212, "MEL", "FOREARM", "1.0", "MALE"),
    _pad_row(1991, 2123, 980, "SCC", "LIP", "4.0", "FEMALE"),
    _pad_row(305, 640, 48, "SEK", "FACE", "2.0", "FEMALE"),
    _pad_row(1243, 1125, 322, "ACK", "ARM", "", ""),
    _pad_row(1244, 1126, 323, "ACK", "HAND", "3.0", "MALE"),
]
PAD_COUNTS: Counts = {"malignant": (7, 4, 2), "melanoma": (9, 1, 0)}


def make_pad_ufes_20(root: Path) -> Counts:
    """metadata.csv and the PNG images over the imgs_part_* folders."""
    for i, row in enumerate(PAD_ROWS):
        write_image(root / f"imgs_part_{i % 3 + 1}" / str(row[24]), 3200 + i)
    _write(root / "metadata.csv", PAD_HEADER, PAD_ROWS)
    return PAD_COUNTS


# ---------------------------------------------------------------------------------------- DDI
DDI_HEADER = ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]
DDI_ROWS: list[list[object]] = [
    [1, "000001.png", 56, True, "melanoma-in-situ"],
    [7, "000007.png", 12, True, "melanoma-acral-lentiginous"],
    [5, "000005.png", 12, True, "basal-cell-carcinoma"],
    [3, "000003.png", 56, True, "mycosis-fungoides"],
    [36, "000036.png", 34, False, "melanocytic-nevi"],
    [42, "000042.png", 12, False, "melanocytic-nevi"],
    [82, "000082.png", 34, False, "seborrheic-keratosis"],
    [59, "000059.png", 56, False, "verruca-vulgaris"],
    [264, "000264.png", 12, False, "actinic-keratosis"],
    [199, "000199.png", 56, False, "eczema-spongiotic-dermatitis"],
]
DDI_COUNTS: Counts = {"malignant": (9, 4, 1), "melanoma": (10, 2, 0)}


def make_ddi(root: Path) -> Counts:
    """ddi_metadata.csv (a pandas index as first, unnamed column) and the PNGs beside it."""
    for i, row in enumerate(DDI_ROWS):
        write_image(root / str(row[1]), 3300 + i)
    _write(root / "ddi_metadata.csv", DDI_HEADER, DDI_ROWS, index_column=True)
    return DDI_COUNTS


# ----------------------------------------------------------------------------- Fitzpatrick17k
F17K_HEADER = [
    "md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
    "three_partition_label", "qc", "url", "url_alphanum",
]  # fmt: skip
_DA = "https://www.dermaamin.com/site/images/clinical-pic/"
_AD = "http://atlasdermatologico.com.br/img?imageId="
F17K_ROWS: list[list[object]] = [
    [
        "b87804452f60aa162a6d29c0f66a2466",
        2,
        1,
        "melanoma",
        "malignant melanoma",
        "malignant",
        "",
        _DA + "L/lmm/lmm6.jpg",
    ],
    [
        "4c3f795cf8eb72b946f9bd2642cf23c1",
        6,
        5,
        "superficial spreading melanoma ssm",
        "malignant melanoma",
        "malignant",
        "",
        _AD + "4713",
    ],
    [
        "d2c77aa81ca884f99174471132bd3e24",
        1,
        1,
        "basal cell carcinoma",
        "malignant epidermal",
        "malignant",
        "",
        _DA + "b/basal_cell_carcinoma/basal_cell_carcinoma33.jpg",
    ],
    [
        "b09233673fc585369e723ec841ed0acb",
        5,
        3,
        "actinic keratosis",
        "malignant epidermal",
        "malignant",
        "",
        _DA + "a/actinic_keratoses/actinic_keratoses83.jpg",
    ],
    [
        "0e5d9a3bb4b4d1c5a9bcd37b4b2e8f11",
        -1,
        -1,
        "squamous cell carcinoma",
        "malignant epidermal",
        "malignant",
        "",
        _AD + "5120",
    ],
    [
        "d2bac3c9e4499032ca8e9b07c7d3bc40",
        2,
        3,
        "dermatofibroma",
        "benign dermal",
        "benign",
        "",
        _DA + "d/dermatofibroma/dermatofibroma71.jpg",
    ],
    [
        "5a0f6e3c1d2b4a5968778695a4b3c2d1",
        4,
        4,
        "seborrheic keratosis",
        "benign epidermal",
        "benign",
        "",
        _AD + "811",
    ],
    [
        "8e7d6c5b4a3928171615141312111009",
        6,
        6,
        "nevocytic nevus",
        "benign melanocyte",
        "benign",
        "",
        _AD + "902",
    ],
    [
        "0a94359e7eaacd7178e06b2823777789",
        1,
        1,
        "psoriasis",
        "inflammatory",
        "non-neoplastic",
        "",
        _DA + "p/psoriasis/psoriasis38.jpg",
    ],
    [
        "d1fb87ee7ee50f997cd6497dd90d6bbb",
        4,
        2,
        "acne vulgaris",
        "inflammatory",
        "non-neoplastic",
        "1 Diagnostic",
        _DA + "a/acne_vulgaris/acne_vulgaris150.jpg",
    ],
    [
        "45f7fe0e10214e32e890cad9d29d4811",
        6,
        5,
        "kaposi sarcoma",
        "malignant dermal",
        "malignant",
        "3 Wrongly labelled",
        _DA + "k/kaposis-sarcoma/kaposis-sarcoma4.jpg",
    ],
]
F17K_COUNTS: Counts = {"malignant": (7, 4, 4), "melanoma": (8, 2, 3)}


def _alphanum(url: str) -> str:
    return "".join(ch for ch in url if ch.isalnum()) + ".jpg"


def make_fitzpatrick17k(root: Path) -> Counts:
    """fitzpatrick17k.csv and its images as <md5hash>.jpg (one downloaded and named url_alphanum)."""
    rows = [[*row, _alphanum(str(row[7]))] for row in F17K_ROWS]
    for i, row in enumerate(rows):
        name = str(row[8]) if i == 1 else f"{row[0]}.jpg"
        write_image(root / "images" / name, 3400 + i)
    _write(root / "fitzpatrick17k.csv", F17K_HEADER, rows)
    return F17K_COUNTS
