"""The README's command blocks as a new user runs them, for tests/unit/test_readme.py (how they are
read) and tests/integration/test_readme_runs.py (running them).

Each ```bash block becomes one bash script (``set -euo pipefail``); each ```python block runs with the
project's interpreter. A command that serves until stopped (``make ui``, ``mlflow models serve ...
&``, ``streamlit run``) is started in its own process group, waited for until its health URL answers,
and stopped when its block ends. ``make test`` is skipped: it is the test suite.

tests/ has no ``__init__.py``, so test modules import this as ``from readme_blocks import ...``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def scratch_copy(into: Path) -> None:
    """What the README's commands use, and the project's environment (not reinstalled)."""
    for name in ("Makefile", "README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, into / name)  # keeps mtimes: make sees the install as current
    shutil.copytree(ROOT / "app", into / "app")
    (into / ".venv").symlink_to(ROOT / ".venv")
