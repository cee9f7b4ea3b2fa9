"""An ISIC 2024 set (train-metadata.csv + train-image.hdf5) through the whole DAG under kfp.local
(split from tests/unit/test_speed_isic2024.py: a unit test starts no process)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from isic2024_data import make_isic2024


@pytest.mark.integration
def test_an_isic2024_set_runs_through_the_pipeline_streaming_from_shards(
    tmp_path_factory: pytest.TempPathFactory, demo_dir: Path
) -> None:
    """The whole DAG under kfp.local on the HDF5 layout, with the image shards forced on: stage1
    writes the training and validation images, evaluate adds the test images, gradcam reads them."""
    import json

    import mlflow
    from local_store import in_local_store
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import EXPERIMENT_NAME
    from melanoma_pipelines import cli

    work = tmp_path_factory.mktemp("isic2024_run")
    data = make_isic2024(work / "data", demo_dir)
    shard_root = work / "shards"
    with in_local_store(work) as uri:
        code = cli.main(
            ["run", "--data", str(data), "--weights", "none", "--run-name", "isic2024", "--image-size", "32",
             "--stage1-epochs", "1", "--stage2-epochs", "1", "--batch-size", "16", "--gradcam-samples", "4",
             "--patience", "1", "--image-cache", "shards", "--shard-root", str(shard_root)]
        )  # fmt: skip
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        exp = client.get_experiment_by_name(EXPERIMENT_NAME)
        parent = next(r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "isic2024")
    assert code == 0
    assert parent.data.tags["data.layout"] == "isic2024"
    assert parent.data.params["stage1_image_store"] == "shards"
    assert parent.data.params["stage2_image_store"] == "shards"
    (folder,) = shard_root.iterdir()
    assert folder.name.startswith(parent.data.tags["data.fingerprint"][:16])
    parts = sorted(folder.glob("part-*.json"))
    keys = [k for p in parts for k in json.loads(p.read_text())["keys"]]
    # Written once: stage1 (train + val), evaluate (test); stage2 and gradcam only read.
    assert len(parts) == 2 and len(keys) == len(set(keys)) == 40
    manifest = next((work / "local_outputs").glob("*/validate/manifest"))
    assert pd.read_csv(manifest)["image_uri"].str.startswith("hdf5://").all()
