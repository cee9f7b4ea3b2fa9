"""The local executor leaves the process as it found it and turns step failures into one message."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from melanoma_pipelines.local import PipelineError, execute
from melanoma_pipelines.runtime import ERROR_FILE_ENV


def test_print_is_restored_even_if_kfp_local_left_it_swapped(tmp_path: Path) -> None:
    original = builtins.print

    def pipeline(**_: object) -> str:
        # What kfp.local's indented_print does, left half-done by interleaving parallel tasks.
        builtins.print = lambda *a, **k: original("    ", *a, **k)
        return "done"

    assert execute(pipeline, {}, pipeline_root=tmp_path) == "done"
    assert builtins.print is original
    assert ERROR_FILE_ENV not in os.environ


def test_a_failed_step_becomes_its_own_message(tmp_path: Path) -> None:
    calls = []

    def pipeline(**_: object) -> None:
        with open(os.environ[ERROR_FILE_ENV], "a", encoding="utf-8") as fh:
            fh.write("validate: data path /nowhere does not exist\n")
        raise RuntimeError("Task validate finished with status FAILURE")

    with pytest.raises(PipelineError, match=r"^validate: data path /nowhere does not exist$"):
        execute(pipeline, {}, pipeline_root=tmp_path, on_failure=lambda: calls.append(1))
    assert calls == [1]
    assert ERROR_FILE_ENV not in os.environ
