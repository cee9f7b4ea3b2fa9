"""The project's images, built and run: size, user, no trace of the build's CA bundle, and each
image doing its job (the pipeline image imports its stack, the MLflow image serves a SQLite store in
a bind-mounted folder with and without --auth, the app image serves @champion to a real Chromium).

The images are built once per session by docker/build-images.sh (what ``make images`` runs), on the
official Python image where it can be pulled and otherwise on a base made from Debian packages;
layer caches make a rebuild take seconds. Every container uses the host network and binds
127.0.0.1 on a free port. Outside CI a missing docker/Chromium/Playwright skips these tests, naming
what is missing; under CI (CI=true) it fails them. See tests/docker_env.py.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser import chromium
from docker_env import (
    IMAGE_UID,
    Images,
    docker,
    ensure_images,
    free_port,
    image_inspect,
    require_docker,
    run_container,
    writable_mount,
)

pytestmark = pytest.mark.integration

MAX_CPU_PIPELINE_IMAGE_BYTES = 3_000_000_000
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
CA_ENV_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")
SERVER_START_S = 120
# The first upload loads TensorFlow and the model inside the container before the page answers.
ANSWER_TIMEOUT_MS = 240_000
MODEL_NAME = "melanoma-resnet50"  # the app's default: models:/melanoma-resnet50@champion


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return ensure_images(tmp_path_factory.getbasetemp() / "docker-build")


def _all(images: Images) -> list[str]:
    return [images.pipeline_cpu, images.mlflow_server, images.app]


def _env(image: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image_inspect(image)["Config"]["Env"] or [])


def _run(image: str, *command: str, entrypoint: str | None = None, timeout: float = 180) -> str:
    args = ["run", "--rm", "--network", "host"]
    if entrypoint is not None:
        args += ["--entrypoint", entrypoint]
    result = docker(*args, image, *command, timeout=timeout)
    return result.stdout


def _no_proxy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _http(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------- what every image is


def test_cpu_pipeline_image_is_under_3_gb(images: Images) -> None:
    sizes = {image: image_inspect(image)["Size"] for image in _all(images)}
    print("\n".join(f"{image}: {size / 1e9:.2f} GB" for image, size in sizes.items()))
    assert sizes[images.pipeline_cpu] < MAX_CPU_PIPELINE_IMAGE_BYTES, sizes


@pytest.mark.parametrize("which", ["pipeline_cpu", "mlflow_server", "app"])
def test_image_runs_as_uid_10001_with_telemetry_off(images: Images, which: str) -> None:
    image = getattr(images, which)
    assert image_inspect(image)["Config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert _run(image, "-u", entrypoint="id").strip() == str(IMAGE_UID)
    env = _env(image)
    for key, value in TELEMETRY_OFF.items():
        assert env.get(key) == value, f"{image}: {key}={env.get(key)!r}"
    if which == "app":
        assert env.get("STREAMLIT_BROWSER_GATHER_USAGE_STATS") == "false"


def test_app_image_reuses_the_cpu_pipeline_dependency_layer(images: Images) -> None:
    """Same instruction, same pins: TensorFlow and the runtime deps are one layer on disk for both."""
    pipeline = image_inspect(images.pipeline_cpu)["RootFS"]["Layers"]
    app = image_inspect(images.app)["RootFS"]["Layers"]
    shared = 0
    for a, b in zip(pipeline, app, strict=False):
        if a != b:
            break
        shared += 1
    # base image + venv + dependency layer at least
    assert shared >= 3, f"the app image shares only {shared} layer(s) with the CPU pipeline image"


# --------------------------------------------------------------------------- the build's CA bundle

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)


def _certs(data: bytes) -> set[bytes]:
    """The base64 bodies (newlines removed) of every PEM certificate in ``data``."""
    return {re.sub(rb"\s+", b"", m.group(1)) for m in _PEM.finditer(data)}


def _public_certs(image: str | None) -> set[bytes]:
    """Certificates that are public anyway: the image's own trust store, the Mozilla set of the
    host (Debian's ca-certificates) and certifi's. What the build bundle holds beyond these is the
    local (proxy / corporate) CA that must not reach an image."""
    found: set[bytes] = set()
    if image is not None:
        store = docker("run", "--rm", "--entrypoint", "cat", image, "/etc/ssl/certs/ca-certificates.crt")
        found |= _certs(store.stdout.encode())
    for path in glob.glob("/usr/share/ca-certificates/mozilla/*.crt"):
        found |= _certs(Path(path).read_bytes())
    if importlib.util.find_spec("certifi") is not None:
        import certifi

        found |= _certs(Path(certifi.where()).read_bytes())
    return found


def _needles(local: set[bytes]) -> list[bytes]:
    """Byte strings that betray a certificate in PEM (its first base64 line) or DER form."""
    needles = []
    for body in local:
        needles.append(body[:64])
        der = base64.b64decode(body)
        needles.append(der[len(der) // 2 : len(der) // 2 + 64])
    return needles


def _scan_filesystem(image: str, needles: list[bytes], bundle_size: int, bundle_hash: str) -> list[str]:
    """Paths in ``image``'s filesystem that contain a needle or are a copy of the bundle."""
    hits: list[str] = []
    overlap = max((len(n) for n in needles), default=0)
    container = docker("create", image).stdout.strip()
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    if member.name.removeprefix("./").startswith("run/secrets/"):
                        hits.append(f"{member.name} (a BuildKit secret left in the image)")
                        continue
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    digest = hashlib.sha256() if member.size == bundle_size else None
                    tail = b""
                    while chunk := handle.read(16 << 20):
                        if digest is not None:
                            digest.update(chunk)
                        window = tail + chunk
                        if needles and any(n in window for n in needles):
                            hits.append(member.name)
                            break
                        tail = window[-overlap:] if overlap else b""
                    if digest is not None and digest.hexdigest() == bundle_hash:
                        hits.append(f"{member.name} (a copy of the CA bundle)")
            proc.wait(timeout=600)
    finally:
        docker("rm", "-f", container, check=False)
    return hits


@pytest.mark.parametrize("which", ["pipeline_cpu", "mlflow_server", "app"])
def test_no_trace_of_the_build_ca_bundle(images: Images, which: str) -> None:
    """The CA bundle reaches pip as a BuildKit secret: it must be in no layer, no history entry,
    no environment variable of the image."""
    image = getattr(images, which)
    env = _env(image)
    assert not [k for k in CA_ENV_VARS if k in env], f"{image} sets {[k for k in CA_ENV_VARS if k in env]}"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "BEGIN CERTIFICATE" not in history

    bundle_path = os.environ.get("CA_BUNDLE") or os.environ.get("PIP_CERT")
    if not bundle_path or not Path(bundle_path).is_file():
        pytest.skip("no CA bundle was given to the build (CA_BUNDLE / PIP_CERT unset): nothing to trace")
    bundle = Path(bundle_path).read_bytes()
    assert bundle_path not in history, f"the bundle's path {bundle_path} is in the history of {image}"
    local = _certs(bundle) - _public_certs(image)
    needles = _needles(local)
    for needle in needles:
        assert needle.decode("latin-1") not in history
    print(f"{image}: searching for {len(local)} local CA certificate(s) and copies of {bundle_path}")
    hits = _scan_filesystem(image, needles, len(bundle), hashlib.sha256(bundle).hexdigest())
    assert not hits, f"{image} holds the build's CA bundle or its local CA in: {hits[:20]}"


def test_the_ca_scan_finds_a_planted_certificate(tmp_path: Path) -> None:
    """The detector itself: an image holding the local CA (as PEM and as DER) is caught."""
    require_docker()
    bundle_path = os.environ.get("CA_BUNDLE") or os.environ.get("PIP_CERT")
    bundle = Path(bundle_path).read_bytes() if bundle_path and Path(bundle_path).is_file() else b""
    # Without a local CA on this machine, a made-up "certificate" exercises the same search.
    local = sorted(_certs(bundle) - _public_certs(None)) or [base64.b64encode(os.urandom(900))]
    body = local[0]
    context = tmp_path / "probe"
    context.mkdir()
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    (context / "leak.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"
    )
    (context / "leak.der").write_bytes(base64.b64decode(body))
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY leak.pem /etc/leak.pem\nCOPY leak.der /opt/leak.der\nCMD ["none"]\n'
    )
    tag = "melanoma-mlops/ca-scan-probe:test"
    docker("build", "-q", "-t", tag, str(context), timeout=300)
    try:
        hits = _scan_filesystem(tag, _needles({body}), -1, "")
    finally:
        docker("rmi", "-f", tag, check=False)
    assert sorted(hits) == ["etc/leak.pem", "opt/leak.der"], hits


