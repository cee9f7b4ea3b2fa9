"""storage: the same calls on local folders and S3 (moto, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from melanoma_mlops import storage
from melanoma_mlops.errors import DataError

BUCKET = "melanoma-test"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no endpoint override, so moto intercepts every call."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (*storage.ENDPOINT_ENV_VARS, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def s3_bucket(aws_env: None) -> Iterator[str]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for key in ("data/b.txt", "data/a/x.txt", "data/a/", "other/y.txt", "datax/z.txt"):
            client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
        yield BUCKET


def test_is_s3_and_join() -> None:
    assert storage.is_s3("s3://b/p")
    assert not storage.is_s3("/tmp/x")
    assert storage.join("s3://b/p/", "x", "y.png") == "s3://b/p/x/y.png"
    assert storage.join("/data", "a", "b.png") == "/data/a/b.png"
    assert storage.join("/data", "/abs/c.png") == "/abs/c.png"
    assert storage.join("/data", "s3://b/k.png") == "s3://b/k.png"
    assert storage.parent("s3://b/p/x.png") == "s3://b/p"
    assert storage.name("s3://b/p/x.png") == "x.png"


def test_local_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"x")
    (tmp_path / "b.txt").write_bytes(b"b")
    assert storage.exists(str(tmp_path / "a"))
    assert not storage.exists(str(tmp_path / "nope"))
    assert storage.read_bytes(str(tmp_path / "b.txt")) == b"b"
    assert storage.list_files(str(tmp_path)) == [str(tmp_path / "a" / "x.txt"), str(tmp_path / "b.txt")]
    assert storage.list_files(str(tmp_path / "nope")) == []
    with pytest.raises(DataError, match=r"nope\.txt"):
        storage.read_bytes(str(tmp_path / "nope.txt"))


def test_s3_files(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/data"
    # Sorted, recursive, full URIs; the folder marker and the sibling prefix "datax/" are not listed.
    assert storage.list_files(root) == [f"{root}/a/x.txt", f"{root}/b.txt"]
    assert storage.list_files(root + "/") == storage.list_files(root)
    assert storage.read_bytes(f"{root}/a/x.txt") == b"data/a/x.txt"
    assert storage.exists(f"{root}/b.txt")
    assert storage.exists(root)  # a prefix with objects counts as existing
    assert storage.exists(f"s3://{s3_bucket}")
    assert not storage.exists(f"{root}/missing.txt")
    assert storage.is_dir(root) and not storage.is_dir(f"{root}/b.txt")
    storage.write_bytes(f"{root}/new.bin", b"123")
    assert storage.read_bytes(f"{root}/new.bin") == b"123"


def test_s3_missing_bucket_names_uri(aws_env: None) -> None:
    with mock_aws():
        with pytest.raises(DataError, match=r"bucket 'no-such-bucket'.*check the bucket name"):
            storage.list_files("s3://no-such-bucket/data")
        with pytest.raises(DataError, match="no-such-bucket"):
            storage.read_bytes("s3://no-such-bucket/x.png")
        with pytest.raises(DataError, match="no-such-bucket"):
            storage.exists("s3://no-such-bucket")


def test_s3_missing_key(s3_bucket: str) -> None:
    with pytest.raises(DataError, match=r"s3://melanoma-test/data/nope.png does not exist"):
        storage.read_bytes(f"s3://{s3_bucket}/data/nope.png")


def test_s3_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    # No shared files and no instance metadata lookups: the chain must come up empty, offline.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(
        DataError, match=r"no usable AWS credentials to read s3://bucket/x.png.*AWS_ACCESS_KEY_ID"
    ):
        storage.read_bytes("s3://bucket/x.png")


def test_s3_access_denied_message() -> None:
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "GetObject")
    err = storage._s3_error("s3://bkt/p/x.png", exc)
    assert "s3://bkt/p/x.png" in str(err) and "AWS_ACCESS_KEY_ID" in str(err) and "'bkt'" in str(err)


def test_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in storage.ENDPOINT_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert storage.endpoint_url() is None
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    assert storage.endpoint_url() == "http://minio:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://other:9000")
    assert storage.endpoint_url() == "http://other:9000"


def test_credentials_follow_the_environment_not_boto3s_default_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3

    # Something else in the process resolved credentials through boto3's default session...
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stale")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stale")
    boto3.client("s3", region_name="us-east-1")._request_signer._credentials  # noqa: B018
    # ...then the credentials went away: storage must notice, not sign with the stale ones.
    test_s3_no_credentials(monkeypatch, tmp_path)
