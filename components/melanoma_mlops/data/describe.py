"""What the run and the model card say about the data, from the manifests: images and split units
per split and class, what kept the splits apart, and what the labels mean.

Pure functions on manifests (no MLflow, no rendering): the validate step records the label summary
on the run; the register step feeds the model card (:mod:`melanoma_mlops.evaluation.modelcard`,
which only renders) with the counts, the grouping and the labels.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from melanoma_mlops.data import labels as label_info
from melanoma_mlops.data import manifest
from melanoma_mlops.data.split import split_units


def label_summary(df: pd.DataFrame, task: str) -> dict[str, Any]:
    """What the labels mean: the task, the source-label mapping, what class 1 is made of (images
    per finest diagnosis, where the metadata has one) and the grouping unit."""
    return {
        "task": task,
        "task_description": label_info.describe_task(task),
        "class_names": dict(enumerate(label_info.class_names(task))),
        "label_mapping": label_info.label_mapping(df),
        "class1_composition": label_info.class_composition(df, 1),
        "grouping": label_info.grouping(df),
        "patient_id": label_info.patient_ids(df),
    }


def label_tags(summary: dict[str, Any]) -> dict[str, str]:
    """The label summary as run tags (``data.*``, JSON where structured)."""
    return {
        "data.task": summary["task"],
        "data.label_mapping": json.dumps(summary["label_mapping"]),
        "data.class1_composition": json.dumps(summary["class1_composition"])
        if summary["class1_composition"]
        else "not recorded (no diagnosis finer than the label in the metadata)",
        "data.grouping": label_info.describe_grouping(summary["grouping"]),
        "data.patient_id": summary["patient_id"],
    }


# ------------------------------------------------------------------- the model card's data sections
def data_counts(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    run_metrics: dict[str, float],
    task: str = "malignant",
) -> dict[str, dict[str, int]]:
    """Images per class and split, and the split's units per split: images connected by a group
    (patient / lesion / duplicate cluster) or identical bytes count once, an image with none counts
    as its own unit -- exactly what the split step assigned (and logs as ``split/<set>_groups``).
    Classes are keyed by the task's class names (``benign``/``malignant``, ``not melanoma``/``melanoma``)."""
    names, keys = label_info.class_names(task), label_info.class_keys(task)
    counts = {}
    for name, df in (("train", train), ("val", val), ("test", test)):
        units = split_units(df.drop_duplicates("image_uri")) if len(df) else []
        by_key = manifest.class_counts(df, task)
        counts[name] = {names[0]: by_key[keys[0]], names[1]: by_key[keys[1]], "groups": len(set(units))}
    after = [f"oversample/after_{k}" for k in keys]
    if all(a in run_metrics for a in after):
        counts["train_oversampled"] = {n: int(run_metrics[a]) for n, a in zip(names, after, strict=True)}
    return counts


def group_key(df: pd.DataFrame) -> str:
    """What kept the splits apart, in words, with the number of groups of each kind."""
    counts = label_info.grouping(df)
    if set(counts) <= {"image"}:
        return "nothing shared: every image is its own group (no patient/lesion ids, no duplicates)"
    return label_info.describe_grouping(counts) + "; no group spans two splits"


def labels(df: pd.DataFrame, task: str) -> dict[str, Any]:
    """The card's ``labels`` section from the manifests (all splits together)."""
    return {
        "task": task,
        "mapping": label_info.label_mapping(df),
        "composition": label_info.class_composition(df, 1),
    }


def patient_ids(df: pd.DataFrame) -> str:
    """The card's patient-id line: whether patient-level grouping was possible."""
    return label_info.describe_patient_ids(label_info.patient_ids(df))


def bootstrap_units(test: pd.DataFrame) -> str:
    """The card's words for the bootstrap's resampling units: the groups of the test split (as the
    evaluate step draws them: group ids, single images for rows without one)."""
    return label_info.describe_units(label_info.grouping(test))
