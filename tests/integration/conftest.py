"""Fixtures of the integration tier that cost minutes: built once per session and shared."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_run import SLICES, TINY, TinyRun, run_tiny, with_subgroups


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> TinyRun:
    """One whole local run of the demo images (a manifest with subgroup columns) in a folder and
    SQLite store of its own.

    Tests enter its store with ``local_store.in_local_store(run.work)`` and only read: a model
    registered or promoted there would change what the next test reads."""
    work = tmp_path_factory.mktemp("tiny-run")
    data = with_subgroups(demo_dir, work / "data")
    return run_tiny(work, "tiny", ("--data", str(data), *TINY, *SLICES))
