"""Less start-up per step: the steps that neither train nor score never import TensorFlow.

Every pipeline step is a process of its own; importing TensorFlow and Keras costs seconds, so the
data steps (validate, split, oversample) and the registry steps (register, promote: they load
pyfuncs lazily, only when they score) must not pay it when their module is imported. Checked in a
fresh interpreter, the way kfp.local starts a step.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras")


def _imported_after(statement: str) -> list[str]:
    code = (
        f"import json, sys; {statement}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("step", ["validate", "split", "oversample", "register", "promote"])
def test_steps_that_do_not_train_or_score_import_no_tensorflow(step: str) -> None:
    assert _imported_after(f"import melanoma_mlops.steps.{step}") == []


def test_the_component_table_and_the_runtime_import_no_tensorflow() -> None:
    assert _imported_after("import melanoma_pipelines.components, melanoma_pipelines.runtime") == []


def test_the_split_and_oversample_step_functions_run_without_tensorflow(tmp_path, mlflow_store) -> None:
    """Not only the import: the data steps' work itself stays TensorFlow-free."""
    import pandas as pd

    rows = []
    for i in range(60):
        rows.append({"image_uri": f"/x/{i}.png", "label": int(i % 4 == 0), "sha256": f"{i:064x}", "width": 32,
                     "height": 32, "group_id": f"patient:{i // 2}", "split": ""})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    code = f"""
import sys
from melanoma_mlops import tracking
from melanoma_mlops.config import DataConfig
from melanoma_mlops.steps.split import split_step
from melanoma_mlops.steps.oversample import oversample_step
parent = tracking.start_pipeline_run("t")
d = {str(tmp_path)!r}
split_step(d + "/m.csv", d + "/train", d + "/val", d + "/test", parent_run_id=parent,
           cfg=DataConfig(val_fraction=0.2, test_fraction=0.2), seed=0)
oversample_step(d + "/train", d + "/val", d + "/test", d + "/bal", parent_run_id=parent, seed=0)
print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'tensorflow', 'keras'}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
