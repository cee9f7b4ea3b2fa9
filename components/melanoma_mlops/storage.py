"""Uniform file access for local paths and ``s3://bucket/prefix`` URIs.

Every data-layer function speaks URIs (plain strings), so the same code reads a folder on a laptop,
a MinIO bucket next to a Kubeflow cluster, or AWS S3. For S3 the normal AWS credential chain applies
(environment, shared config/profile, instance role); the endpoint can be redirected to MinIO (or
moto) with ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or ``MLFLOW_S3_ENDPOINT_URL`` -- the last one
so a machine already configured for MLflow's artifact store needs nothing more.

Members of an HDF5 file (the ISIC 2024 challenge's ``train-image.hdf5``: JPEG bytes keyed by isic_id)
are images too: ``hdf5:///abs/path/train-image.hdf5/ISIC_0015670`` names member ``ISIC_0015670`` of
that local file, and :func:`read_bytes` returns its bytes (h5py, one open handle per file and
process, members read on demand). The member comes after the file as a last path segment, so
:func:`name` and ``Path(uri).stem`` give the image id as they do for files.

Credential, permission and bucket problems surface as :class:`~melanoma_mlops.errors.DataError`
naming the URI and what to do, never as a botocore traceback.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

S3_SCHEME = "s3://"
ENDPOINT_ENV_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and for MinIO the endpoint in "
    "AWS_ENDPOINT_URL_S3"
)
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs, false for local paths."""
    return str(uri).startswith(S3_SCHEME)


HDF5_SCHEME = "hdf5://"
HDF5_SUFFIXES = (".hdf5", ".h5")


def is_hdf5(uri: str) -> bool:
    """True for ``hdf5:///path/file.hdf5/member`` URIs (a member of a local HDF5 file)."""
    return str(uri).startswith(HDF5_SCHEME)


def is_local(uri: str) -> bool:
    """A plain local path (what ``open`` and ``tf.io.read_file`` read)."""
    return not (is_s3(uri) or is_hdf5(uri))


def hdf5_uri(path: str, member: str) -> str:
    """The URI of ``member`` of the local HDF5 file ``path``."""
    return f"{HDF5_SCHEME}{Path(path).resolve()}/{member}"


def split_hdf5(uri: str) -> tuple[str, str]:
    """``hdf5:///d/train-image.hdf5/ISIC_1`` -> ``("/d/train-image.hdf5", "ISIC_1")``."""
    rest = str(uri)[len(HDF5_SCHEME) :]
    for suffix in HDF5_SUFFIXES:
        head, sep, member = rest.partition(suffix + "/")
        if sep and member:
            return head + suffix, member
    raise DataError(f"{uri!r} is not hdf5:///path/file.hdf5/member")


@lru_cache(maxsize=8)
def _hdf5_file(path: str) -> Any:
    import h5py  # deferred: only the ISIC 2024 layout needs it

    return h5py.File(path, "r")


