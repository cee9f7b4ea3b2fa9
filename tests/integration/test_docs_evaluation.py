"""docs/evaluation.md runs as written: its command blocks in a scratch folder with the project's
environment, and what they write is what the page says (two clinics, six planted re-uploads)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "evaluation.md"


def _bash_blocks() -> list[str]:
    """The page's blocks but `evaluate`'s (it needs a registered model: test_external_validation.py
    runs it as written in a copy of the tiny run's store)."""
    found = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    return [code for code in found if "melanoma-mlops evaluate" not in code]


@pytest.mark.integration
def test_the_page_commands_run_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    blocks = _bash_blocks()
    assert blocks, "docs/evaluation.md shows no command"
    for code in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    planted = json.loads((tmp_path / "clinic2" / "planted_overlaps.json").read_text())["overlaps"]
    assert len(planted) == 6 and {p["kind"] for p in planted} == {"exact", "near"}
    assert all((tmp_path / "demo_data" / p["clinic1_file"]).is_file() for p in planted)
    assert (tmp_path / "clinic2" / "labels.csv").read_text().startswith("image_path,label,")
    assert "six **planted re-uploads**" in DOC.read_text()
