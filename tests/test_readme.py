"""The README and docs/ are executable: their commands run as written, in a scratch folder, in the
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

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from docker_env import missing_tool

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: (file, section heading) whose blocks run, in this order: the order a new user meets them.
JOURNEY = (
    ("README.md", "Quick start"),
    ("README.md", "1. Run the pipeline"),
    ("docs/runs.md", "Reap"),
    ("README.md", "2. Compare runs"),
    ("README.md", "3. Promote, predict and serve"),
    ("docs/serving.md", "The model over HTTP, and from Python"),
    ("README.md", "On a cluster"),
)
#: (file, section heading or None for the whole file) -> why its blocks do not run here, and what
#: tests the same behaviour instead.
NOT_RUN = {
    ("docs/data.md", "Running on your own data"): "needs your data set or bucket; every layout is read "
    "in tests/test_sources.py, bad input in tests/test_bad_inputs.py",
    ("docs/runs.md", "Resume"): "needs a killed run: tests/test_resume.py, tests/test_resume_kill.py",
    ("docs/leak.md", "The ablation, and the leak measured"): "50 minutes on 2 cores: tests/test_ablation.py "
    "runs the same command on tiny data",
    ("docs/containers.md", "Containers"): "needs root and the Docker engine: tests/test_images.py",
    ("docs/containers.md", "Every step in its container"): "needs the Docker engine: "
    "tests/test_docker_run.py, tests/test_images.py",
    ("docs/development.md", "Development"): "make test is this suite",
    ("docs/cluster.md", None): "needs a Kubernetes cluster: tests/test_k8s.py, tests/test_cluster.py, "
    "tests/test_mlflow_server.py check the manifests, the compiled pipeline and the server",
    ("docs/ablation.md", None): "written by `melanoma-mlops ablation --report-dir docs`: no command block",
}
SKIPPED = ("make test",)
#: A command that serves until stopped -> (pattern, health URL); ``{port}`` is the command's -p/--port.
SERVERS = (
    (re.compile(r"^make ui\b"), "http://127.0.0.1:5000/health"),
    (re.compile(r"\bmlflow models serve\b.*?(?:-p|--port)\s+(?P<port>\d+)"), "http://127.0.0.1:{port}/ping"),
    (re.compile(r"\bstreamlit run\b"), "http://127.0.0.1:8501/_stcore/health"),
)


def documented_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def headed_sections(text: str) -> list[tuple[str, str]]:
    """(heading, body up to the next heading of any level) of every #, ## and ### heading."""
    masked = strip_fenced_comments(text)
    found = re.findall(r"^#{1,3} ([^\n]+)\n(.*?)(?=^#{1,3} |\Z)", masked, flags=re.M | re.S)
    return [(heading.strip(), body) for heading, body in found]


def strip_fenced_comments(text: str) -> str:
    """The text with fenced blocks' ``# comment`` lines masked, so they are not read as headings."""
    return re.sub(r"^```.*?^```", lambda m: re.sub(r"(?m)^#", "\x00", m.group(0)), text, flags=re.M | re.S)


def section(text: str, heading: str) -> str:
    """The body of the section whose heading starts with ``heading`` (up to the next heading)."""
    for title, body in headed_sections(text):
        if title.startswith(heading):
            return body.replace("\x00", "#")
    raise AssertionError(f"no section '{heading}'")


def blocks(body: str) -> list[tuple[str, str]]:
    """(language, code) of every ```bash and ```python block, in order."""
    return re.findall(r"^```(bash|python)\n(.*?)^```", body, flags=re.M | re.S)


