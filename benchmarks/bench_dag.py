"""Orchestration overhead of the local DAG: the default demo under kfp.local against the same nine
step functions called one after another in one process, the two arms interleaved step by step.

Arm A is ``melanoma-mlops run``'s own code path (``run_local``: kfp.local, each step forked from the
warm process, or with ``--runner subprocess`` a new Python process per step). Arm B is one worker
process that imported every step before the clock starts and runs each step function itself, on its
own MLflow store. They alternate: when kfp.local finishes a step, the benchmark pauses it and has the
worker run the same step, then lets kfp.local go on. So both arms see the same load at nearly the
same time, and

    overhead = arm A's wall (the pauses taken out) - arm B's time for the nine steps.

Per step it prints how long the step's own MLflow run lasted under kfp.local and in the worker, and
the gap before it under kfp.local (process start or fork, imports, kfp.local's executor).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
STEPS = ("validate", "split", "oversample", "stage1", "stage2", "evaluate", "gradcam", "register", "promote")


class InProcess:
    """Arm B: the step functions in this process, each step's outputs feeding the next."""

    def __init__(self, config: Any, data: str, work: Path) -> None:
        import melanoma_mlops.steps.evaluate
        import melanoma_mlops.steps.gradcam
        import melanoma_mlops.steps.oversample
        import melanoma_mlops.steps.promote
        import melanoma_mlops.steps.register
        import melanoma_mlops.steps.split
        import melanoma_mlops.steps.train
        import melanoma_mlops.steps.validate  # noqa: F401 - imports before the clock

        self.c, self.data = config, data
        names = ("manifest", "docs", "train", "val", "test", "balanced", "m1", "m2", "eval", "cam")
        self.p = {name: str(work / name) for name in names}
        self.report = str(work / "report.html")
        self.parent, self.version = "", ""

    def run(self, step: str) -> float:
        from melanoma_mlops.steps import (
            evaluate,
            gradcam,
            oversample,
            promote,
            register,
            split,
            train,
            validate,
        )

        c, t, p, parent = self.c, self.c.training, self.p, self.parent
        start = time.perf_counter()
        if step == "validate":
            self.parent = validate.validate_step(self.data, p["manifest"], p["docs"], self.report, cfg=c.data,
                                                 run_name="in-process")  # fmt: skip
        elif step == "split":
            split.split_step(p["manifest"], p["train"], p["val"], p["test"], parent_run_id=parent, cfg=c.data,
                             seed=c.seed)  # fmt: skip
        elif step == "oversample":
            oversample.oversample_step(p["train"], p["val"], p["test"], p["balanced"], parent_run_id=parent,
                                       seed=c.seed)  # fmt: skip
        elif step == "stage1":
            train.stage1_step(p["balanced"], p["val"], p["m1"], parent_run_id=parent, cfg=t, seed=c.seed)
        elif step == "stage2":
            train.stage2_step(p["m1"], p["balanced"], p["val"], p["m2"], parent_run_id=parent, cfg=t,
                              seed=c.seed)  # fmt: skip
        elif step == "evaluate":
            evaluate.evaluate_step(p["m2"], p["val"], p["test"], p["eval"], parent_run_id=parent, training=t,
                                   cfg=c.evaluation, seed=c.seed)  # fmt: skip
        elif step == "gradcam":
            gradcam.gradcam_step(p["m2"], p["eval"], p["cam"], parent_run_id=parent, training=t,
                                 cfg=c.explain, seed=c.seed)  # fmt: skip
        elif step == "register":
            self.version = register.register_step(
                p["m2"], p["eval"], p["cam"], p["train"], p["val"], p["test"],
                parent_run_id=parent, model_name=c.gate.model_name,
            )  # fmt: skip
        elif step == "promote":
            promote.gate_step(p["eval"], p["test"], parent_run_id=parent, candidate_version=self.version,
                              gate=c.gate, training=t)  # fmt: skip
        return time.perf_counter() - start


def _worker(conn, tracking_uri: str, data: str, work: str) -> None:
    """Arm B's process: imports first, then one step per request."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from melanoma_mlops import tracking
    from melanoma_mlops.config import DEMO_PRESET, RunConfig

    tracking.configure()
    arm = InProcess(RunConfig.from_params(DEMO_PRESET), data, Path(work))
    conn.send("ready")
    while (step := conn.recv()) is not None:
        conn.send(arm.run(step))


def _step_name(command: list[str]) -> str:
    return command[command.index("--function_to_execute") + 1] if "--function_to_execute" in command else ""


class Interleaver:
    """Pauses arm A after each step to run the same step in arm B (the worker)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.own: dict[str, float] = {}
        self.paused = 0.0
        self.pause_before: dict[str, float] = {}

    def after(self, command: list[str], code: int) -> None:
        step = _step_name(command)
        if code != 0 or step not in STEPS:
            return
        start = time.perf_counter()
        self.conn.send(step)
        self.own[step] = self.conn.recv()
        self.pause_before[STEPS[STEPS.index(step) + 1] if step != STEPS[-1] else "end"] = (
            time.perf_counter() - start
        )
        self.paused += time.perf_counter() - start


