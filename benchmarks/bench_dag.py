"""Orchestration overhead of the local DAG: the default demo under kfp.local vs the same nine step
functions called one after another in one process (imports done before the clock starts).

overhead = kfp.local wall - the steps' own work (the in-process sum). Per step it prints how long
the step's own MLflow run lasted under kfp.local and in-process, and the gap before it under
kfp.local: process start, ``import``s and kfp.local's executor before the step's work begins.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
STEPS = ("validate", "split", "oversample", "stage1", "stage2", "evaluate", "gradcam", "register", "promote")


def in_process(config, data: str, work: Path) -> dict[str, float]:
    """Each step function in turn, timed; returns seconds per step."""
    from melanoma_mlops.steps.evaluate import evaluate_step
    from melanoma_mlops.steps.gradcam import gradcam_step
    from melanoma_mlops.steps.oversample import oversample_step
    from melanoma_mlops.steps.promote import gate_step
    from melanoma_mlops.steps.register import register_step
    from melanoma_mlops.steps.split import split_step
    from melanoma_mlops.steps.train import stage1_step, stage2_step
    from melanoma_mlops.steps.validate import validate_step

    p = {
        name: str(work / name)
        for name in ("manifest", "docs", "train", "val", "test", "balanced", "m1", "m2", "eval", "cam")
    }
    (work / "report.html").parent.mkdir(parents=True, exist_ok=True)
    t, c = config.training, config
    out: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        out[name] = time.perf_counter() - start
        return result

    parent = timed("validate", validate_step, data, p["manifest"], p["docs"], str(work / "report.html"),
                   min_image_size=c.data.min_image_size, run_name="in-process")  # fmt: skip
    timed("split", split_step, p["manifest"], p["train"], p["val"], p["test"], parent_run_id=parent,
          val_fraction=c.data.val_fraction, test_fraction=c.data.test_fraction, seed=c.seed)  # fmt: skip
    timed(
        "oversample",
        oversample_step,
        p["train"],
        p["val"],
        p["test"],
        p["balanced"],
        parent_run_id=parent,
        seed=c.seed,
    )
    timed("stage1", stage1_step, p["balanced"], p["val"], p["m1"], parent_run_id=parent, cfg=t, seed=c.seed)
    timed(
        "stage2",
        stage2_step,
        p["m1"],
        p["balanced"],
        p["val"],
        p["m2"],
        parent_run_id=parent,
        cfg=t,
        seed=c.seed,
    )
    timed("evaluate", evaluate_step, p["m2"], p["val"], p["test"], p["eval"], parent_run_id=parent,
          image_size=t.image_size, batch_size=t.batch_size, cfg=c.evaluation, seed=c.seed,
          image_cache=t.image_cache, shard_root=t.shard_root)  # fmt: skip
    timed("gradcam", gradcam_step, p["m2"], p["eval"], p["cam"], parent_run_id=parent,
          image_size=t.image_size, n_samples=c.explain.gradcam_samples, seed=c.seed,
          image_cache=t.image_cache, shard_root=t.shard_root)  # fmt: skip
    version = timed("register", register_step, p["m2"], p["eval"], p["cam"], p["train"], p["val"],
                    p["test"], parent_run_id=parent, model_name=c.gate.model_name)  # fmt: skip
    timed("promote", gate_step, p["eval"], p["test"], parent_run_id=parent, candidate_version=version,
          gate=c.gate, image_size=t.image_size, batch_size=t.batch_size)  # fmt: skip
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=0, help="demo images (default: the demo's own)")
    args = parser.parse_args()
    import mlflow

    from melanoma_mlops import tracking
    from melanoma_mlops.config import DEMO_IMAGES, DEMO_PRESET, RunConfig
    from melanoma_mlops.data import demo
    from melanoma_pipelines.local import run_local

    config = RunConfig.from_params(DEMO_PRESET)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "demo_data"
        demo.generate(data, n=args.images or DEMO_IMAGES)
        os.chdir(root)
        # 1. kfp.local: every step a subprocess (the default demo, `melanoma-mlops run`)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'kfp.db'}"
        start = time.perf_counter()
        run_local(config, str(data), pipeline_root=root / "local_outputs", run_name="kfp-local")
        kfp_wall = time.perf_counter() - start
        rows = kfp_steps("kfp-local")
        # 2. the same step functions in this process, imports paid before the clock starts
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'inproc.db'}"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        tracking.configure()
        import melanoma_mlops.steps.evaluate
        import melanoma_mlops.steps.gradcam
        import melanoma_mlops.steps.promote
        import melanoma_mlops.steps.register
        import melanoma_mlops.steps.train
        import melanoma_mlops.steps.validate  # noqa: F401

        own = in_process(config, str(data), root / "inproc")
    work = sum(own.values())
    overhead = kfp_wall - work
    print(f"default demo ({args.images or DEMO_IMAGES} images, {DEMO_PRESET['image_size']} px, "
          f"{DEMO_PRESET['stage1_epochs']}+{DEMO_PRESET['stage2_epochs']} epochs):")  # fmt: skip
    print(f"  kfp.local wall {kfp_wall:6.1f} s; the steps' own work in one process {work:6.1f} s")
    print(f"  overhead {overhead:6.1f} s = {100 * overhead / kfp_wall:.0f}% of the wall (target <= 20%)")
    print("  step        kfp.local run  in-process   gap before (process start, imports, executor)")
    previous_end = None
    for name, begin, end in rows:
        gap = begin - previous_end if previous_end is not None else float("nan")
        print(f"  {name:10s}  {end - begin:9.1f} s  {own.get(name, float('nan')):8.1f} s   {gap:6.1f} s")
        previous_end = end
    if rows:
        gaps = sum(rows[i][1] - rows[i - 1][2] for i in range(1, len(rows)))
        print(f"  gaps between steps: {gaps:.1f} s; before the first step and after the last: "
              f"{kfp_wall - (rows[-1][2] - rows[0][1]):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
