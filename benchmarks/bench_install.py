"""How long the project's install takes, and how long it is ever silent, as `make install` runs it.

Each repeat installs the project (``.[dev]``, as `make run` and `make test` do) into a NEW virtual
environment in a temporary folder with ``scripts/install.sh`` - the script the Makefile calls - its
output read line by line through a pipe (as in a CI log, where no progress bar is drawn). Printed per
install: the wall time, each phase's start, and the longest gap between two output lines (the
issue's "never a minute of silence"; the target is under 30 s). Arms: ``uv`` (the default installer)
and ``pip`` (``MELANOMA_INSTALLER=pip``, the fallback where uv cannot be installed), interleaved
when both are given. "Warm package cache": the first uv install on a machine fills uv's cache
(~/.cache/uv) from PyPI; run with ``--warmup`` to do one untimed install first.

    .venv/bin/python benchmarks/bench_install.py [--arms uv,pip] [--repeats 3] [--warmup]

Target (issue 22): <= 90 s for the uv install on a warm package cache on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 90.0


def install(arm: str, python: str) -> dict[str, object]:
    """One install into a fresh venv: wall seconds, longest silence, the phase lines with times."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-install-{arm}-"))
    env = {**os.environ, "MELANOMA_INSTALLER": arm}
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    try:
        with subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "install.sh"), python, str(folder / "venv"), "dev"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((time.perf_counter() - start, line.rstrip()))
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "\n".join(text for _, text in lines[-20:])
            raise SystemExit(f"{arm} install failed (exit {proc.returncode}):\n{tail}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    stamps = [0.0, *(t for t, _ in lines), wall]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "arm": arm,
        "wall": wall,
        "longest_silence": max(gaps),
        "lines": len(lines),
        "phases": [(t, text) for t, text in lines if text.startswith("install [")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="uv", help="comma-separated: uv, pip (interleaved)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup", action="store_true", help="one untimed uv install first (fills the cache)"
    )
    parser.add_argument("--python", default=shutil.which("python3") or "python3")
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    if args.warmup:
        print("warm-up install (uv, untimed) ...", flush=True)
        install("uv", args.python)
    results: dict[str, list[dict[str, object]]] = {arm: [] for arm in arms}
    for repeat in range(1, args.repeats + 1):
        for arm in arms:
            load = os.getloadavg()[0]
            r = install(arm, args.python)
            results[arm].append(r)
            print(
                f"repeat {repeat} {arm:>3}: {r['wall']:6.1f} s, "
                f"longest silence {r['longest_silence']:4.1f} s, "
                f"{r['lines']} lines, load {load:.1f} -> {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            for t, text in r["phases"]:
                print(f"      {t:6.1f} s  {text}")
    print("\nsummary (wall seconds: min / median / max; longest silence: max)")
    for arm, runs in results.items():
        walls = [float(r["wall"]) for r in runs]
        silence = max(float(r["longest_silence"]) for r in runs)
        verdict = (
            f"target <= {TARGET_S:.0f} s: {'met' if max(walls) <= TARGET_S else 'NOT met'}"
            if arm == "uv"
            else ""
        )
        print(
            f"  {arm:>3}: {min(walls):.1f} / {statistics.median(walls):.1f} / {max(walls):.1f} s, "
            f"longest silence {silence:.1f} s  {verdict}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
