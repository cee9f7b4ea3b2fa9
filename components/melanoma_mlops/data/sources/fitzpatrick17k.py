"""Layout ``fitzpatrick17k``: Fitzpatrick17k, clinical atlas images annotated with Fitzpatrick
skin type (Groh et al., "Evaluating deep neural networks trained on clinical images in dermatology
with the Fitzpatrick 17k dataset", CVPR Workshops 2021; the CSV as published in
github.com/mattgroh/fitzpatrick17k, ``fitzpatrick17k.csv``)::

    fitzpatrick17k.csv   md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,
                         three_partition_label,qc,url,url_alphanum
    <md5hash>.jpg ...    (the images as the authors distribute them; a copy downloaded from
                         ``url`` and named ``url_alphanum`` is found too)

``fitzpatrick_scale`` (Scale AI annotators; -1 = unknown) is the ``skin_tone``, ``fitzpatrick_centaur``
(Centaur Labs) is kept beside it; the first release called it ``fitzpatrick``, read as well. The
atlas an image comes from (DermaAmin or Atlas Dermatologico, from ``url``) is its ``clinic``.
Images are not grouped: the release has no patient or lesion ids (one md5 per image).

Label policy: ``three_partition_label`` malignant = 1, benign = 0; **non-neoplastic** conditions
(inflammatory, genodermatoses: 12,080 of 16,577 images) are excluded for both tasks -- they are not
lesions a melanoma/malignancy model scores, and counting eczema as "benign" would inflate
specificity; actinic keratosis (``label``) is excluded for ``malignant`` as in every layout
(:mod:`.policy`); a row the authors' quality control marked ``3 Wrongly labelled`` is excluded.
Melanoma = ``nine_partition_label`` ``malignant melanoma`` (melanoma, its subtypes, lentigo maligna).
"""

from __future__ import annotations

from urllib.parse import urlparse

import pandas as pd

from melanoma_mlops.data.sources import metadata
from melanoma_mlops.data.sources.common import FileTree, Loaded, excluded_frame, lacks_columns, read_csv
from melanoma_mlops.data.sources.policy import ACTINIC_KERATOSIS, decide, present_mapping, stems
from melanoma_mlops.errors import DataError

NAME = "Fitzpatrick17k"
REQUIRED = ("md5hash", "label", "nine_partition_label", "three_partition_label")
MARKS = ("md5hash", "three_partition_label", "nine_partition_label", "fitzpatrick_scale")
SCALE_COLUMNS = ("fitzpatrick_scale", "fitzpatrick")
THREE = {"malignant": 1, "benign": 0}
NON_NEOPLASTIC = (
    "Fitzpatrick17k non-neoplastic condition (inflammatory or genodermatosis): not a lesion the model "
    "scores, excluded for both tasks"
)
WRONG = "Fitzpatrick17k quality control: '3 Wrongly labelled', excluded"
ATLASES = {"dermaamin.com": "DermaAmin", "atlasdermatologico.com.br": "Atlas Dermatologico"}


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def claims(columns: list[str]) -> bool:
    return bool(set(MARKS) & set(columns))


def _decide(row: pd.Series, task: str) -> tuple[int | None, str]:
    three = row["three_partition_label"].strip().lower()
    if row.get("qc", "").strip().startswith("3"):
        return None, WRONG
    if three == "non-neoplastic":
        return None, NON_NEOPLASTIC
    if three not in THREE:
        return (
            None,
            f"{NAME} three_partition_label {three!r} is not malignant/benign/non-neoplastic: excluded",
        )
    if task == "melanoma":
        return int(row["nine_partition_label"].strip().lower() == "malignant melanoma"), ""
    if row["label"].strip().lower() == "actinic keratosis":
        return None, f"{NAME} actinic keratosis: " + ACTINIC_KERATOSIS
    return THREE[three], ""


def _atlas(url: str) -> str:
    host = urlparse(url.strip()).netloc.lower().removeprefix("www.")
    return ATLASES.get(host, host)


def _images(index: dict[str, str], kept: pd.DataFrame, csv: str, left_out: dict[str, str]) -> list[str]:
    """Each row's image: ``<md5hash>.*``, else the ``url_alphanum`` name of a self-made download."""
    alt = stems(kept["url_alphanum"].tolist()) if "url_alphanum" in kept.columns else [""] * len(kept)
    uris, missing = [], []
    for md5, other in zip(kept["md5hash"].str.strip(), alt, strict=True):
        uri = index.get(md5) or index.get(other)
        if uri is None:
            missing.append(f"{md5}.jpg")
        uris.append(uri or "")
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        why = [f"{n}: {left_out[n[:-4]]}" for n in missing if n[:-4] in left_out]
        detail = f" ({len(why)} of them left out: {'; '.join(why[:3])})" if why else ""
        raise DataError(
            f"{len(missing)} images referenced by {csv} are missing: {shown}{detail}. The CSV holds no "
            "images: get them from the authors (named <md5hash>.jpg) or download each url beside the CSV, "
            "or remove their rows"
        )
    return uris


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """fitzpatrick17k.csv and its images; non-neoplastic and mislabelled rows excluded."""
    meta = read_csv(csv)
    if not accepts(list(meta.columns)):
        raise lacks_columns(csv, NAME, REQUIRED, list(meta.columns))
    index = tree.image_index()
    decided = decide(
        meta,
        [_decide(row, task) for _, row in meta.iterrows()],
        meta["label"].str.strip().tolist(),
        [index.get(md5.strip(), md5) for md5 in meta["md5hash"]],
    )
    kept = decided.kept
    source = "nine_partition_label" if task == "melanoma" else "three_partition_label"
    out = pd.DataFrame(
        {
            "image_uri": _images(index, kept, csv, tree.left_out_names()),
            "label": decided.labels,
            "source_label": kept[source].str.strip().to_numpy(),
            "md5hash": kept["md5hash"].str.strip().to_numpy(),
            "diagnosis": kept["label"].str.strip().to_numpy(),
        }
    )
    scale = next((c for c in SCALE_COLUMNS if c in kept.columns), None)
    if scale is not None:
        out["skin_tone"] = metadata.fitzpatrick(kept[scale])
    if "fitzpatrick_centaur" in kept.columns:
        out["fitzpatrick_centaur"] = kept["fitzpatrick_centaur"].str.strip().to_numpy()
    if "url" in kept.columns:
        out["clinic"] = [_atlas(u) for u in kept["url"]]
    positive = (
        "nine_partition_label 'malignant melanoma'"
        if task == "melanoma"
        else "three_partition_label malignant"
    )
    notes = [
        f"{NAME}: class 1 = {positive}; non-neoplastic conditions excluded"
        + ("" if task == "melanoma" else "; actinic keratosis excluded"),
        f"{NAME} has no patient or lesion id: every image is its own unit",
    ]
    return Loaded(out, excluded_frame(decided.excluded), present_mapping(out), notes)
