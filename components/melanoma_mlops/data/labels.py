"""What the labels mean, said exactly: the task's class names, the source-label mapping, what
class 1 is made of, and the unit that kept the splits apart.

With the default task (``malignant``) class 1 is *every* malignant diagnosis: in the ISIC Archive
about 40% of the malignant images are basal or squamous cell carcinomas, not melanomas. A card
that calls class 1 "melanoma" overstates what the model detects, so the composition is counted
from the metadata's finest diagnosis wherever the source has one. Pure functions on a manifest.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from melanoma_mlops import artifacts

#: Class names (0, 1) of each task, declared with the other names that flow between steps.
TASK_CLASSES = artifacts.TASK_CLASSES
TASK_DESCRIPTIONS = {
    "malignant": "malignant vs benign: class 1 is every malignant diagnosis (melanoma, basal and squamous "
    "cell carcinoma, ...), not only melanoma",
    "melanoma": "melanoma vs rest: class 1 is melanoma (in situ and invasive); every other diagnosis, benign "
    "or malignant, is class 0",
}
#: Finer diagnosis columns of a manifest, finest first (the ISIC hierarchy; ``diagnosis`` in older
#: exports and the 2020 challenge).
DIAGNOSIS_COLUMNS = ("diagnosis_5", "diagnosis_4", "diagnosis_3", "diagnosis_2", "diagnosis")
#: How each group kind is said, and its plural.
UNIT_NAMES = {
    "patient": ("patient", "patients"),
    "lesion": ("lesion", "lesions"),
    "group": ("manifest group", "manifest groups"),
    "duplicate": ("duplicate cluster", "duplicate clusters"),
}


def class_names(task: str) -> tuple[str, str]:
    return TASK_CLASSES.get(task, TASK_CLASSES["malignant"])


def class_keys(task: str) -> tuple[str, str]:
    """The class names as logged names spell them (``not_melanoma``)."""
    return artifacts.class_keys(task)


def describe_task(task: str) -> str:
    return TASK_DESCRIPTIONS.get(task, f"task {task!r}")


def label_mapping(df: pd.DataFrame) -> dict[str, int]:
    """Source label -> class, as the rows of the manifest carry it (sorted by class, then label)."""
    if "source_label" not in df.columns:
        return {}
    pairs = df[["source_label", "label"]].astype({"source_label": str, "label": int}).drop_duplicates()
    return {
        str(s): int(y)
        for s, y in sorted(
            zip(pairs["source_label"], pairs["label"], strict=True), key=lambda p: (p[1], p[0])
        )
    }


def finest_diagnosis(df: pd.DataFrame) -> pd.Series | None:
    """Per row, the finest non-empty diagnosis of the metadata; None when the source has none."""
    columns = [c for c in DIAGNOSIS_COLUMNS if c in df.columns]
    if not columns:
        return None
    out = pd.Series("", index=df.index, dtype=object)
    for column in reversed(columns):  # coarsest first, each finer one overwrites where it is known
        values = df[column].fillna("").astype(str).str.strip()
        out = out.where(values == "", values)
    return out


def class_composition(df: pd.DataFrame, label: int = 1) -> dict[str, int]:
    """Images of class ``label`` per finest diagnosis, most frequent first ({} without diagnoses).

    Rows whose metadata names no diagnosis are counted as ``(not recorded)``.
    """
    diagnosis = finest_diagnosis(df)
    if diagnosis is None:
        return {}
    chosen = diagnosis[df["label"].astype(int) == label].replace("", "(not recorded)")
    counts = chosen.value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def grouping(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per group kind (patient, lesion, duplicate, ...): groups and images; ``image`` counts the
    images with no group, each its own unit of the split."""
    ids = df["group_id"].fillna("").astype(str)
    kinds = (
        df["group_kind"].fillna("").astype(str)
        if "group_kind" in df.columns
        else pd.Series("", index=df.index)
    )
    grouped = ids != ""
    order = list(UNIT_NAMES)
    out: dict[str, dict[str, int]] = {}
    for kind in sorted(set(kinds[grouped]), key=lambda k: (order.index(k) if k in order else len(order), k)):
        rows = grouped & (kinds == kind)
        out[kind or "group"] = {"groups": int(ids[rows].nunique()), "images": int(rows.sum())}
    if (~grouped).any():
        out["image"] = {"groups": int((~grouped).sum()), "images": int((~grouped).sum())}
    return out


def describe_grouping(counts: Mapping[str, Mapping[str, int]]) -> str:
    """``patient (245 groups, 523 images), lesion (53 groups, 77 images)`` in words."""
    if not counts:
        return "nothing recorded"
    parts = []
    for kind, c in counts.items():
        if kind == "image":
            parts.append(f"no group ({c['images']} images, each its own unit)")
        else:
            parts.append(
                f"{UNIT_NAMES.get(kind, (kind, kind))[0]} ({c['groups']} groups, {c['images']} images)"
            )
    return ", ".join(parts)


def patient_ids(df: pd.DataFrame) -> str:
    """Whether the data name a patient for each image: ``present``, ``absent`` or ``partial (k of n
    images)``. Without one, splits and bootstrap units are lesions at best: two lesions of one
    patient can land in train and test, so the estimates are less conservative than patient-level
    ones."""
    if "patient_id" not in df.columns or df.empty:
        return "absent"
    known = int((df["patient_id"].fillna("").astype(str).str.strip() != "").sum())
    if known == 0:
        return "absent"
    return "present" if known == len(df) else f"partial ({known} of {len(df)} images)"


def describe_patient_ids(state: str) -> str:
    """The card's sentence for :func:`patient_ids`."""
    if state == "present":
        return "present for every image: splits and bootstrap resampling keep each patient whole"
    if state == "absent":
        return (
            "absent: the data carry no patient id, so patient-level grouping was impossible; images are "
            "grouped by lesion (and duplicate cluster) where the data allow, and two lesions of one patient "
            "may sit in different splits"
        )
    return (
        f"{state}: images without one are grouped by lesion (and duplicate cluster) only, so their "
        "patient-level grouping was impossible"
    )


def describe_units(counts: Mapping[str, Mapping[str, int]]) -> str:
    """The bootstrap's resampling units in words, from :func:`grouping` of the evaluated split:
    ``whole patients and lesions resampled (30 patients, 12 lesions, 5 single images)``."""
    kinds = [k for k in counts if k != "image"]
    if not kinds:
        return "single images resampled (no groups in the data)"
    names = [UNIT_NAMES.get(k, (k, k + "s")) for k in kinds]
    plural = [n[1] for n in names]
    named = plural[0] if len(plural) == 1 else ", ".join(plural[:-1]) + " and " + plural[-1]
    parts = [
        f"{counts[k]['groups']} {n[counts[k]['groups'] != 1]}" for k, n in zip(kinds, names, strict=True)
    ]
    if "image" in counts:
        single = counts["image"]["images"]
        parts.append(f"{single} single image{'s' if single != 1 else ''}")
    return f"whole {named} resampled ({', '.join(parts)})"
