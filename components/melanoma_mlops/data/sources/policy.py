"""The label policy of a published data set: which diagnosis is class 1 for ``--task malignant`` and
for ``--task melanoma``, which is excluded and why. One :class:`LabelPolicy` per data set (in its
layout module), applied row by row by :func:`decide`; docs/data.md shows them side by side.

Principles, the same for every data set:

- A diagnosis the data set does not publish is excluded with the value named, never guessed.
- A diagnosis whose class the data sets themselves disagree on is excluded for ``malignant``
  rather than forced into one class: **actinic keratosis** is "Indeterminate" in the ISIC
  taxonomy, a skin disease (not a cancer) in PAD-UFES-20, "malignant epidermal" in
  Fitzpatrick17k; a model trained on one convention and scored on another would be judged
  against a different truth. A class that **mixes** it with Bowen's disease (intraepithelial
  carcinoma, i.e. squamous cell carcinoma in situ: malignant) -- HAM10000's ``akiec``, the ISIC
  challenges' ``AK``/``AKIEC`` -- cannot be split without a finer diagnosis and is excluded too.
- For ``melanoma`` every other *known* diagnosis is class 0, these included (an actinic keratosis
  is certainly not a melanoma); only what may be a melanoma (indeterminate, unknown) is excluded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from melanoma_mlops.data.sources.common import FileTree, missing_images_error

ACTINIC_KERATOSIS = (
    "excluded for task 'malignant': actinic keratosis is a precancerous lesion the data sets class "
    "differently (ISIC: indeterminate; PAD-UFES-20: not a cancer; Fitzpatrick17k: malignant), so "
    "neither class is right everywhere"
)
AK_WITH_BOWEN = (
    "excluded for task 'malignant': the class mixes actinic keratosis with Bowen's disease / "
    "intraepithelial carcinoma (squamous cell carcinoma in situ, malignant) and no finer diagnosis "
    "splits them"
)


@dataclass(frozen=True)
class LabelPolicy:
    """How one data set's diagnosis codes become classes (see the module docstring)."""

    data_set: str
    #: Every published code -> the diagnosis in words (the manifest's ``diagnosis`` column).
    names: Mapping[str, str]
    #: Class 1 for task malignant.
    malignant: frozenset[str]
    #: Class 1 for task melanoma.
    melanoma: frozenset[str]
    #: Code -> why it is left out for task malignant only.
    excluded: Mapping[str, str] = field(default_factory=dict)
    #: Code -> why it is left out for both tasks.
    excluded_always: Mapping[str, str] = field(default_factory=dict)

    def decide(self, code: str, task: str) -> tuple[int | None, str]:
        """(class, '') or (None, why it is excluded) for one row's code."""
        if code not in self.names:
            return None, (
                f"{self.data_set} diagnosis {code!r} is not one of the published codes "
                f"({', '.join(self.names)}): excluded, never guessed"
            )
        if code in self.excluded_always:
            return None, self.excluded_always[code]
        if task == "melanoma":
            return int(code in self.melanoma), ""
        if code in self.excluded:
            return None, self.excluded[code]
        return int(code in self.malignant), ""

    def note(self, task: str) -> str:
        """The policy in one line, for the run's notes."""
        positives = self.melanoma if task == "melanoma" else self.malignant
        left_out = (
            dict(self.excluded_always) if task == "melanoma" else {**self.excluded, **self.excluded_always}
        )
        text = f"{self.data_set}: class 1 = {', '.join(sorted(positives))}"
        return text + (f"; excluded: {', '.join(sorted(left_out))}" if left_out else "")


@dataclass
class Decided:
    """The rows a layout keeps (with their classes) and the excluded rows (with their reasons)."""

    kept: pd.DataFrame
    labels: list[int]
    excluded: list[dict[str, object]]


def decide(
    meta: pd.DataFrame,
    decisions: list[tuple[int | None, str]],
    source_labels: list[str],
    image_uris: list[str],
) -> Decided:
    """Split ``meta`` by per-row ``decisions``; an excluded row keeps its source label and reason."""
    keep = [label is not None for label, _ in decisions]
    excluded = [
        {"image_uri": image_uris[pos], "source_label": source_labels[pos], "reason": reason, "row": pos + 1}
        for pos, (label, reason) in enumerate(decisions)
        if label is None
    ]
    labels = [int(label) for label, _ in decisions if label is not None]
    return Decided(meta[keep].reset_index(drop=True), labels, excluded)


def stems(files: list[str]) -> list[str]:
    """File names without folder and extension: how :meth:`FileTree.image_index` is keyed."""
    out = []
    for name in files:
        base = name.rsplit("/", 1)[-1]
        out.append(base.rsplit(".", 1)[0] if "." in base else base)
    return out


def find_images(
    index: dict[str, str], files: list[str], source: str, tree: FileTree | None = None
) -> list[str]:
    """URI of each published file name (looked up by its stem: the extension may differ); the
    missing ones are named as the data set names them, with why the listing of ``tree`` left one out
    (a link out of the data root)."""
    keys = stems(files)
    missing = [file for file, key in zip(files, keys, strict=True) if key not in index]
    if missing:
        raise missing_images_error(source, missing, tree.left_out_names() if tree is not None else None)
    return [index[key] for key in keys]


def present_mapping(out: pd.DataFrame) -> dict[str, int]:
    """Source label -> class, for the labels the kept rows carry."""
    return dict(zip(out["source_label"].astype(str), out["label"].astype(int), strict=True))


def uris_or_names(index: dict[str, str], files: list[str]) -> list[str]:
    """Each file's URI where the index has it, else its published name (for excluded rows)."""
    return [index.get(key, file) for key, file in zip(stems(files), files, strict=True)]