def commands(code: str) -> list[str]:
    """Logical shell lines: continuations joined, comment-only and blank lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def server_url(command: str) -> str | None:
    for pattern, url in SERVERS:
        match = pattern.search(command)
        if match:
            return url.format(**match.groupdict())
    return None


def script(code: str) -> str:
    """A bash block as a script: servers in the background (own process group), stopped at exit."""
    lines = [
        "set -euo pipefail",
        "servers=()",
        'stop() { for pid in "${servers[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done; }',
        "trap stop EXIT",
        # ready URL PID: wait until URL answers, or fail at once when the server has exited
        "ready() { for _ in $(seq 180); do curl -sf --noproxy '*' \"$1\" >/dev/null && return 0;"
        ' kill -0 "$2" 2>/dev/null || { echo "exited before answering: $1" >&2; return 1; };'
        ' sleep 1; done; echo "not answering: $1" >&2; return 1; }',
    ]
    for command in commands(code):
        if command.strip() in SKIPPED or command.split("#")[0].strip() in SKIPPED:
            lines.append(f"echo 'skipped here (it is this test suite): {command.strip()}'")
            continue
        url = server_url(command)
        if url is None:
            lines.append(command)
            continue
        started = re.sub(r"\s*&?\s*(#.*)?$", "", command)  # its comment and its own "&" off
        if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", started):  # VAR=value command: through env(1)
            started = f"env {started}"
        log = f"server-{len(lines):03d}.log"
        lines += [f"setsid {started} > {log} 2>&1 &", "servers+=($!)", f'ready {url} "$!"']
    return "\n".join(lines) + "\n"


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


def scratch_copy(into: Path) -> None:
    """What the documented commands use, and the project's environment (not reinstalled)."""
    for name in ("Makefile", "README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, into / name)  # keeps mtimes: make sees the install as current
    for folder in ("app", "scripts"):  # the app; the installer the Makefile's install target runs
        shutil.copytree(ROOT / folder, into / folder)  # copy2: mtimes kept
    (into / ".venv").symlink_to(ROOT / ".venv")


@pytest.mark.integration
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / ".installed-stamp").is_file():
        missing_tool("the project is not installed into .venv (make install)")
    scratch_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MELANOMA_", "PYTEST"))}
    transcript: list[str] = []
    for name, heading in JOURNEY:
        for n, (language, code) in enumerate(blocks(section((ROOT / name).read_text(), heading)), start=1):
            if language == "python":
                path = tmp_path / f"block-{len(transcript)}.py"
                path.write_text(code)
                argv = [str(tmp_path / ".venv" / "bin" / "python"), path.name]
            else:
                path = tmp_path / f"block-{len(transcript)}.sh"
                path.write_text(script(code))
                argv = ["bash", path.name]
            done = subprocess.run(
                argv,
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=3600,  # `make run` took 35 min on the 2 shared cores at load 10-15
                check=False,
            )
            transcript.append(
                f"## {name}: {heading}, block {n} ({language}): exit {done.returncode}\n"
                f"{done.stdout}{done.stderr}"
            )
            assert done.returncode == 0, "\n".join(transcript[-1:]) + "".join(
                f"\n--- {log.name}\n{log.read_text()[-3000:]}"
                for log in sorted(tmp_path.glob("server-*.log"))
            )
    out = "\n".join(transcript)
    if os.environ.get("MELANOMA_README_TRANSCRIPT"):  # what the README quotes comes from here
        Path(os.environ["MELANOMA_README_TRANSCRIPT"]).write_text(out)
    # What the README says these commands show.
    assert "promotion gate: held" in out and "registered model version: 1" in out
    assert re.search(r"probability\s+label\s+class_name", out)  # the Python block's prediction
    assert '"predictions"' in out  # mlflow models serve answered the curl
    assert "ISIC_9000001.jpg" in out and "ISIC_9000000.jpg" in out  # predict scored both files
    assert (tmp_path / "pipeline.yaml").is_file()


def test_the_compile_example_names_the_image_docs_cluster_builds() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    registry = re.search(r"^REGISTRY=(\S+)", (ROOT / "docs" / "cluster.md").read_text(), flags=re.M)
    body = section(README.read_text(), "On a cluster")
    image = re.search(r"--image (\S+)", body)
    assert registry and image
    assert image.group(1) == f"{registry.group(1)}/pipeline:{version}"
