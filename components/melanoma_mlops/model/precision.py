"""Hardware-dependent switches of training: mixed precision, XLA and op determinism.

``--mixed-precision`` picks the Keras dtype policy from the hardware at hand:

* ``auto``: mixed precision only where it is known to speed training up: ``mixed_float16`` on
  NVIDIA GPUs of compute capability 7.0 or newer (tensor cores), ``mixed_bfloat16`` on CPUs with
  native bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``: measured 1.5x Stage 1 and 1.65x
  Stage 2 on an AMD EPYC with avx512_bf16, benchmarks/bench_training.py), ``float32`` otherwise
  (older GPUs, CPUs without bf16: there float16 is ~5x *slower* than float32).
* ``on``: mixed precision in the hardware's kind even without a known benefit (float16 on a GPU,
  bfloat16 on a CPU).
* ``off``: float32.
* ``float16`` / ``bfloat16``: that mixed policy, whatever the hardware.

``--deterministic`` (``auto``: on without a GPU) turns on TensorFlow's op determinism, so the same
seed gives bit-identical training on a CPU. GPUs are left out of ``auto`` on purpose: several cuDNN
kernels have no deterministic variant or a slow one, and XLA's autotuning picks kernels by timing.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic that oneDNN uses.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Tensor cores (float16 matrix units) start with compute capability 7.0 (Volta).
FLOAT16_MIN_CAPABILITY = (7, 0)
POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def gpus() -> list[object]:
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def gpu_present() -> bool:
    return bool(gpus())


def switch(value: str) -> bool:
    """Resolve an auto/on/off option: ``auto`` means on exactly when a GPU is visible."""
    return gpu_present() if value == "auto" else value == "on"


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return frozenset()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool(BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability (major, minor) of every visible GPU; (0, 0) when TensorFlow cannot say."""
    import tensorflow as tf

    out = []
    for device in gpus():
        details = tf.config.experimental.get_device_details(device)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def choose_dtype(mixed_precision: str, *, gpu_capability: list[tuple[int, int]], cpu_bf16: bool) -> str:
    """``float32`` | ``float16`` | ``bfloat16`` for an option value and the hardware (pure)."""
    if mixed_precision in ("float16", "bfloat16"):
        return mixed_precision
    if mixed_precision == "off":
        return "float32"
    if gpu_capability:
        if mixed_precision == "on" or min(gpu_capability) >= FLOAT16_MIN_CAPABILITY:
            return "float16"
        return "float32"
    if cpu_bf16 or mixed_precision == "on":
        return "bfloat16"
    return "float32"


def resolve_dtype(mixed_precision: str) -> str:
    """The compute dtype an option value means on this machine."""
    capability = gpu_capabilities() if mixed_precision in ("auto", "on") else []
    return choose_dtype(mixed_precision, gpu_capability=capability, cpu_bf16=cpu_has_bf16())


def set_precision(mixed_precision: str) -> str:
    """Set Keras' global dtype policy before a model is built or loaded; return the policy name.

    Mixed policies compute in float16/bfloat16 with float32 weights; for float16 Keras wraps the
    optimizer in a LossScaleOptimizer on compile (bfloat16 has float32's range and needs none).
    The head's output layer stays float32.
    """
    import keras

    policy = POLICIES[resolve_dtype(mixed_precision)]
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resolve_deterministic(value: str) -> bool:
    """``auto``: deterministic on CPU only (see the module docstring); ``on`` / ``off``."""
    return not gpu_present() if value == "auto" else value == "on"


def set_determinism(value: str) -> bool:
    """Turn TensorFlow op determinism on for this process when asked; return whether it is on.

    There is no public switch back off (each pipeline step is a process of its own, so ``off``
    only means "not turned on here").
    """
    import tensorflow as tf

    on = resolve_deterministic(value)
    if on:
        tf.config.experimental.enable_op_determinism()
    return on
