"""Layout ``pad-ufes-20``: PAD-UFES-20, smartphone clinical images from the Dermatological and
Surgical Assistance Program of the Federal University of Espírito Santo, Brazil (Pacheco et al.,
"PAD-UFES-20: a skin lesion dataset composed of patient data and clinical images collected from
smartphones", Data in Brief 32, 106221 (2020), doi:10.1016/j.dib.2020.106221, whose table lists
every column; files on Mendeley Data, doi:10.17632/zr7vgbcyr2.1)::

    metadata.csv     patient_id,lesion_id,smoke,drink,background_father,background_mother,age,
                     pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,
                     has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,
                     grew,hurt,changed,bleed,elevation,img_id,biopsed
    images/ (or imgs_part_1/ .. imgs_part_3/)    PAT_46_881_939.png ...

``fitspatrick`` [sic] is the Fitzpatrick skin type (``skin_tone``), ``gender`` the sex,
``region`` the body site. Clinical (not dermoscopic) photographs taken with several smartphones:
a natural external set for a dermoscopy model. Patients and lesions both have ids.

Label policy (:mod:`.policy`): malignant = BCC, MEL, SCC (all biopsy-proven; SCC includes
Bowen's disease, squamous cell carcinoma in situ, which the authors merged into it); benign =
NEV, SEK; ACK (actinic keratosis) excluded for ``malignant``; melanoma = MEL.
"""

from __future__ import annotations

import pandas as pd

from melanoma_mlops.data.sources import metadata
from melanoma_mlops.data.sources.common import FileTree, Loaded, excluded_frame, lacks_columns, read_csv
from melanoma_mlops.data.sources.policy import (
    ACTINIC_KERATOSIS,
    LabelPolicy,
    decide,
    find_images,
    present_mapping,
    uris_or_names,
)

NAME = "PAD-UFES-20"
REQUIRED = ("img_id", "diagnostic")
MARKS = ("img_id", "diagnostic", "fitspatrick", "biopsed")
POLICY = LabelPolicy(
    NAME,
    names={
        "ACK": "actinic keratosis",
        "BCC": "basal cell carcinoma",
        "MEL": "melanoma",
        "NEV": "nevus",
        "SCC": "squamous cell carcinoma (including Bowen's disease)",
        "SEK": "seborrheic keratosis",
    },
    malignant=frozenset({"BCC", "MEL", "SCC"}),
    melanoma=frozenset({"MEL"}),
    excluded={"ACK": "PAD-UFES-20 ACK: " + ACTINIC_KERATOSIS},
)
#: region -> ISIC anatom_site_general.
SITES = {
    "arm": "upper extremity",
    "forearm": "upper extremity",
    "hand": "upper extremity",
    "face": "head/neck",
    "nose": "head/neck",
    "ear": "head/neck",
    "lip": "head/neck",
    "neck": "head/neck",
    "scalp": "head/neck",
    "chest": "anterior torso",
    "abdomen": "anterior torso",
    "back": "posterior torso",
    "thigh": "lower extremity",
    "foot": "lower extremity",
    "": "",
}


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def claims(columns: list[str]) -> bool:
    return bool(set(MARKS) & set(columns))


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """metadata.csv and the images of the part folders (found by img_id anywhere below)."""
    meta = read_csv(csv)
    if not accepts(list(meta.columns)):
        raise lacks_columns(csv, NAME, REQUIRED, list(meta.columns))
    codes = meta["diagnostic"].str.strip().str.upper().tolist()
    files = meta["img_id"].str.strip().tolist()
    index = tree.image_index()
    decided = decide(meta, [POLICY.decide(c, task) for c in codes], codes, uris_or_names(index, files))
    kept = decided.kept
    out = pd.DataFrame(
        {
            "image_uri": find_images(index, kept["img_id"].str.strip().tolist(), csv, tree),
            "label": decided.labels,
            "source_label": kept["diagnostic"].str.strip().str.upper().to_numpy(),
            "img_id": kept["img_id"].str.strip().to_numpy(),
        }
    )
    out["diagnosis"] = [POLICY.names[c] for c in out["source_label"]]
    for column in ("patient_id", "lesion_id", "biopsed", "region"):
        if column in kept.columns:
            out[column] = kept[column].str.strip().to_numpy()
    if "gender" in kept.columns:
        out["sex"] = metadata.sex(kept["gender"])
    if "age" in kept.columns:
        out["age"] = metadata.age(kept["age"])
    if "region" in kept.columns:
        out["anatom_site"] = metadata.anatom_site(kept["region"], SITES, NAME)
    if "fitspatrick" in kept.columns:
        out["skin_tone"] = metadata.fitzpatrick(kept["fitspatrick"])
    notes = [POLICY.note(task), "PAD-UFES-20: clinical smartphone photographs, not dermoscopy"]
    return Loaded(out, excluded_frame(decided.excluded), present_mapping(out), notes)
