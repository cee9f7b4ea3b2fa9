"""docs/monitoring.md "The demo, served" runs as written (tests/readme_blocks.py's script: the two
servers in the background until the block ends), on free ports rather than 8080/8081, on a copy of
the tiny run's store, its version made champion as `promote --force` would: two V2 servers answer
curl, each logs what it served, `monitor` reads both logs, `outcomes` joins the biopsy CSVs
`demo-data --outcomes` wrote, and the realised metrics land in MLflow on the version.

The tiny run's model saw 64-px PNGs in class folders, so its reference is not the demo's 128-px JPEGs:
here the in-distribution window may say warn or drift, and only clinic 2's drift is asserted. That
the same clinic says ok and another drift is tests/integration/test_monitor.py's, with the tiny run's
own kind of images; the README quotes the real demo's output.

Marked slow (make test-slow): two servers, six CLI processes and 126 requests took 336 s at load 5
(with a demo run's commands beside it); every behaviour it strings together has its own cheaper test
(test_serve_v2, test_monitor, test_outcomes, tests/unit/test_demo_outcomes.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from local_store import in_local_store
from mlflow.tracking import MlflowClient
from readme_blocks import ROOT, blocks, scratch_copy, script, section
from servers import free_port
from tiny_run import TinyRun

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.data import demo
from melanoma_mlops.monitoring.monitor import EXPERIMENT

SECTION = "The demo, served: drift, then biopsy outcomes"


@pytest.mark.integration
@pytest.mark.slow
def test_the_served_demo_loop_runs_as_written(tiny_run: TinyRun, tmp_path: Path) -> None:
    assert tiny_run.code == 0
    scratch_copy(tmp_path)
    shutil.copytree(tiny_run.work / "mlruns", tmp_path / "mlruns")
    with in_local_store(tmp_path):
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", "1")
    demo.generate(tmp_path / "demo_data", n=40, size=64, seed=1)  # what clinic 2 re-uploads from
    [(language, code)] = blocks(section((ROOT / "docs" / "monitoring.md").read_text(), SECTION))
    assert language == "bash" and "8080" in code and "8081" in code
    for port in ("8080", "8081"):  # free ones: a server already there would answer in our servers' place
        code = code.replace(port, str(free_port()))
    (tmp_path / "loop.sh").write_text(script(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MELANOMA_", "PYTEST"))}
    done = subprocess.run(
        ["bash", "loop.sh"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out + "".join(p.read_text()[-2000:] for p in tmp_path.glob("server-*.log"))

    n_week1 = len(list((tmp_path / "new-clinic1").glob("*.jpg")))
    n_clinic2 = len(list((tmp_path / "new-clinic2" / "images").glob("*.jpg")))
    assert (n_week1, n_clinic2) == (60, 66)  # 60 new images + clinic 2's six planted re-uploads
    assert re.search(rf"{MODEL_NAME} version 1: (OK|WARN|DRIFT) \({n_week1} predictions", out), out
    assert f"{MODEL_NAME} version 1: DRIFT ({n_clinic2} predictions" in out and "exit 1" in out, out
    for n in (n_week1, n_clinic2):  # every outcome met the prediction its image was served
        assert f"{n} of {n} outcomes matched to predictions" in out, out

    with in_local_store(tmp_path):
        client = MlflowClient()
        tags = client.get_model_version(MODEL_NAME, "1").tags
        assert tags["monitor_status"] == "drift" and tags["outcomes.matched"] == str(n_clinic2)
        metrics = client.get_run(tags["outcomes.run_id"]).data.metrics
        for name in ("sensitivity", "specificity", "auc_roc"):
            assert metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"]
        runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
        assert len(runs) == 4  # two monitor runs, two outcomes runs
