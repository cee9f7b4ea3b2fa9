"""The README and docs/ are executable (the parsing and accounting here; running every block is
tests/integration/test_readme_runs.py): their commands run as written, in a scratch folder, in the
order a new user meets them (the README's quick start and three journeys, then the reference pages
they link to).

Each ```bash block becomes one bash script (``set -euo pipefail``); each ```python block runs with the
project's interpreter. A command that serves until stopped (``make ui``, ``mlflow models serve ...
&``, ``streamlit run``) is started in its own process group, waited for until its health URL answers,
and stopped when its block ends. ``make test`` is skipped: it is this suite. The scratch folder gets
the files those commands use (Makefile, pyproject.toml, README.md, app/, scripts/) and the project's .venv;
nothing else, so a command that relies on a file the docs do not create fails here.

Every command block of README.md and docs/*.md is either in :data:`JOURNEY` (run here) or in
:data:`NOT_RUN` with the reason and the test that covers it instead: a new block must be put in one
of them (``test_every_documented_block_is_run_or_accounted_for``).
"""

from __future__ import annotations

import re
from pathlib import Path

from readme_blocks import (
    JOURNEY,
    NOT_RUN,
    README,
    ROOT,
    blocks,
    commands,
    documented_files,
    headed_sections,
    script,
    section,
)


def test_the_command_blocks_are_parsed_as_a_user_reads_them() -> None:
    code = (
        "make ui     # = mlflow ui --port 5000\n"
        "mlflow models serve -m m -h 127.0.0.1 -p 5001 &\n# c\ncurl -s x \\\n  -d y\n"
    )
    assert commands(code) == [
        "make ui     # = mlflow ui --port 5000",
        "mlflow models serve -m m -h 127.0.0.1 -p 5001 &",
        "curl -s x -d y",
    ]
    text = script(code)
    assert "setsid make ui > server-" in text and 'ready http://127.0.0.1:5000/health "$!"' in text
    assert "setsid mlflow models serve -m m -h 127.0.0.1 -p 5001 > server-" in text
    assert 'ready http://127.0.0.1:5001/ping "$!"' in text
    assert "unused http://127.0.0.1:5001/ping\nsetsid mlflow models serve" in text
    assert "setsid env A=1 streamlit run app.py > server-" in script("A=1 streamlit run app.py\n")
    assert "\ncurl -s x -d y\n" in text
    for name, heading in JOURNEY:
        assert blocks(section((ROOT / name).read_text(), heading)), (name, heading)


def test_every_documented_block_is_run_or_accounted_for() -> None:
    """A command block added to the README or to docs/ runs here, or says why not and what tests it."""
    unaccounted = []
    for path in documented_files():
        name = path.relative_to(ROOT).as_posix()
        if (name, None) in NOT_RUN:
            continue
        for heading, body in headed_sections(path.read_text()):
            if not blocks(body.replace("\x00", "#")):
                continue
            run = any(n == name and heading.startswith(h) for n, h in JOURNEY)
            if not run and (name, heading) not in NOT_RUN:
                unaccounted.append(f"{name}: '{heading}'")
    assert not unaccounted, "command blocks neither run nor in NOT_RUN: " + ", ".join(unaccounted)
    for name, heading in NOT_RUN:
        assert (ROOT / name).is_file(), name
        if heading is not None:
            assert blocks(section((ROOT / name).read_text(), heading)), f"{name}: '{heading}' has no block"


def test_the_readme_is_a_front_door_of_about_200_lines() -> None:
    """The reference material lives in docs/: the README stays short enough to read first."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 230, f"README.md has {len(lines)} lines: move reference material to docs/"
    for link in re.findall(r"\]\(((?:docs|app|benchmarks|components)/[^)#]+)", README.read_text()):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_the_predict_example_names_a_malignant_then_a_benign_demo_image(tmp_path: Path) -> None:
    """The README's files are what it says they are in a fresh demo set (the same generator)."""
    import pandas as pd

    from melanoma_mlops.config import DEMO_IMAGES
    from melanoma_mlops.data import demo

    body = section(README.read_text(), "3. Promote, predict and serve")
    line = next(c for _, code in blocks(body) for c in commands(code) if "melanoma-mlops predict" in c)
    named = re.findall(r"demo_data/(ISIC_\d+)\.jpg", line)
    assert len(named) == 2 and "a malignant and a benign image" in line
    demo.generate(tmp_path, n=DEMO_IMAGES)
    labels = pd.read_csv(tmp_path / "metadata.csv").set_index("isic_id")["diagnosis_1"]
    assert [labels[i] for i in named] == ["Malignant", "Benign"]


def test_the_compile_example_names_the_image_docs_cluster_builds() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    registry = re.search(r"^REGISTRY=(\S+)", (ROOT / "docs" / "cluster.md").read_text(), flags=re.M)
    body = section(README.read_text(), "On a cluster")
    image = re.search(r"--image (\S+)", body)
    assert registry and image
    assert image.group(1) == f"{registry.group(1)}/pipeline:{version}"
