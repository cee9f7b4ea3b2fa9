"""What the README and docs/ show, read as a new user reads them: the sections that run (in the
order a user meets them), the ones that do not and why, and each block turned into a script.

Shared by tests/unit/test_readme.py (the parsing and the accounting) and
tests/integration/test_readme_runs.py (running every block as written).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: (file, section heading) whose blocks run, in this order: the order a new user meets them.
JOURNEY = (
    ("README.md", "Quick start"),
    ("README.md", "1. Run the pipeline"),
    ("docs/runs.md", "Reap"),
    ("README.md", "3. Promote, predict and serve"),
    ("docs/serving.md", "The model over HTTP, and from Python"),
    ("README.md", "On a cluster"),
)
#: (file, section heading or None for the whole file) -> why its blocks do not run here, and what
#: tests the same behaviour instead.
NOT_RUN = {
    ("docs/data.md", "Running on your own data"): "needs your data set or bucket; every layout is read "
    "in tests/unit/test_sources.py, bad input in tests/integration/test_bad_inputs.py",
    ("docs/runs.md", "Resume"): "needs a killed run: tests/unit/test_resume.py, "
    "tests/integration/test_resume_kill.py",
    ("docs/leak.md", "The ablation, and the leak measured"): "50 minutes on 2 cores: "
    "tests/integration/test_ablation_run.py runs the same command on tiny data",
    ("docs/containers.md", "Containers"): "needs root and the Docker engine: tests/containers/test_images.py",
    ("docs/containers.md", "Every step in its container"): "needs the Docker engine: "
    "tests/containers/test_docker_run.py, tests/containers/test_images.py",
    ("docs/development.md", "Development"): "make test is this suite",
    ("README.md", "2. Compare runs — which one is better, and can you tell?"): "a second demo run "
    "(3-35 min on 2 cores): tests/integration/test_compare_runs.py runs its compare command as "
    "written on two tiny runs that differ in the same option (conftest two_pipeline_runs)",
    ("docs/compare.md", "Which run is better: `melanoma-mlops compare`"): "needs two runs: "
    "tests/integration/test_compare_runs.py runs every line as written on the two tiny runs",
    ("docs/registry-access.md", "Setting it up"): "needs a tracking server with basic-auth and its "
    "admin: tests/integration/test_registry_access_server.py runs these commands as written on one",
    ("docs/cluster.md", None): "needs a Kubernetes cluster: tests/k8s/test_k8s.py, "
    "tests/unit/test_cluster.py, "
    "tests/integration/test_mlflow_server.py check the manifests, the compiled pipeline and the server",
    ("docs/monitoring.md", None): "needs served predictions and a registered version with a reference "
    "profile: tests/integration/test_monitor.py runs `monitor` on the tiny run's version and a logged "
    "window, tests/integration/test_outcomes.py runs the `outcomes` block as written, "
    "tests/integration/test_docs_monitoring_loop.py (slow) the served demo's loop (serve, curl, "
    "monitor, outcomes) as written on the tiny run's version; the CronJob's "
    "kubectl block needs a cluster: tests/k8s/test_k8s_monitoring.py checks what it applies",
    ("docs/serving.md", "The V2 inference server, and a version-pinned deploy"): "needs a champion "
    "and kubectl: tests/integration/test_serve_v2.py runs the block as written on a tiny registered model",
    ("docs/ablation.md", None): "written by `melanoma-mlops ablation --report-dir docs`: no command block",
    ("docs/evaluation.md", "External validation: `melanoma-mlops evaluate`"): "needs a registered model: "
    "tests/integration/test_external_validation.py runs the block as written in a copy of the tiny test "
    "run's store (tiny_run), on a set with planted copies of that run's images",
    ("docs/evaluation.md", "The demo shows it"): "two demo sets (clinic 1 and 2) beside the journey's: "
    "tests/integration/test_docs_evaluation.py runs the block as written in its own scratch folder and "
    "checks the six planted re-uploads",
}
SKIPPED = ("make test",)
#: A command that serves until stopped -> (pattern, health URL); ``{port}`` is the command's -p/--port.
SERVERS = (
    (re.compile(r"^make ui\b"), "http://127.0.0.1:5000/health"),
    (re.compile(r"\bmlflow models serve\b.*?(?:-p|--port)\s+(?P<port>\d+)"), "http://127.0.0.1:{port}/ping"),
    (re.compile(r"\bstreamlit run\b"), "http://127.0.0.1:8501/_stcore/health"),
    (
        re.compile(r"\bmelanoma-mlops serve\b.*?--port\s+(?P<port>\d+)"),
        "http://127.0.0.1:{port}/v2/health/ready",
    ),
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


def documented_argv(doc: str, heading: str) -> list[str]:
    """The arguments of the one ``melanoma-mlops`` command in ``doc``'s section ``heading``, as
    written (the program dropped), for a test that runs that command in process."""
    body = section((ROOT / doc).read_text(), heading)
    [command] = [c for _, code in blocks(body) for c in commands(code)]
    program, *argv = shlex.split(command)
    assert program == ".venv/bin/melanoma-mlops", command
    return argv


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
        # unused URL: nothing answers there yet (else ready() would take another process's server
        # for the one this block starts, and the block would talk to it)
        "unused() { ! curl -s --noproxy '*' --max-time 2 -o /dev/null \"$1\" ||"
        ' { echo "something already answers $1: stop it, then run this block again" >&2; return 1; }; }',
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
        lines += [f"unused {url}", f"setsid {started} > {log} 2>&1 &", "servers+=($!)", f'ready {url} "$!"']
    return "\n".join(lines) + "\n"


def scratch_copy(into: Path) -> None:
    """What the documented commands use, and the project's environment (not reinstalled)."""
    for name in ("Makefile", "README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, into / name)  # keeps mtimes: make sees the install as current
    for folder in ("app", "scripts"):  # the app; the installer the Makefile's install target runs
        shutil.copytree(ROOT / folder, into / folder)  # copy2: mtimes kept
    (into / ".venv").symlink_to(ROOT / ".venv")
