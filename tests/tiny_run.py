"""The tiny pipeline run the non-unit tiers share: its data, its settings, and how to run it.

A whole local run is the most expensive thing the tests do (2-4 min on 2 idle cores, 10 under load):
tests that only read what a run left behind share one (the ``tiny_run`` fixture of tests/conftest.py,
which the ``compare`` and MLflow UI tests' ``two_pipeline_runs`` reuse as their first run); a test
that needs the same command again (determinism) reruns its argv.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

#: The tiny run's settings (32-px images, 2 + 1 epochs).
TINY = [
    "--weights", "none", "--image-size", "32", "--stage1-epochs", "2", "--stage2-epochs", "1",
    "--batch-size", "16", "--gradcam-samples", "4", "--patience", "1",
]  # fmt: skip
#: The tiny test set's subgroups are small: judge a slice from one case of each class (default 5),
#: and hold out 30% for test (default 15%) so that a few slices have both classes.
SLICES = ["--slice-min-positives", "1", "--slice-min-negatives", "1", "--test-fraction", "0.3"]


@dataclass(frozen=True)
class TinyRun:
    """What a finished run left: the CLI's exit code, its folder (its cwd), its MLflow store's URI,
    and the command line (without --run-name) that made it."""

    code: int
    work: Path
    uri: str
    name: str
    argv: tuple[str, ...]


def with_subgroups(demo_dir: Path, into: Path) -> Path:
    """The demo images as a manifest CSV (the layout a user with their own metadata writes) with
    sex, age and anatomical site, a few values missing: what the evaluate step slices by."""
    import pandas as pd

    data = Path(shutil.copytree(demo_dir, into))  # the SYNTHETIC marker comes along
    rows = []
    for cls in ("benign", "malignant"):
        for k, image in enumerate(sorted(data.glob(f"{cls}/*.png"))):
            rows.append(
                {
                    "image_path": f"{cls}/{image.name}",
                    "label": cls,
                    "mask_path": f"masks/{cls}/{image.name}",
                    "sex": "" if k == 3 else ("female", "male")[k % 2],
                    "age": (25, 45, 60, 80)[k % 4],
                    "anatom_site": "" if k == 5 else ("head/neck", "posterior torso")[k // 2 % 2],
                }
            )
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    return data / "labels.csv"


def run_tiny(work: Path, name: str | None, argv: tuple[str, ...]) -> TinyRun:
    """``melanoma-mlops run --run-name NAME ARGV`` in ``work`` (its cwd) with ``work``'s own store
    (``name`` None: the name the CLI generates, which says how the settings differ from the
    defaults)."""
    from local_store import in_local_store

    from melanoma_pipelines import cli

    work.mkdir(parents=True, exist_ok=True)
    with in_local_store(work) as uri:
        code = cli.main(["run", *(["--run-name", name] if name else []), *argv])
    return TinyRun(code, work, uri, name or "", argv)
