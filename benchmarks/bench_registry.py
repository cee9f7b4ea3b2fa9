"""How long `melanoma-mlops promote`, `promote --rollback` and `history` take, as a user runs them.

Each command is a fresh process on a store whose model already has ``--moves`` recorded moves
(the record and the audit tags grow with every move), timed from fork to exit: import, store
connection, the move lock, the record. The store is the local SQLite file (``make run``'s
default), or with ``--server`` a local MLflow tracking server over REST (the cluster's setup; the
client then never imports MLflow's SQL store, SQLAlchemy and alembic). For scale it also times
the import of TensorFlow (what these commands used to pay) and, in one process, one locked and
recorded move against a bare alias move (the price of the lock and the record).

    .venv/bin/python benchmarks/bench_registry.py [--moves 100] [--repeats 5] [--server]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _common import best_of

MAIN = "import sys; from melanoma_pipelines.cli import main; sys.exit(main())"
MODEL = "bench"


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``melanoma-mlops ARGV`` in a new process.

    CPU time (user + system of the child) is what the wall time is on an idle machine, give or
    take I/O waits; on a shared, loaded machine the wall time mostly measures the neighbours.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, *argv], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build(uri: str, versions: int, moves: int) -> None:
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry import champion

    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model(MODEL)
    run_id = client.create_run("0").info.run_id  # a tracking server takes run sources only
    for i in range(versions):
        mv = client.create_model_version(MODEL, f"runs:/{run_id}/v{i}", run_id=run_id)
        client.set_model_version_tag(MODEL, mv.version, "gate.passed", "true")
    for i in range(moves):
        champion.promote(MODEL, str(1 + i % (versions - 1)), reason=f"move {i}")


@contextlib.contextmanager
def tracking_server(root: Path) -> Iterator[str]:
    """``melanoma-mlops mlflow-server``'s start command on 127.0.0.1 (SQLite behind it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        *(sys.executable, "-m", "melanoma_mlops.tracking_server"),
        *("--backend-store-uri", f"sqlite:///{root / 'server.db'}"),
        *("--artifacts-destination", str(root / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-auth"),
    ]
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=100, help="moves already recorded (default 100)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="through a local tracking server (REST)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        uri = stack.enter_context(tracking_server(root)) if args.server else f"sqlite:///{root / 'mlflow.db'}"
        build(uri, versions=20, moves=args.moves)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        times: dict[str, list[tuple[float, float]]] = {"promote": [], "promote --rollback": [], "history": []}
        for i in range(args.repeats):
            # 20 is never champion during the build: alternate it with 19 so each promote moves.
            target = "20" if i % 2 == 0 else "19"
            times["promote"].append(
                run(["promote", "--model-name", MODEL, "--version", target, "--reason", "b"], env)
            )
            times["promote --rollback"].append(
                run(["promote", "--model-name", MODEL, "--rollback", "--reason", "b"], env)
            )
            times["history"].append(run(["history", "--model-name", MODEL], env))
        tf_import = min(run_code("import tensorflow", env) for _ in range(2))
        cli_import = min(run_code("import melanoma_pipelines.cli", env) for _ in range(3))

        from mlflow.tracking import MlflowClient

        from melanoma_mlops.registry import champion

        client = MlflowClient(tracking_uri=uri)
        flip = iter(["20", "19"] * 50)
        locked = best_of(lambda: champion.promote(MODEL, next(flip), reason="b"), 5)
        bare = best_of(lambda: client.set_registered_model_alias(MODEL, "champion", next(flip)), 5)

    store = "a tracking server (REST)" if args.server else "SQLite"
    print(
        f"store: {store}, model with 20 versions and {args.moves}+ recorded moves; {args.repeats} runs each"
    )
    print(f"load average before/after: {load[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'command (new process, fork to exit)':<40} {'wall median':>11} {'wall max':>9} {'CPU median':>11}"
    )
    for name, values in times.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        print(
            f"melanoma-mlops {name:<25} {statistics.median(walls):>10.2f}s {max(walls):>8.2f}s "
            f"{statistics.median(cpus):>10.2f}s"
        )
    for name, (wall, cpu) in (
        ("import melanoma_pipelines.cli", cli_import),
        ("import tensorflow", tf_import),
    ):
        print(f"{'python -c ' + name:<40} {wall:>10.2f}s {'':>9} {cpu:>10.2f}s")
    print("(import tensorflow: what promote and history no longer pay)")
    print(
        f"one move in-process: locked + recorded {locked * 1000:.0f} ms, "
        f"bare alias move {bare * 1000:.0f} ms ({locked / bare:.1f}x)"
    )


def run_code(code: str, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
