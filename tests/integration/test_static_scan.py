"""bandit (Python security linter) over the two packages: no finding of medium or high severity, and
every suppression says in its own line which check it silences and why.

bandit lives in the tools venv (`.venv-tools`, `make tools`) beside checkov. Found there or on PATH;
missing, the test skips on a developer's machine and fails in CI (CI=true).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from docker_env import require_tool

REPO = Path(__file__).resolve().parents[2]

SCANNED = ("components", "pipelines")
#: ``# nosec B108 - why`` (one or more check ids, then a dash and the reason).
EXPLAINED = re.compile(r"#\s*nosec\s+B\d{3}(?:[ ,]+B\d{3})*\s+-+\s+\S.{9,}")


def _bandit() -> str:
    return require_tool(
        "bandit", "install it with `make tools` (.venv-tools)", [REPO / ".venv-tools" / "bin" / "bandit"]
    )


def test_bandit_finds_nothing_of_medium_severity_or_above() -> None:
    result = subprocess.run(
        [_bandit(), "-r", *SCANNED, "-ll", "-f", "json", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # 0: nothing found; 1: findings; anything else is bandit itself failing.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert not report["errors"], report["errors"]
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']}: {r['issue_text']}"
        for r in report["results"]
    ]
    assert not findings, "\n".join(findings)
    assert report["metrics"]["_totals"]["loc"] > 10_000, "bandit read too little of the packages"


def test_every_suppression_names_its_check_and_the_reason() -> None:
    unexplained = []
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if "nosec" in line and not EXPLAINED.search(line):
                    unexplained.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not unexplained, "a '# nosec' must read '# nosec BXXX - reason':\n" + "\n".join(unexplained)
