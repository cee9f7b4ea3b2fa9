"""Decoded-image stores: each unique image once (memory or TFRecord shards), rows index into them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from melanoma_mlops.model import dataset, shards


def _manifest(demo_dir: Path, with_sha: bool = True) -> pd.DataFrame:
    import hashlib

    paths = sorted(demo_dir.glob("*/*.png"))
    df = pd.DataFrame(
        {"image_uri": [str(p) for p in paths], "label": [int(p.parent.name == "malignant") for p in paths]}
    )
    if with_sha:
        df["sha256"] = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return df


def _oversampled(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df[df["label"] == 1], df[df["label"] == 1]], ignore_index=True)


def test_the_memory_store_holds_each_unique_image_once(demo_dir: Path) -> None:
    df = _manifest(demo_dir)
    over = _oversampled(df)
    store = dataset.MemoryStore.decode([over, df.head(5)], 32)
    assert len(store) == len(df) and store.images.shape == (len(df), 32, 32, 3)
    rows = store.rows(over)
    assert len(rows) == len(over) and rows.max() == len(df) - 1
    first = next(iter(dataset.make_dataset(df.head(4), 32, 4)))[0].numpy()
    np.testing.assert_array_equal(store.take(rows[:4]).astype(np.float32), first)


def test_the_budget_counts_unique_images(demo_dir: Path) -> None:
    df = _manifest(demo_dir)
    over = pd.concat([df] * 10, ignore_index=True)
    one = dataset.image_bytes(32)
    assert dataset.fits_in_memory([over], 32, budget=len(df) * one)
    assert not dataset.fits_in_memory([over], 32, budget=len(df) * one - 1)


def test_an_epoch_is_a_seeded_permutation_reshuffled_each_epoch(demo_dir: Path) -> None:
    df = _manifest(demo_dir)
    store = dataset.MemoryStore.decode([df], 32)
    labels = lambda ds: np.concatenate([y.numpy() for _, y in ds])  # noqa: E731
    keys = lambda ds: [bytes(img) for x, _ in ds for img in x.numpy()]  # noqa: E731
    ds = dataset.from_store(store, df, 8, training=True, seed=1, dtype=tf.uint8)
    epoch1, epoch2 = keys(ds), keys(ds)
    again = keys(dataset.from_store(store, df, 8, training=True, seed=1, dtype=tf.uint8))
    assert epoch1 == again and epoch1 != epoch2
    assert sorted(epoch1) == sorted(bytes(i) for i in store.images)
    assert labels(ds).sum() == df["label"].sum()


def test_shards_are_tfrecords_with_fixed_records_read_at_random(demo_dir: Path, tmp_path: Path) -> None:
    df = _manifest(demo_dir)
    store = shards.ensure([df], 32, root=str(tmp_path), data_key="abc")
    memory = dataset.MemoryStore.decode([df], 32)
    folder = Path(store.uri)
    assert folder.name == f"abc-32px-v{shards.FORMAT_VERSION}"
    # Ordinary TFRecord files: TensorFlow reads (and CRC-checks) them, one raw image per record.
    records = [
        np.frombuffer(r.numpy(), np.uint8).reshape(32, 32, 3)
        for r in tf.data.TFRecordDataset(sorted(str(p) for p in folder.glob("*.tfrecord")))
    ]
    np.testing.assert_array_equal(np.stack(records), memory.images)
    rows = np.array([5, 0, 39, 5, 17])
    np.testing.assert_array_equal(store.take(rows), memory.take(rows))
    a = [x.numpy() for x, _ in dataset.from_store(store, df, 8, training=True, seed=2)]
    b = [x.numpy() for x, _ in dataset.from_store(memory, df, 8, training=True, seed=2)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_shards_are_written_once_and_grow_by_parts(demo_dir: Path, tmp_path: Path) -> None:
    df = _manifest(demo_dir)
    shards.ensure([df.head(30)], 32, root=str(tmp_path), data_key="k")
    folder = next(tmp_path.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len([n for n in before if n.endswith(".json")]) == 1
    store = shards.ensure([df.head(30)], 32, root=str(tmp_path), data_key="k")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # nothing rewritten
    store = shards.ensure([df.tail(20)], 32, root=str(tmp_path), data_key="k")
    parts = sorted(folder.glob("*.json"))
    assert len(parts) == 2 and len(store) == len(df)
    assert len(json.loads(parts[0].read_text())["keys"]) + len(json.loads(parts[1].read_text())["keys"]) == 40
    # A part whose .json was never written (an interrupted writer) does not exist for readers.
    (folder / "part-0000000000000000-00000.tfrecord").write_bytes(b"partial")
    assert len(shards.open_store(str(folder), 32)) == len(df)
    np.testing.assert_array_equal(store.take(store.rows(df)), dataset.MemoryStore.decode([df], 32).images)


def test_which_store_a_step_reads(demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = _manifest(demo_dir)
    root = str(tmp_path)
    assert shards.for_training([df], 32, image_cache="memory", shard_root=root).kind == "memory"
    assert shards.for_training([df], 32, image_cache="auto", shard_root=root).kind == "memory"
    monkeypatch.setattr(dataset, "MEMORY_BUDGET_BYTES", 10)
    assert (
        shards.for_training([df.head(30)], 32, image_cache="auto", shard_root=root, data_key="fp").kind
        == "shards"
    )
    # Evaluation: auto follows training (shards exist for this data set), memory never, shards always.
    assert shards.for_reading([df], 32, image_cache="auto", shard_root=root, data_key="other") is None
    reading = shards.for_reading([df.tail(20)], 32, image_cache="auto", shard_root=root, data_key="fp")
    assert reading is not None and reading.covers(df)
    assert shards.for_reading([df], 32, image_cache="memory", shard_root=root, data_key="fp") is None
    # Grad-CAM only reads: it finds images by URI once aliased.
    only = shards.for_reading([df], 32, image_cache="auto", shard_root=root, data_key="fp", write=False)
    only.add_aliases(df)
    with dataset.reading_from(only):
        got = dataset.load_images(df["image_uri"].tolist()[:3], 32)
    np.testing.assert_array_equal(got, dataset.load_images(df["image_uri"].tolist()[:3], 32))


def test_evaluation_reads_an_active_store_in_manifest_order(demo_dir: Path, tmp_path: Path) -> None:
    df = _manifest(demo_dir).sample(frac=1.0, random_state=0)
    store = shards.ensure([df], 32, root=str(tmp_path), data_key="e")
    decoded = np.concatenate([x.numpy() for x, _ in dataset.make_dataset(df, 32, 16)])
    with dataset.reading_from(store):
        from_shards = np.concatenate([x.numpy() for x, _ in dataset.make_dataset(df, 32, 16)])
    np.testing.assert_array_equal(from_shards, decoded)


def test_uri_keys_when_the_manifest_has_no_hashes(demo_dir: Path) -> None:
    df = _manifest(demo_dir, with_sha=False)
    store = dataset.MemoryStore.decode([df, df], 32)
    assert len(store) == len(df) and all(k.startswith("uri:") for k in store.index)


def test_shards_on_s3_are_uploaded_once_and_read_back(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    from melanoma_mlops import storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (*storage.ENDPOINT_ENV_VARS, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    storage.reset_clients()
    df = _manifest(demo_dir)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="runs")
        store = shards.ensure([df.head(25)], 32, root="s3://runs/shards", data_key="s3key")
        store = shards.ensure([df], 32, root="s3://runs/shards", data_key="s3key")
        listed = storage.list_files("s3://runs/shards/s3key-32px-v1")
        assert len([u for u in listed if u.endswith(".json")]) == 2
        assert not [u for u in listed if u.endswith(".tmp")]
        np.testing.assert_array_equal(store.take(store.rows(df)), dataset.MemoryStore.decode([df], 32).images)
    storage.reset_clients()
