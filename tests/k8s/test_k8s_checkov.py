"""checkov on each rendered overlay: no failed check, and every skip carries its written reason.

checkov lives in its own virtual environment (`.venv-tools`, `make tools`): its dependencies
conflict with the project's pins. Found there or on PATH; missing, these tests skip on a
developer's machine and fail in CI (CI=true), like kubectl.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from test_k8s import OVERLAYS, REPO, checkov_skips, render, require_tool


def _checkov() -> str:
    return require_tool(
        "checkov",
        REPO / ".venv-tools" / "bin" / "checkov",
        hint="install it with `make tools` (a separate venv, .venv-tools)",
    )


def checkov_report(objects, manifest) -> dict:
    """checkov's Kubernetes report on ``objects``, written to the file ``manifest`` first."""
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    result = subprocess.run(
        # --skip-download: no call to Prisma Cloud for guidelines (nothing leaves the machine).
        [_checkov(), "-f", str(manifest), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit status 1 means failed checks; anything else but 0 is checkov itself failing.
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r["check_type"] == "kubernetes"]
    return kubernetes


def assert_checkov_clean(objects: list[dict], manifest, min_resources: int) -> None:
    """checkov read ``objects`` whole (no parsing error, at least ``min_resources``), failed no
    check, and every skip it applied comes from an annotation of ours that states why."""
    report = checkov_report(objects, manifest)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= min_resources, (
        f"checkov read too little of {manifest.name}: {summary}"
    )
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in report["results"]["failed_checks"]
    ]
    assert not failed, f"{len(failed)} failed checkov checks in {manifest.name}:\n" + "\n".join(failed)
    by_id = {
        f"{o['kind']}.{o['metadata'].get('namespace', 'default')}.{o['metadata']['name']}": o for o in objects
    }
    for check in report["results"]["skipped_checks"]:
        reason = checkov_skips(by_id[check["resource"]]).get(check["check_id"], "")
        assert len(reason.split()) >= 12, (
            f"{check['check_id']} skipped on {check['resource']} without a reason"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_no_failed_check(overlay, tmp_path):
    assert_checkov_clean(list(render(overlay)), tmp_path / f"{overlay}.yaml", min_resources=20)
