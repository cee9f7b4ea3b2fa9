"""What flows between steps, declared once: file names, manifest columns, registry and MLflow names.

Steps run in separate processes and hand each other folders (KFP artifacts). The writer and the
reader of a folder both read its file names from here, so no step imports another step (and its
TensorFlow or matplotlib) to learn a string, and a rename cannot leave a reader behind.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------- manifests
#: Required manifest columns, in file order (one row per image; extra columns are carried along).
MANIFEST_COLUMNS = ("image_uri", "label", "sha256", "width", "height", "group_id", "split")
#: Manifest columns read as text whatever they look like (ids such as 0012, hashes).
MANIFEST_TEXT_COLUMNS = ("group_id", "split", "sha256", "phash", "dup_cluster", "group_kind", "image_uri")
SPLITS = ("train", "val", "test")
#: Class names (0, 1) of each task (``--task``), as the contract, the card, the served output and
#: every logged name say them (``data/not_melanoma``, ``split/test_melanoma``: :func:`class_keys`).
TASK_CLASSES: dict[str, tuple[str, str]] = {
    "malignant": ("benign", "malignant"),
    "melanoma": ("not melanoma", "melanoma"),
}


def class_keys(task: str) -> tuple[str, str]:
    """The task's class names inside logged names (MLflow metrics and params): spaces as ``_``."""
    names = TASK_CLASSES.get(task, TASK_CLASSES["malignant"])
    return (names[0].replace(" ", "_"), names[1].replace(" ", "_"))


# ------------------------------------------------------------- model folder (stage1/stage2/...)
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
#: Where decoded image shards live when --shard-root is not given (reused across runs).
DEFAULT_SHARD_ROOT = "~/.cache/melanoma-mlops/shards"

# ---------------------------------------------------------------------------- evaluate folder
EVALUATION_FILE = "evaluation.json"
PREDICTIONS_FILE = "predictions.csv"
PLOTS = {
    "roc": "roc.png",
    "pr": "pr.png",
    "confusion": "confusion.png",
    "reliability": "reliability.png",
    "subgroups": "subgroups_forest.png",
}
#: Performance by subgroup: one row per slice (the whole set first), with 95% intervals.
SUBGROUPS_FILE = "subgroups.csv"

# ----------------------------------------------------------------------------- gradcam folder
GRADCAM_GRID_FILE = "gradcam_grid.png"
GRADCAM_SUMMARY_FILE = "gradcam.json"

# ------------------------------------------------------------------------------- promotion gate
GATE_DECISION_FILE = "gate_decision.json"
GATE_REPORT_FILE = "gate.md"

# ---------------------------------------------------------------------------------- ablation
TRIAL_SUMMARY_FILE = "trial_summary.json"
ABLATION_REPORT_MD = "comparison.md"
ABLATION_REPORT_CSV = "comparison.csv"
ABLATION_REPORT_JSON = "comparison.json"
ABLATION_TRIALS_CSV = "trials.csv"
ABLATION_PLOT_PNG = "auc_per_seed.png"

# ------------------------------------------------------------------------- registry aliases
#: The version in production.
CHAMPION = "champion"
#: The newest registered version (always resolves after a run, promoted or not).
CHALLENGER = "challenger"

# ------------------------------------------------------------------------------ MLflow names
#: MLflow's own tag linking a nested run to its parent.
PARENT_TAG = "mlflow.parentRunId"
#: Tag on the parent run (and its dataset inputs): the sha256 fingerprint of the validated data set
#: (steps/validate.py), which names the data a model was trained on wherever it is compared or cached.
FINGERPRINT_TAG = "data.fingerprint"
#: Tag (value "true") on every run of the ablation's negative control; never registrable.
LEAKY_TAG = "leaky"
#: How the negative control is labelled wherever a person reads it.
LEAKY_LABEL = "LEAKY (negative control)"
#: Environment variable naming the MLflow experiment of a step (the ablation reuses the main
#: pipeline's steps and points them at its own experiment with it).
EXPERIMENT_ENV = "MELANOMA_EXPERIMENT"
#: Set on every task run in a container (``run --runner docker``, a cluster): the image and its id,
#: recorded as tags of each step's MLflow run.
IMAGE_ENV = "MELANOMA_RUNTIME_IMAGE"
IMAGE_ID_ENV = "MELANOMA_RUNTIME_IMAGE_ID"
