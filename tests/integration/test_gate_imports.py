"""The promotion gate's module in a fresh interpreter: it imports neither TensorFlow nor MLflow
(split from tests/unit/test_gate.py: a unit test starts no process)."""

from __future__ import annotations

import subprocess
import sys


def test_the_gate_module_imports_neither_tensorflow_nor_mlflow() -> None:
    code = (
        "import sys; import melanoma_mlops.registry.gate; "
        "bad = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
