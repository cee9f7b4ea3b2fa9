"""What a run will need, checked before its first step starts (no TensorFlow, no MLflow here).

A wrong ``--weights`` path used to surface when Stage 1 started, after validation, the split and
oversampling had run (629 s on a loaded machine); a full disk when the first checkpoint was
written. So the local runner asks here first, and gets every problem at once in one message:

- the data source exists (a local path, or an ``s3://`` prefix holding objects) and can be read;
- ``--weights``: ``none``; ``imagenet`` (cached in ``~/.keras/models`` or downloaded by Stage 1:
  a warning says so when it is not cached, since a machine without network stops there); or a
  file / ``s3://`` object that exists and is an HDF5 (``.h5``) or Keras (``.keras``) file;
- the pipeline root (and ``--shard-root`` when shards are asked for) can be written;
- free disk space for the large files, by filesystem (:func:`melanoma_mlops.disk_space.check`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from melanoma_mlops import disk_space, storage
from melanoma_mlops.artifacts import DEFAULT_SHARD_ROOT
from melanoma_mlops.config import RunConfig, TrainingConfig
from melanoma_mlops.disk_space import Need
from melanoma_mlops.errors import ConfigError, MelanomaError

logger = logging.getLogger(__name__)

#: The first bytes of the weight files ResNet50 loads: HDF5 (.h5, .weights.h5) and zip (.keras).
WEIGHT_MAGICS = {b"\x89HDF\r\n\x1a\n": "HDF5", b"PK\x03\x04": "Keras zip"}
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


class PreflightError(ConfigError):
    """A run cannot start: what it would need is missing, unreadable or does not fit."""


def imagenet_cached() -> bool:
    """Are the ResNet50 ImageNet weights in Keras's cache (``$KERAS_HOME`` or ``~/.keras``)?"""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return (home / "models" / IMAGENET_FILE).is_file()


def weights_problem(weights: str) -> str | None:
    """Why ``--weights`` cannot be loaded by Stage 1, or None."""
    if weights.lower() in ("none", "imagenet"):
        if weights.lower() == "imagenet" and not imagenet_cached():
            logger.warning(
                "the ResNet50 ImageNet weights are not cached (~/.keras/models/%s): Stage 1 downloads them, "
                "which needs network; without it, pass --weights FILE or --weights none",
                IMAGENET_FILE,
            )
        return None
    if storage.is_s3(weights):
        try:
            found = storage.exists(weights) and not storage.is_dir(weights)
        except MelanomaError as exc:
            return f"--weights {weights}: {exc}"
        return None if found else f"--weights {weights}: no such S3 object"
    path = Path(weights).expanduser()
    if not path.is_file():
        return (
            f"--weights {weights}: no such file. Use 'imagenet', 'none', or the path (or s3:// URI) of a "
            f"ResNet50 no-top weights file ({IMAGENET_FILE})"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        return f"--weights {weights}: cannot be read ({exc.strerror})"
    if not any(head.startswith(magic) for magic in WEIGHT_MAGICS):
        return f"--weights {weights}: not a weights file (neither HDF5 .h5 nor Keras .keras)"
    return None


def data_problem(data: str) -> str | None:
    """Why the data source cannot be read, or None (its content is the validate step's job)."""
    if storage.is_s3(data):
        try:
            return None if storage.exists(data) else f"--data {data}: no object under that S3 prefix"
        except MelanomaError as exc:
            return f"--data {data}: {exc}"
    path = Path(data)
    if not path.exists():
        return f"--data {data}: no such file or folder"
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"--data {data}: not readable by this user"
    return None


def writable_problem(folder: str | Path, what: str) -> str | None:
    """Why ``folder`` (made if missing) cannot be written, or None; remote stores are not tried."""
    if disk_space.local_path(str(folder)) is None:
        return None
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-"):
            pass
    except OSError as exc:
        return (
            f"{what} {path} cannot be written ({exc.strerror or exc}): pass another, or fix its permissions"
        )
    return None


def run_needs(training: TrainingConfig, pipeline_root: str | Path, artifact_location: str = "") -> list[Need]:
    """The large files of one run of the main DAG, by destination (see :mod:`.disk_space`)."""
    checkpoint = disk_space.checkpoint_bytes(all_layers=training.stage2_epochs > 0)
    needs = [
        Need(str(pipeline_root), 2 * disk_space.MODEL_BYTES + disk_space.SMALL_FILES_BYTES, "stage models"),
        Need(tempfile.gettempdir(), 2 * checkpoint, "training checkpoints (the temporary folder)"),
    ]
    if artifact_location:
        needs.append(
            Need(
                artifact_location,
                2 * checkpoint + disk_space.MODEL_BYTES + disk_space.SMALL_FILES_BYTES,
                "checkpoints and the registered model (the MLflow artifact store)",
            )
        )
    return needs


def check_run(config: RunConfig, data: str, pipeline_root: str | Path, artifact_location: str = "") -> None:
    """Raise :class:`PreflightError` naming every problem a run of ``config`` on ``data`` would hit."""
    training = config.training
    problems = [
        data_problem(data),
        weights_problem(training.weights),
        writable_problem(pipeline_root, "--pipeline-root"),
    ]
    if training.image_cache == "shards" or training.shard_root:
        root = training.shard_root or str(Path(DEFAULT_SHARD_ROOT).expanduser())
        problems.append(writable_problem(root, "--shard-root"))
    found = [p for p in problems if p]
    if found:
        raise PreflightError("; ".join(found))
    try:
        disk_space.check(run_needs(training, pipeline_root, artifact_location))
    except disk_space.DiskSpaceError as exc:
        raise PreflightError(str(exc)) from None
