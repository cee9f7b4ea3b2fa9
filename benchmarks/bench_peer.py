"""Our training code against the paper's as published, epoch for epoch, at equal precision.

Two arms train the same JPEGs (600x450, resized to ``--size``) with the same batch:

* **ours**: the project's own code path (``schedules.prepare_model`` + ``training.prepare``: the
  decoded-image store, augmentation in the training model, frozen BatchNorm folded into the
  convolutions, Stage 1's cached validation), with its shipped settings (op determinism ``auto``,
  XLA ``auto``, oneDNN switched on by the package);
* **paper**: ``paper_arm.py``, the paper's pipeline and model written from its description.

Each arm lives in a worker process of its own (precision policies, op determinism and TensorFlow's
oneDNN switch are process-wide) and the two alternate epoch by epoch (ours, paper, paper, ours, ...),
each epoch one pass over the training images plus validation, so background load hits both alike.
Every block (stage x precision) starts with one untimed epoch per arm (graph building; for ours at
Stage 1 also decoding into the store) and then ``--repeats`` timed epochs each.

Blocks: Stage 1 and Stage 2 in float32 and in mixed bfloat16, the paper on the same TensorFlow
runtime as ours (equal precision, equal runtime); then ours as shipped (``--mixed-precision auto``)
against the paper as published (float32, TensorFlow's own defaults). The last line is
``ours/paper at equal precision: stage1 X.XXx, stage2 Y.YYx`` (medians over the repeats, the lower
of float32 and bfloat16 per stage).
"""

from __future__ import annotations

import os

INHERITED_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")  # before any import can set it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from peer_workers import serve  # noqa: E402

DIFFERENCES = """What differs between the arms (besides speed):
  - augmentation: ours flips both axes, rotates (up to 90 degrees either way), zooms (+-10%) and
    changes contrast, on the training device in one resampling; the paper flips left-right and
    changes brightness and saturation in tf.data. Ours does more augmentation work per image.
  - head: ours GAP -> dropout 0.5 -> Dense(1); the paper's GAP -> Dense(1024, relu) -> Dense(1).
  - BatchNorm: ours stays in inference mode in both stages (--bn-inference, the Keras transfer-learning
    advice) and is folded into the convolutions; the paper's trains in Stage 2 (batch statistics).
  - input: ours decodes each image once into memory (epoch 1) and gathers uint8 batches from it; the
    paper decodes, resizes and preprocesses every image every epoch.
  - validation: in Stage 1 ours scores the head on features computed once (the base is frozen); the
    paper runs the base over the validation images every epoch. Both report the same figures.
  - ours runs with op determinism on (the default on a CPU); the paper without."""


class Arm:
    """A worker process running one arm; ``call`` sends a command and waits for its answer."""

    def __init__(self, kind: str, env: dict[str, str | None], data: dict) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, kind, env, data), daemon=True)
        self.process.start()

    def call(self, command: str, **kwargs: object) -> dict:
        self.conn.send((command, kwargs))
        answer = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=60)


