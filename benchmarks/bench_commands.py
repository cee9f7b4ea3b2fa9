"""How fast the commands a user types answer, on the store `make run` made: `predict` on 2 images,
`promote`, `history`, and the detection app from `streamlit run` to usable and to model-ready.

Every command is a new process timed from fork to exit (wall and CPU: CPU is what the wall would be
on an idle machine, give or take I/O; on this shared machine the wall mostly measures the
neighbours). The arms are interleaved in each repeat. It works on a COPY of the store (``--store``,
default ./mlruns), in which it registers a second version of the model, so that each `promote`
moves @champion (``--force``: the demo's gate held both). It also counts the lines of
TensorFlow's / absl's start-up banners each command printed (the target is none).

The app: `streamlit run app/app.py` on a free port; "usable" = the page in headless Chromium shows
the title, the uploader and the loader's status line (or the model); "ready" = the model is loaded
(the status line gone, the sidebar's version shown). Without Chromium (Debian package) or
Playwright only the server's health time is measured, and the script says so.

    .venv/bin/python benchmarks/bench_commands.py [--store mlruns] [--repeats 3] [--no-app | --app-only]

Targets (issue 22): predict on 2 images <= 15 s on an idle 2-core machine; promote and history
<= 3 s; the app usable within 15 s of start.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "melanoma-resnet50"
#: Lines TensorFlow, absl and oneDNN print at start-up when nobody quietens them.
BANNER = re.compile(
    r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d|.*cpu_feature_guard|"
    r".*oneDNN custom operations|.*This TensorFlow binary is optimized|To enable the following instructions)"
)
CHROMIUM = Path("/usr/bin/chromium")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s, banner lines, output) of one command in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=env["BENCH_CWD"])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    output = done.stdout + done.stderr
    banners = sum(1 for line in output.splitlines() if BANNER.match(line))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, banners, output


def second_version(uri: str) -> None:
    """Register version 1's model again, so that promote can alternate between two versions."""
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_URI"] = uri  # the registry resolves the logged model through it
    client = MlflowClient(tracking_uri=uri)
    first = client.get_model_version(MODEL, "1")
    second = client.create_model_version(MODEL, first.source, run_id=first.run_id, tags=first.tags)
    client.set_registered_model_alias(MODEL, "champion", "1")
    print(f"store copy: {MODEL} versions 1 and {second.version}; @champion = 1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_times(env: dict[str, str], timeout_s: float = 600.0) -> dict[str, float | str]:
    """Seconds from `streamlit run` to health, to a usable page and to a loaded model."""
    port = free_port()
    argv = [str(BIN / "streamlit"), "run", str(ROOT / "app" / "app.py"), "--server.port", str(port)]
    argv += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - read at the end
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    out: dict[str, float | str] = {}
    try:
        while time.perf_counter() - start < timeout_s:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
                out["health"] = time.perf_counter() - start
                break
            time.sleep(0.2)
        if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
            out["note"] = "no Chromium/Playwright: the page itself was not timed"
            return out
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            page.get_by_text("Melanoma risk from a dermoscopic image").wait_for(timeout=timeout_s * 1000)
            page.locator("[data-testid='stFileUploader']").wait_for(timeout=timeout_s * 1000)
            out["usable"] = time.perf_counter() - start
            status = page.get_by_text(re.compile(r"^Loading the model"))
            if status.count():
                out["status"] = status.first.inner_text()
            try:
                page.get_by_text(re.compile(r"version \d+")).first.wait_for(timeout=timeout_s * 1000)
                out["registry_shown"] = time.perf_counter() - start
                status.first.wait_for(state="detached", timeout=timeout_s * 1000)
                out["ready"] = time.perf_counter() - start
            except PlaywrightTimeout:
                out["note"] = f"not ready within {timeout_s:.0f} s; last status: {status.first.inner_text()}"
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.seek(0)
        banners = sum(1 for line in log.read().splitlines() if BANNER.match(line))
        out["banners"] = banners
        log.close()
        Path(log.name).unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="mlruns", help="the folder `make run` wrote (mlflow.db inside)")
    parser.add_argument(
        "--images", nargs=2, default=["demo_data/ISIC_9000000.jpg", "demo_data/ISIC_9000001.jpg"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-app", action="store_true")
    parser.add_argument("--app-only", action="store_true", help="time only the app")
    args = parser.parse_args()
    images = [str(Path(i).resolve()) for i in args.images]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mlruns"
        shutil.copytree(args.store, store)
        # The store's artifact URIs are absolute paths into the original folder: the copy's
        # database still points there for artifacts (read only here), its registry is the copy's own.
        uri = f"sqlite:///{store / 'mlflow.db'}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TF_CPP"))},
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "BENCH_CWD": tmp,
        }
        second_version(uri)
        cli = str(BIN / "melanoma-mlops")
        arms = {
            "predict (2 images)": lambda i: [cli, "predict", *images],
            "promote --force": lambda i: [
                *(cli, "promote", "--version", "2" if i % 2 == 0 else "1", "--reason", "bench"),
                *("--force", "--force-reason", "bench"),
            ],
            "history": lambda i: [cli, "history"],
        }
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in arms}
        apps: list[dict[str, float | str]] = []
        last_predict = ""
        if args.app_only:
            arms = {}
        for i in range(args.repeats):
            for name, argv in arms.items():
                wall, cpu, banners, output = timed(argv(i), env)
                results[name].append((wall, cpu, banners))
                print(
                    f"repeat {i + 1} {name:<20} {wall:6.2f} s wall, {cpu:5.2f} s CPU, {banners} banner lines"
                )
                if name.startswith("predict"):
                    last_predict = output
            if not args.no_app:
                apps.append(app_times(env))
                print(
                    f"repeat {i + 1} app: "
                    + ", ".join(
                        f"{k} {v:.1f} s" if isinstance(v, float) else f"{k}: {v}" for k, v in apps[-1].items()
                    )
                )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'command (new process)':<22} {'wall min / median / max':>26} {'CPU median':>11} {'banners':>8}")
    for name, values in results.items():
        if not values:
            continue
        walls = [w for w, _, _ in values]
        print(
            f"{name:<22} {min(walls):7.2f} / {statistics.median(walls):6.2f} / {max(walls):6.2f} s "
            f"{statistics.median(c for _, c, _ in values):10.2f}s {max(b for _, _, b in values):8d}"
        )
    for key in ("health", "usable", "registry_shown", "ready"):
        values = [float(a[key]) for a in apps if isinstance(a.get(key), float)]
        if values:
            print(
                f"app {key:<18} {min(values):7.2f} / {statistics.median(values):6.2f} / {max(values):6.2f} s"
            )
    if apps:
        print(f"app banner lines: {max(int(a['banners']) for a in apps)}")
    if last_predict:
        print("\nthe last predict's output:\n" + last_predict)


if __name__ == "__main__":
    main()
