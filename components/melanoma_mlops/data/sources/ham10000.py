"""Layout ``ham10000``: the original HAM10000 release (Tschandl, Rosendahl & Kittler, "The HAM10000
dataset, a large collection of multi-source dermatoscopic images of common pigmented skin lesions",
Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161; files on the Harvard Dataverse,
doi:10.7910/DVN/DBW86T, mirrored on Kaggle)::

    HAM10000_metadata.csv         lesion_id,image_id,dx,dx_type,age,sex,localization[,dataset]
    HAM10000_images_part_1/       ISIC_0024306.jpg ...
    HAM10000_images_part_2/       ISIC_0029306.jpg ...

(the Dataverse bundle names the metadata file ``HAM10000_metadata`` without an extension: read
as well). ``dx`` is one of seven codes (paper, table 1); later Dataverse versions add ``dataset``
(``vidir_modern``, ``vidir_molemax``, ``vienna_dias``, ``rosendahl``: the site and device), read as
``clinic``. The release has **no patient id**: images are grouped by ``lesion_id`` only.

Label policy (:mod:`.policy`): malignant = ``mel``, ``bcc``; benign = ``nv``, ``bkl``, ``df``,
``vasc``; ``akiec`` (actinic keratoses *and* intraepithelial carcinoma / Bowen's disease in one
class) is excluded for ``malignant`` and class 0 for ``melanoma`` (= ``mel``).
"""

from __future__ import annotations

import pandas as pd

from melanoma_mlops.data.sources import metadata
from melanoma_mlops.data.sources.common import FileTree, Loaded, excluded_frame, lacks_columns, read_csv
from melanoma_mlops.data.sources.policy import (
    AK_WITH_BOWEN,
    LabelPolicy,
    decide,
    find_images,
    present_mapping,
    uris_or_names,
)

NAME = "HAM10000"
REQUIRED = ("image_id", "dx")
#: Columns only this data set's CSV has: a CSV with one of them is read as HAM10000 (and told
#: what it lacks) even when a required column is missing.
MARKS = ("dx", "dx_type", "localization")
#: The metadata file as the Dataverse bundle names it (no extension).
BARE_NAME = "HAM10000_metadata"
POLICY = LabelPolicy(
    NAME,
    names={
        "akiec": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
        "bcc": "basal cell carcinoma",
        "bkl": "benign keratosis-like lesion (solar lentigo, seborrheic or lichen planus-like keratosis)",
        "df": "dermatofibroma",
        "mel": "melanoma",
        "nv": "melanocytic nevus",
        "vasc": "vascular lesion",
    },
    malignant=frozenset({"mel", "bcc"}),
    melanoma=frozenset({"mel"}),
    excluded={"akiec": "HAM10000 akiec: " + AK_WITH_BOWEN},
)
#: localization -> ISIC anatom_site_general.
SITES = {
    "abdomen": "anterior torso",
    "acral": "palms/soles",
    "back": "posterior torso",
    "chest": "anterior torso",
    "ear": "head/neck",
    "face": "head/neck",
    "foot": "lower extremity",
    "genital": "oral/genital",
    "hand": "upper extremity",
    "lower extremity": "lower extremity",
    "neck": "head/neck",
    "scalp": "head/neck",
    "trunk": "torso",
    "upper extremity": "upper extremity",
    "unknown": "",
    "": "",
}


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def claims(columns: list[str]) -> bool:
    return bool(set(MARKS) & set(columns))


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """HAM10000_metadata.csv and the images of the part folders (found by image_id anywhere below)."""
    meta = read_csv(csv)
    if not accepts(list(meta.columns)):
        raise lacks_columns(csv, NAME, REQUIRED, list(meta.columns))
    codes = meta["dx"].str.strip().str.lower().tolist()
    names = meta["image_id"].str.strip().tolist()
    index = tree.image_index()
    decided = decide(
        meta,
        [POLICY.decide(code, task) for code in codes],
        codes,
        uris_or_names(index, names),
    )
    kept = decided.kept
    out = pd.DataFrame(
        {
            "image_uri": find_images(index, kept["image_id"].str.strip().tolist(), csv, tree),
            "label": decided.labels,
            "source_label": kept["dx"].str.strip().str.lower().to_numpy(),
            "image_id": kept["image_id"].str.strip().to_numpy(),
        }
    )
    out["diagnosis"] = [POLICY.names[c] for c in out["source_label"]]
    for column in ("lesion_id", "dx_type", "localization"):
        if column in kept.columns:
            out[column] = kept[column].str.strip().to_numpy()
    if "sex" in kept.columns:
        out["sex"] = metadata.sex(kept["sex"])
    if "age" in kept.columns:
        out["age"] = metadata.age(kept["age"])
    if "localization" in kept.columns:
        out["anatom_site"] = metadata.anatom_site(kept["localization"], SITES, NAME)
    if "dataset" in kept.columns:
        out["clinic"] = kept["dataset"].str.strip().to_numpy()
    notes = [POLICY.note(task), "HAM10000 has no patient id: images are grouped by lesion_id only"]
    return Loaded(out, excluded_frame(decided.excluded), present_mapping(out), notes)
