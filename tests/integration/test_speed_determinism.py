"""Same seed, same result (issue 12): the same command twice gives byte-identical split manifests and
equal test metrics on a CPU (op determinism, seeded augmentation, seeded tf.data order)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_run import TinyRun, run_tiny

pytestmark = pytest.mark.integration


def _read(run: TinyRun) -> tuple[dict[str, bytes], dict[str, float], dict[str, str]]:
    import mlflow
    from local_store import in_local_store
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import EXPERIMENT_NAME

    assert run.code == 0
    with in_local_store(run.work) as uri:
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        exp = client.get_experiment_by_name(EXPERIMENT_NAME)
        parent = next(r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == run.name)
    run_dir = next((run.work / "local_outputs").glob("*/split"))
    manifests = {name: (run_dir / name).read_bytes() for name in ("train", "val", "test")}
    balanced = next((run.work / "local_outputs").glob("*/oversample/balanced_train"))
    manifests["balanced_train"] = balanced.read_bytes()
    metrics = {k: v for k, v in parent.data.metrics.items() if k.startswith(("test/", "val/", "stage"))}
    metrics = {k: v for k, v in metrics.items() if not k.endswith(("seconds", "images_per_second"))}
    return manifests, metrics, parent.data.params


def test_the_same_command_twice_gives_identical_splits_and_metrics(tmp_path: Path, tiny_run: TinyRun) -> None:
    """The session's tiny run (tests/conftest.py) and the same command once more."""
    first = _read(tiny_run)
    second = _read(run_tiny(tmp_path / "again", "again", tiny_run.argv))
    assert first[0] == second[0]  # byte-identical manifests
    assert first[1] == second[1] and "test/auc_roc" in first[1]  # equal, not merely close
    assert first[2]["stage1_deterministic"] == "True" and first[2]["deterministic"] == "auto"