def block(ours: Arm, paper: Arm, stage: str, ours_precision: str, paper_precision: str, repeats: int) -> dict:
    """One stage at one precision pair: set both up, one untimed epoch each, then interleaved epochs."""
    info = {"ours": ours.call("setup", stage=stage, precision=ours_precision)}
    info["paper"] = paper.call("setup", stage=stage, precision=paper_precision)
    first = {"ours": ours.call("epoch"), "paper": paper.call("epoch")}
    runs: dict[str, list[dict]] = {"ours": [], "paper": []}
    for r in range(repeats):
        order = (("ours", ours), ("paper", paper)) if r % 2 == 0 else (("paper", paper), ("ours", ours))
        for name, arm in order:
            runs[name].append(arm.call("epoch"))
    ratios = [o["rate"] / p["rate"] for o, p in zip(runs["ours"], runs["paper"], strict=True)]
    return {"info": info, "first": first, "runs": runs, "ratios": ratios}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(label: str, result: dict) -> str:
    runs, first = result["runs"], result["first"]
    ratios = result["ratios"]
    return (
        f"  {label:34s} {_median(runs['ours'], 'rate'):7.2f} {_median(runs['paper'], 'rate'):7.2f}   "
        f"{min(ratios):5.2f}x / {statistics.median(ratios):5.2f}x   "
        f"{_median(runs['ours'], 'cpu_ms'):6.0f} / {_median(runs['paper'], 'cpu_ms'):6.0f}   "
        f"{first['ours']['rate']:6.2f} / {first['paper']['rate']:6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per arm and block")
    parser.add_argument("--precisions", default="float32,bfloat16", help="comma-separated: float32, bfloat16")
    parser.add_argument("--stages", default="stage1,stage2")
    parser.add_argument("--skip-shipped", action="store_true", help="skip ours as shipped vs as published")
    args = parser.parse_args()
    from bench_input import write_jpegs

    from melanoma_mlops.model import precision

    native_bf16 = precision.cpu_has_bf16()
    stages = args.stages.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        df = write_jpegs(Path(tmp), args.train_images + args.val_images)
        train = df.iloc[: args.train_images].to_dict("list")
        val = df.iloc[args.train_images :].to_dict("list")
        data = {"train": train, "val": val, "size": args.size, "batch": args.batch, "tmp": tmp}
        restore = {"TF_ENABLE_ONEDNN_OPTS": INHERITED_ONEDNN}
        ours = Arm("ours", restore, data)
        runtime = ours.call("runtime")
        paper = Arm("paper", {"TF_ENABLE_ONEDNN_OPTS": runtime["onednn_env"]}, data)
        print(
            f"{args.size} px, batch {args.batch}, {args.train_images} train + {args.val_images} val JPEGs "
            f"(600x450), {args.repeats} interleaved epochs per arm and block; {os.cpu_count()} CPUs "
            f"(native bf16: {'yes' if native_bf16 else 'no'}); oneDNN: ours {runtime['onednn']}, paper at "
            f"equal runtime {paper.call('runtime')['onednn']}; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        print("  block                              img/s: ours   paper   ours/paper min / median   "
              "CPU ms/img ours / paper   epoch 1 img/s ours / paper", flush=True)  # fmt: skip
        start, equal = time.perf_counter(), {}
        for prec in args.precisions.split(","):
            for stage in stages:
                result = block(ours, paper, stage, prec, prec, args.repeats)
                equal[(stage, prec)] = statistics.median(result["ratios"])
                print(report(f"{stage} {prec} (equal precision)", result), flush=True)
        paper.close()
        lines = []
        if not args.skip_shipped:
            published = Arm("paper", restore | {"TF_ENABLE_ONEDNN_OPTS": INHERITED_ONEDNN}, data)
            published_onednn = published.call("runtime")["onednn"]
            for stage in stages:
                result = block(ours, published, stage, "auto", "float32", args.repeats)
                policy = result["info"]["ours"]["policy"]
                print(report(f"{stage} shipped ({policy}) vs published", result), flush=True)
                lines.append(f"{stage} {statistics.median(result['ratios']):.2f}x")
            published.close()
            print(f"ours as shipped (--mixed-precision auto: {policy}; oneDNN {runtime['onednn']}) / the "
                  f"paper as published (float32; oneDNN {published_onednn}, TensorFlow's default on this "
                  f"CPU): {', '.join(lines)}")  # fmt: skip
        ours.close()
    print(f"({time.perf_counter() - start:.0f} s; load average now {os.getloadavg()[0]:.1f})")
    print(DIFFERENCES)
    if not native_bf16 and "bfloat16" in args.precisions:
        print("note: this CPU has no native bfloat16 (avx512_bf16/amx_bf16): bf16 is emulated, slower "
              "than float32 in both arms, and --mixed-precision auto does not pick it here.")  # fmt: skip
    heads = [f"{s} {min(v for (st, _), v in equal.items() if st == s):.2f}x" for s in stages]
    print(f"ours/paper at equal precision: {', '.join(heads)}")


if __name__ == "__main__":
    main()