# --------------------------------------------------------------------------- the pipeline image


def test_pipeline_image_imports_its_stack_and_shows_the_cli(images: Images) -> None:
    out = _run(
        images.pipeline_cpu,
        "python",
        "-c",
        "import melanoma_mlops, tensorflow, kfp; print(tensorflow.__version__, kfp.__version__)",
    )
    assert re.search(r"^\d+\.\d+\.\d+ \d+\.\d+\.\d+$", out.strip(), re.M), out
    help_text = _run(images.pipeline_cpu, "melanoma-mlops", "--help")
    assert "usage: melanoma-mlops" in help_text
    # The default command (no arguments) is the same help: what a user sees running the image bare.
    assert "usage: melanoma-mlops" in _run(images.pipeline_cpu)
    # Every installed distribution's requirements are met (TensorFlow CPU is pyproject's own pin).
    assert "No broken requirements" in _run(images.pipeline_cpu, "pip", "check")


# --------------------------------------------------------------------------- the MLflow image


def _mlflow_env(data: str, port: int) -> dict[str, str]:
    return {
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{data}/mlflow.db",
        "MLFLOW_ARTIFACTS_DESTINATION": f"{data}/artifacts",
    }


def test_mlflow_image_serves_a_sqlite_store_in_a_bind_mounted_folder(images: Images, tmp_path: Path) -> None:
    data = tmp_path / "mlflow"
    user_args = writable_mount(data)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_container(
        images.mlflow_server,
        env=_mlflow_env("/data", port),
        docker_args=[*user_args, "-v", f"{data}:/data"],
        ready_url=f"{url}/health",
        timeout_s=SERVER_START_S,
        label="mlflow",
    ):
        status, body = _http(
            f"{url}/api/2.0/mlflow/experiments/create",
            {"Content-Type": "application/json"},
            json.dumps({"name": "from-the-test"}).encode(),
        )
        assert status == 200, body
        status, body = _http(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=from-the-test")
        assert status == 200 and json.loads(body)["experiment"]["name"] == "from-the-test"
    store = data / "mlflow.db"
    assert store.is_file() and store.stat().st_size > 0
    expected_owner = IMAGE_UID if os.getuid() == 0 else os.getuid()
    assert store.stat().st_uid == expected_owner


def test_mlflow_image_serves_basic_auth(images: Images, tmp_path: Path) -> None:
    data = tmp_path / "mlflow-auth"
    user_args = writable_mount(data)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    password = "test-only-admin-password-1"
    env = {
        **_mlflow_env("/data", port),
        "MLFLOW_AUTH": "true",
        "MLFLOW_AUTH_DATABASE_URI": "sqlite:////data/basic_auth.db",
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-flask-key",
    }
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    with run_container(
        images.mlflow_server,
        env=env,
        docker_args=[*user_args, "-v", f"{data}:/data"],
        ready_url=f"{url}/health",
        timeout_s=SERVER_START_S,
        label="mlflow-auth",
    ):
        assert _http(search)[0] == 401
        wrong = base64.b64encode(b"admin:wrong-password").decode()
        assert _http(search, {"Authorization": f"Basic {wrong}"})[0] == 401
        admin = base64.b64encode(f"admin:{password}".encode()).decode()
        status, body = _http(search, {"Authorization": f"Basic {admin}"})
        assert status == 200, body
    assert (data / "basic_auth.db").is_file()


# --------------------------------------------------------------------------- the app image


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def _register_champion(root: Path, tracking_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train the tiny stand-in model here and register it through the server as @champion.

    Registering through the server (not into its SQLite file) gives the version proxied
    ``mlflow-artifacts:/`` locations, which the app container downloads over HTTP."""
    import mlflow
    import registry_helpers as rh

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    mlflow.set_tracking_uri(tracking_url)
    try:
        prep = rh.prepare(root)
        decision = rh.register_and_gate(prep, "good", MODEL_NAME)
    finally:
        mlflow.set_tracking_uri(None)
    assert decision["promoted"], decision


def test_app_image_serves_the_champion_in_chromium(
    images: Images, browser: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "mlflow"
    user_args = writable_mount(data)
    mlflow_port, app_port = free_port(), free_port()
    tracking_url = f"http://127.0.0.1:{mlflow_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    with run_container(
        images.mlflow_server,
        env=_mlflow_env("/data", mlflow_port),
        docker_args=[*user_args, "-v", f"{data}:/data"],
        ready_url=f"{tracking_url}/health",
        timeout_s=SERVER_START_S,
        label="mlflow-for-app",
    ):
        _register_champion(tmp_path / "model", tracking_url, monkeypatch)
        # No MELANOMA_MODEL_URI: the image's default is models:/melanoma-resnet50@champion.
        app_env = {
            "MLFLOW_TRACKING_URI": tracking_url,
            "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
            "STREAMLIT_SERVER_PORT": str(app_port),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        with run_container(
            images.app,
            env=app_env,
            ready_url=f"{app_url}/_stcore/health",
            timeout_s=SERVER_START_S,
            label="app",
        ):
            _upload_and_read_the_answer(browser, app_url, tmp_path)


def _wait_for_text(page: object, text: str) -> None:
    """Wait for ``text``; on a timeout, fail with what the page shows instead (the app's own
    message: loading, an error), which the container log alone may not say."""
    try:
        page.get_by_text(text).wait_for(timeout=ANSWER_TIMEOUT_MS)  # type: ignore[attr-defined]
    except Exception as exc:  # playwright's TimeoutError: the page's text is the diagnosis
        shown = page.inner_text("body")  # type: ignore[attr-defined]
        waited = f"{text!r} not shown after {ANSWER_TIMEOUT_MS} ms"
        raise AssertionError(f"{waited}; the page shows: {shown[-3000:]}") from exc


def _upload_and_read_the_answer(browser: object, url: str, tmp_path: Path) -> None:
    import registry_helpers as rh

    image = tmp_path / "lesion.png"
    image.write_bytes(rh.png_bytes(rh.lesion(np.random.default_rng(11), malignant=True, size=64)))
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(url)
        page.get_by_text("NOT a diagnostic device").wait_for(timeout=ANSWER_TIMEOUT_MS)
        page.locator('input[type="file"]').wait_for(state="attached", timeout=ANSWER_TIMEOUT_MS)
        page.locator('input[type="file"]').set_input_files(str(image))

        _wait_for_text(page, "Estimated probability of malignancy")
        value = page.locator('[data-testid="stMetricValue"]').first.inner_text()
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)%\s*", value)
        assert match, value
        assert 0.0 <= float(match.group(1)) <= 100.0
        page.get_by_text("Grad-CAM: regions behind").wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert page.locator('[data-testid="stImage"]').count() >= 2
        # The sidebar names the model the alias resolved to: the registry the container reached.
        assert page.get_by_text(f"models:/{MODEL_NAME}@champion").count() >= 1
    finally:
        page.close()
