"""The README is executable: its quick start, promote/serve/predict/app and compile sections run as
written, in a scratch folder, in the order a new user meets them.

Each ```bash block becomes one bash script (``set -euo pipefail``); each ```python block runs with the
project's interpreter. A command that serves until stopped (``make ui``, ``mlflow models serve ...
&``, ``streamlit run``) is started in its own process group, waited for until its health URL answers,
and stopped when its block ends. ``make test`` is skipped: it is this suite. The scratch folder gets
the files those commands use (Makefile, pyproject.toml, README.md, app/) and the project's .venv;
nothing else, so a command that relies on a file the README does not create fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from docker_env import missing_tool

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTIONS = ("Quick start", "Promote, serve, predict, and the detection app", "Compile for a cluster")
SKIPPED = ("make test",)
#: A command that serves until stopped -> (pattern, health URL); ``{port}`` is the command's -p/--port.
SERVERS = (
    (re.compile(r"^make ui\b"), "http://127.0.0.1:5000/health"),
    (re.compile(r"\bmlflow models serve\b.*?(?:-p|--port)\s+(?P<port>\d+)"), "http://127.0.0.1:{port}/ping"),
    (re.compile(r"\bstreamlit run\b"), "http://127.0.0.1:8501/_stcore/health"),
)


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


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
    readme = README.read_text()
    for heading in SECTIONS:
        assert blocks(section(readme, heading)), heading


def test_the_predict_example_names_a_malignant_then_a_benign_demo_image(tmp_path: Path) -> None:
    """The README's files are what it says they are in a fresh demo set (the same generator)."""
    import pandas as pd

    from melanoma_mlops.config import DEMO_IMAGES
    from melanoma_mlops.data import demo

    body = section(README.read_text(), "Promote, serve, predict, and the detection app")
    line = next(c for _, code in blocks(body) for c in commands(code) if "melanoma-mlops predict" in c)
    named = re.findall(r"demo_data/(ISIC_\d+)\.jpg", line)
    assert len(named) == 2 and "malignant, benign" in line
    demo.generate(tmp_path, n=DEMO_IMAGES)
    labels = pd.read_csv(tmp_path / "metadata.csv").set_index("isic_id")["diagnosis_1"]
    assert [labels[i] for i in named] == ["Malignant", "Benign"]


def scratch_copy(into: Path) -> None:
    """What the README's commands use, and the project's environment (not reinstalled)."""
    for name in ("Makefile", "README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, into / name)  # keeps mtimes: make sees the install as current
    shutil.copytree(ROOT / "app", into / "app")
    (into / ".venv").symlink_to(ROOT / ".venv")


@pytest.mark.integration
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / ".installed-stamp").is_file():
        missing_tool("the project is not installed into .venv (make install)")
    scratch_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MELANOMA_", "PYTEST"))}
    readme = README.read_text()
    transcript: list[str] = []
    for heading in SECTIONS:
        for n, (language, code) in enumerate(blocks(section(readme, heading)), start=1):
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
                timeout=1200,
                check=False,
            )
            transcript.append(
                f"## {heading}, block {n} ({language}): exit {done.returncode}\n{done.stdout}{done.stderr}"
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
    body = section(README.read_text(), "Compile for a cluster")
    image = re.search(r"--image (\S+)", body)
    assert registry and image
    assert image.group(1) == f"{registry.group(1)}/pipeline:{version}"
