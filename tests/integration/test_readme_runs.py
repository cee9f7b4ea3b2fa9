"""The README and docs/ run as written, in a scratch folder, in the order a new user meets them
(tests/readme_blocks.py reads them; tests/unit/test_readme.py checks the reading)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from docker_env import missing_tool
from readme_blocks import JOURNEY, ROOT, blocks, scratch_copy, script, section


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
    assert "by subgroup (AUC and sensitivity, 95% CI" in out and "sex=female" in out  # the slices
    assert re.search(r"probability\s+label\s+class_name", out)  # the Python block's prediction
    assert '"predictions"' in out  # mlflow models serve answered the curl
    assert "ISIC_9000001.jpg" in out and "ISIC_9000000.jpg" in out  # predict scored both files
    assert (tmp_path / "pipeline.yaml").is_file()
