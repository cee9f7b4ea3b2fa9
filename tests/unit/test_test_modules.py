"""Every test module's file name is unique across the tiers.

pytest imports test modules by their base name (rootdir-relative, no packages in tests/): two tiers
each holding ``test_outcomes.py`` collect fine one tier at a time (``make test-unit``) and fail the
whole suite's collection (``make test``, CI) with "import file mismatch". This catches it in the
fast tier, before a full run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_file_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for module in TESTS.rglob("test_*.py"):
        where[module.name].append(str(module.relative_to(TESTS)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"rename one of each: {shared}"