def _read_hdf5(uri: str) -> bytes:
    path, member = split_hdf5(uri)
    if not Path(path).is_file():
        raise DataError(f"{path} (of {uri}) does not exist or is not a file")
    try:
        value = _hdf5_file(path)[member][()]
    except KeyError:
        raise DataError(f"{path} has no member {member!r}") from None
    return value.tobytes() if hasattr(value, "tobytes") else bytes(value)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; raise DataError when the bucket is missing."""
    rest = str(uri)[len(S3_SCHEME) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise DataError(f"{uri!r} names no bucket: write it as s3://BUCKET/PREFIX")
    return bucket, key


def endpoint_url() -> str | None:
    """The S3 endpoint override (MinIO, moto) from the environment, or None for AWS itself."""
    for var in ENDPOINT_ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def _client() -> Any:
    # Keyed on every AWS_* setting (credentials, profile, config files, region, endpoint), so a
    # change of environment gets a fresh client while a step listing 20,000 images reuses one.
    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    return _cached_client(endpoint_url(), settings)


@lru_cache(maxsize=8)
def _cached_client(endpoint: str | None, _settings: tuple[tuple[str, str], ...]) -> Any:
    import boto3  # deferred: importing boto3 costs ~0.3 s and most runs read local folders

    logger.debug("creating S3 client (endpoint %s)", endpoint or "AWS default")
    # A session of its own: boto3's default session caches the credentials it first resolved, so
    # a client made after the environment changed would still sign with the old ones.
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


def reset_clients() -> None:
    """Forget cached S3 clients (tests that switch mocks; credential rotation)."""
    _cached_client.cache_clear()


def _s3_error(uri: str, exc: Exception) -> DataError:
    """Translate a botocore exception into a DataError that says what to do."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return DataError(f"no usable AWS credentials to read {uri}: {_CREDENTIALS_HINT}")
    if isinstance(exc, EndpointConnectionError):
        return DataError(
            f"cannot reach the S3 endpoint for {uri} ({exc}): check AWS_ENDPOINT_URL_S3 / "
            "MLFLOW_S3_ENDPOINT_URL and that the server is running"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        bucket = split_s3(uri)[0]
        if code == "NoSuchBucket":
            return DataError(
                f"bucket {bucket!r} of {uri} does not exist: check the bucket name and the endpoint"
            )
        if code in _DENIED_CODES:
            return DataError(
                f"access to {uri} denied ({code}): check that the credentials are right and allow "
                f"s3:GetObject and s3:ListBucket on bucket {bucket!r}; {_CREDENTIALS_HINT}"
            )
        if code in _NOT_FOUND_CODES:
            return DataError(f"{uri} does not exist: check the key/prefix")
        return DataError(f"S3 request for {uri} failed ({code}): {exc}")
    return DataError(f"S3 request for {uri} failed: {exc}")


def read_bytes(uri: str) -> bytes:
    """The whole content of a local file, an S3 object or a member of an HDF5 file."""
    if is_hdf5(uri):
        return _read_hdf5(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
    path = Path(uri)
    if not path.is_file():
        raise DataError(f"{uri} does not exist or is not a file")
    return path.read_bytes()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a local file (creating folders) or put an S3 object."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().put_object(Bucket=bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def delete(uri: str) -> None:
    """Remove a local file or an S3 object (nothing happens when it is not there)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
        return
    Path(uri).unlink(missing_ok=True)


def exists(uri: str) -> bool:
    """True when a file/object or a folder/prefix with at least one object exists at ``uri``."""
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(uri)
    client = _client()
    try:
        if not key.strip("/"):
            client.head_bucket(Bucket=bucket)
            return True
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) not in _NOT_FOUND_CODES:
                raise
        listing = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return bool(listing.get("KeyCount", 0))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND_CODES and not key.strip("/"):
            # head_bucket answers a bare 404 for a missing bucket.
            raise DataError(f"bucket {bucket!r} of {uri} does not exist: check the bucket name") from exc
        raise _s3_error(uri, exc) from exc
    except BotoCoreError as exc:
        raise _s3_error(uri, exc) from exc


def is_dir(uri: str) -> bool:
    """True for a local folder or an S3 prefix holding objects (not a single object)."""
    if not is_s3(uri):
        return Path(uri).is_dir()
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    try:
        listing = _client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(uri, exc) from exc
    return bool(listing.get("KeyCount", 0))


def list_files(uri_prefix: str) -> list[str]:
    """Every file below a folder / S3 prefix, recursively, as sorted full paths/URIs.

    A missing folder or an empty prefix gives an empty list (callers decide whether that is an
    error, so they can say which layout they were looking for). S3 "folder marker" keys ending in
    ``/`` are skipped.
    """
    if not is_s3(uri_prefix):
        root = Path(uri_prefix)
        if root.is_file():
            return [str(root)]
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    bucket, key = split_s3(uri_prefix)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    out: list[str] = []
    try:
        paginator = _client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(f"{S3_SCHEME}{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(uri_prefix, exc) from exc
    return sorted(u for u in out if not u.endswith("/"))


def join(base: str, *parts: str) -> str:
    """Join path segments under a local folder or S3 prefix.

    Like :func:`os.path.join`, a part that is itself absolute (``/x`` or ``s3://...``) replaces what
    came before, so a manifest CSV may mix relative and absolute image paths.
    """
    out = str(base)
    for raw in parts:
        part = str(raw)
        if is_s3(part) or (not is_s3(out) and os.path.isabs(part)):
            out = part
        elif is_s3(out):
            out = out.rstrip("/") + "/" + part.lstrip("/") if part else out
        else:
            out = os.path.join(out, part)
    return out


def parent(uri: str) -> str:
    """The folder / prefix holding ``uri``."""
    if is_s3(uri):
        head = uri.rstrip("/").rsplit("/", 1)[0]
        return head if len(head) > len(S3_SCHEME) else uri
    return str(Path(uri).parent)


def name(uri: str) -> str:
    """The last path segment (file name) of ``uri``."""
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def normalize(uri: str) -> str:
    """A canonical form: absolute local paths; S3 URIs without a trailing slash."""
    if is_s3(uri):
        return str(uri).rstrip("/") if str(uri).rstrip("/") != "s3:/" else str(uri)
    return str(Path(uri).expanduser().resolve())