def one_repeat(root: Path, data: Path, runner: str) -> dict[str, Any]:
    from kfp.local import subprocess_task_handler

    from melanoma_mlops.config import DEMO_PRESET, RunConfig
    from melanoma_pipelines import warm_steps
    from melanoma_pipelines.local import run_local

    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    worker = ctx.Process(
        target=_worker, args=(child, f"sqlite:///{root / 'inproc.db'}", str(data), str(root / "b"))
    )
    worker.start()
    assert conn.recv() == "ready"
    lanes = Interleaver(conn)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'kfp.db'}"
    if runner == "local":
        original, owner, name = warm_steps.WarmSteps.run, warm_steps.WarmSteps, "run"
        warm_steps.WarmSteps.run = lambda self, full_command, env_vars=None: _after(
            lanes, full_command, original(self, full_command, env_vars)
        )
    else:
        original, owner, name = (
            subprocess_task_handler.run_local_subprocess,
            subprocess_task_handler,
            "run_local_subprocess",
        )
        subprocess_task_handler.run_local_subprocess = lambda full_command, env_vars=None: _after(
            lanes, full_command, original(full_command=full_command, env_vars=env_vars)
        )
    try:
        start = time.perf_counter()
        run_local(RunConfig.from_params(DEMO_PRESET), str(data), pipeline_root=root / "outputs",
                  run_name="kfp-local", warm=runner == "local")  # fmt: skip
        wall = time.perf_counter() - start - lanes.paused
    finally:
        setattr(owner, name, original)
        conn.send(None)
        worker.join()
    return {
        "wall": wall,
        "own": lanes.own,
        "pause_before": lanes.pause_before,
        "rows": kfp_steps("kfp-local"),
    }


def _after(lanes: Interleaver, command: list[str], code: int) -> int:
    lanes.after(command, code)
    return code


def kfp_steps(run_name: str) -> list[tuple[str, float, float]]:
    """(step, start, end) of each step's MLflow run in a kfp.local run, in start order."""
    from mlflow.tracking import MlflowClient

    from melanoma_pipelines.results import find_parent_run

    parent = find_parent_run(run_name)
    client = MlflowClient()
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    rows = [(r.info.run_name, r.info.start_time / 1000, r.info.end_time / 1000) for r in runs]
    return sorted(rows, key=lambda r: r[1])


def report(result: dict[str, Any]) -> list[str]:
    work = sum(result["own"].values())
    overhead = result["wall"] - work
    lines = [
        f"  kfp.local wall {result['wall']:6.1f} s (pauses taken out); the steps' own work in one process "
        f"{work:6.1f} s",
        f"  overhead {overhead:6.1f} s = {100 * overhead / result['wall']:.0f}% of the wall (target <= 20%)",
        "  step        kfp.local run  in-process   gap before (process start or fork, imports, executor)",
    ]
    previous_end = None
    for name, begin, end in result["rows"]:
        gap = begin - previous_end - result["pause_before"].get(name, 0.0) if previous_end else float("nan")
        own = result["own"].get(name, float("nan"))
        lines.append(f"  {name:10s}  {end - begin:9.1f} s  {own:8.1f} s   {gap:6.1f} s")
        previous_end = end
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=0, help="demo images (default: the demo's own)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of the whole DAG")
    parser.add_argument(
        "--runner", choices=("local", "subprocess"), default="local",
        help="arm A's steps: forked from the warm process (default) or new processes",
    )  # fmt: skip
    args = parser.parse_args()
    from melanoma_mlops.config import DEMO_IMAGES, DEMO_PRESET
    from melanoma_mlops.data import demo

    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo_data"
        demo.generate(data, n=args.images or DEMO_IMAGES)
        epochs = f"{DEMO_PRESET['stage1_epochs']}+{DEMO_PRESET['stage2_epochs']}"
        print(f"default demo ({args.images or DEMO_IMAGES} images, {DEMO_PRESET['image_size']} px, "
              f"{epochs} epochs), steps {args.runner}; arms interleaved step by step; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        for r in range(args.repeats):
            root = Path(tmp) / f"r{r}"
            root.mkdir()
            os.chdir(root)
            result = one_repeat(root, data, args.runner)
            shares.append(1 - sum(result["own"].values()) / result["wall"])
            print("\n".join(report(result)), flush=True)
    each = ", ".join(f"{100 * s:.0f}%" for s in shares)
    median = 100 * statistics.median(shares)
    print(f"orchestration overhead, {args.runner} steps: {each} of the wall "
          f"(median {median:.0f}%; load average now {os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
