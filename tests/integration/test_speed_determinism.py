"""Same seed, same result (issue 12): the same command twice gives byte-identical split manifests and
equal test metrics on a CPU (op determinism, seeded augmentation, seeded tf.data order)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TINY = ["--image-size", "32", "--stage1-epochs", "2", "--stage2-epochs", "1", "--batch-size", "16",
        "--gradcam-samples", "2", "--patience", "1", "--weights", "none"]  # fmt: skip


def _run(work: Path, data: Path, name: str) -> tuple[dict[str, bytes], dict[str, float], dict[str, str]]:
    import mlflow
    from local_store import in_local_store
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import EXPERIMENT_NAME
    from melanoma_pipelines import cli

    work.mkdir()
    with in_local_store(work, "mlflow.db") as uri:
        assert cli.main(["run", "--data", str(data), "--run-name", name, *TINY]) == 0
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        exp = client.get_experiment_by_name(EXPERIMENT_NAME)
        parent = next(r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == name)
    run_dir = next((work / "local_outputs").glob("*/split"))
    manifests = {name: (run_dir / name).read_bytes() for name in ("train", "val", "test")}
    balanced = next((work / "local_outputs").glob("*/oversample/balanced_train"))
    manifests["balanced_train"] = balanced.read_bytes()
    metrics = {k: v for k, v in parent.data.metrics.items() if k.startswith(("test/", "val/", "stage"))}
    metrics = {k: v for k, v in metrics.items() if not k.endswith(("seconds", "images_per_second"))}
    return manifests, metrics, parent.data.params


def test_the_same_command_twice_gives_identical_splits_and_metrics(tmp_path: Path, demo_dir: Path) -> None:
    first = _run(tmp_path / "a", demo_dir, "first")
    second = _run(tmp_path / "b", demo_dir, "second")
    assert first[0] == second[0]  # byte-identical manifests
    assert first[1] == second[1] and "test/auc_roc" in first[1]  # equal, not merely close
    assert first[2]["stage1_deterministic"] == "True" and first[2]["deterministic"] == "auto"
