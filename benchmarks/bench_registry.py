"""How long `melanoma-mlops promote`, `promote --rollback` and `history` take, as a user runs them.

Each command is a fresh process on a SQLite store whose model already has ``--moves`` recorded
moves (the record and the audit tags grow with every move), timed from fork to exit: import,
store connection, the move lock, the record. For scale it also times the import of TensorFlow
(what these commands used to pay) and, in one process, one locked and recorded move against a bare
alias move (the price of the lock and the record).

    .venv/bin/python benchmarks/bench_registry.py [--moves 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import best_of

MAIN = "import sys; from melanoma_pipelines.cli import main; sys.exit(main())"
MODEL = "bench"


def run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def build(root: Path, versions: int, moves: int) -> str:
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry import champion

    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model(MODEL)
    for i in range(versions):
        (root / f"v{i}").mkdir()
        mv = client.create_model_version(MODEL, str(root / f"v{i}"))
        client.set_model_version_tag(MODEL, mv.version, "gate.passed", "true")
    for i in range(moves):
        champion.promote(MODEL, str(1 + i % (versions - 1)), reason=f"move {i}")
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=100, help="moves already recorded (default 100)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = build(root, versions=20, moves=args.moves)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        times: dict[str, list[float]] = {"promote": [], "promote --rollback": [], "history": []}
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

    print(f"store: SQLite, model with 20 versions and {args.moves}+ recorded moves; {args.repeats} runs each")
    print(f"{'command (new process, fork to exit)':<40} {'median s':>9} {'max s':>7}")
    for name, values in times.items():
        print(f"melanoma-mlops {name:<25} {statistics.median(values):>9.2f} {max(values):>7.2f}")
    print(f"{'python -c import melanoma_pipelines.cli':<40} {cli_import:>9.2f}")
    print(f"{'python -c import tensorflow':<40} {tf_import:>9.2f}   (what promote no longer pays)")
    print(
        f"one move in-process: locked + recorded {locked * 1000:.0f} ms, "
        f"bare alias move {bare * 1000:.0f} ms ({locked / bare:.1f}x)"
    )


def run_code(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
