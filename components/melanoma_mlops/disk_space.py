"""Full disks: free space checked before the large writes, and a failed write leaves nothing behind
(stdlib only).

A full disk found by the write itself costs the work done before it and, worse, leaves partial
files that keep the disk full (issue 24: a 30 MB volume under the artifact store kept 26 MB of a
half-written checkpoint). So the run states beforehand what it will write where - a
:class:`Need` per destination - and :func:`check` compares the sum on each filesystem with what
is free there, naming the folder, what goes there and how much is needed. And a write that fails
anyway (the disk filled up meanwhile) removes what it had written: :func:`removing_on_failure`.

The sizes are those of the network this project trains (ResNet50 + its head, 23.59 M variables,
float32 whatever the training precision), measured once (tests/test_disk_space.py checks the
figures against a real model):

- a stage's output model (``.keras``, no optimizer state): :data:`MODEL_BYTES`;
- a training checkpoint (:mod:`melanoma_mlops.model.checkpoint`): the variables, the best weights
  and, for the stages that train every layer, Adam's two moments: :func:`checkpoint_bytes`. While
  the next one is written the previous one still exists, locally and in the artifact store, so a
  stage needs twice that in each place.

Only local folders can be measured: an ``s3://`` or ``http(s)://`` destination is skipped (its
owner watches its quota).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from melanoma_mlops.errors import MelanomaError

logger = logging.getLogger(__name__)

#: Variables of the classifier (ResNet50 without top + the dense head), all float32 on disk.
MODEL_VARIABLES = 23_589_763
#: Of which trainable when every layer trains (Stage 2, single stage): Adam keeps two moments each.
ALL_LAYERS_TRAINABLE = 23_483_521
#: A saved stage model (.keras, weights + config, no optimizer): measured 95.0 MB.
MODEL_BYTES = 95_100_000
#: Room left for everything small (manifests, reports, plots, logs) beside the large files.
SMALL_FILES_BYTES = 50_000_000
MB = 1_000_000


class DiskSpaceError(MelanomaError):
    """Not enough free space where the run is about to write."""


def checkpoint_bytes(all_layers: bool) -> int:
    """One training checkpoint: variables + best weights (+ Adam's moments when all layers train)."""
    arrays = 2 * MODEL_VARIABLES + (2 * ALL_LAYERS_TRAINABLE if all_layers else 0)
    return arrays * 4 + 1 * MB


@dataclass(frozen=True)
class Need:
    """``size`` bytes that ``what`` will write under ``path`` (a folder, or a file:// URI)."""

    path: str
    size: int
    what: str


def stage_needs(all_layers: bool, tmp_dir: str, model_dir: str, artifact_uri: str) -> list[Need]:
    """What one training stage writes: two checkpoints at a time locally and in the artifact store
    (the previous one is deleted once the next is complete), and its model."""
    checkpoint = checkpoint_bytes(all_layers)
    return [
        Need(tmp_dir, 2 * checkpoint, "the stage's checkpoints (temporary folder)"),
        Need(model_dir, MODEL_BYTES, "the stage's model"),
        Need(artifact_uri, 2 * checkpoint, "the stage's checkpoints (MLflow artifact store)"),
    ]


def local_path(where: str) -> Path | None:
    """The local folder of a path or ``file://`` URI; None for a remote store (s3://, http ...)."""
    text = str(where)
    if text.startswith("file:"):
        return Path(unquote(urlparse(text).path))
    if "://" in text or text.startswith(("s3:", "mlflow-artifacts:", "hdf5:")):
        return None
    return Path(text).expanduser()


def _existing(path: Path) -> Path:
    """The nearest folder of ``path`` that exists (the folder may not have been made yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(where: str) -> int | None:
    """Free bytes for this user on the filesystem of ``where``; None when it is not local."""
    path = local_path(where)
    if path is None:
        return None
    return shutil.disk_usage(_existing(path)).free


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / MB:.0f} MB"


def check(needs: Iterable[Need]) -> None:
    """Raise :class:`DiskSpaceError` when a filesystem has less free space than is written to it.

    Needs on the same filesystem add up (the pipeline root, the artifact store and the temporary
    folder are often one disk).
    """
    by_device: dict[int, list[tuple[Need, Path]]] = {}
    for need in needs:
        path = local_path(need.path)
        if path is None or need.size <= 0:
            continue
        existing = _existing(path)
        by_device.setdefault(os.stat(existing).st_dev, []).append((need, existing))
    for group in by_device.values():
        total = sum(need.size for need, _ in group)
        free = shutil.disk_usage(group[0][1]).free
        if total <= free:
            continue
        parts = "; ".join(f"{need.what} in {need.path}: {_size(need.size)}" for need, _ in group)
        raise DiskSpaceError(
            f"not enough disk space: {_size(total)} is needed on the disk of {group[0][0].path} "
            f"({parts}) but only {_size(free)} is free. Free {_size(total - free)} there, or point the "
            "run elsewhere (--pipeline-root, --shard-root, TMPDIR, the MLflow store)"
        )


def remove(path: str | Path) -> None:
    """Delete a file or folder if it is there (a failed write's leftovers)."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


@contextlib.contextmanager
def removing_on_failure(*paths: str | Path) -> Iterator[None]:
    """Write ``paths`` inside the block; if it fails, delete those of them it created.

    A path that existed before the block is left alone (it is not this write's to remove).
    """
    new = [Path(p) for p in paths if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        for path in new:
            if os.path.lexists(path):
                logger.warning("removing %s: its write failed", path)
                remove(path)
        raise
