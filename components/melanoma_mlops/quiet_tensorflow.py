"""TensorFlow's and absl's start-up banners kept off the console (stdlib only: call before importing).

TensorFlow's C++ logging (the CPU-instruction notice, oneDNN's, XLA's "could not find cuda
drivers") honours ``TF_CPP_MIN_LOG_LEVEL`` only when it is set before TensorFlow is imported; its
Python side logs through absl, which prints "WARNING: All log messages before absl::InitializeLog()
..." and its own records unless absl's Python logger is quietened. oneDNN stays on (turning it off
to hide its notice makes Stage 2 about 2x slower, DESIGN.md). ``--verbose`` and an explicit
``TF_CPP_MIN_LOG_LEVEL`` win: this only sets defaults.
"""

from __future__ import annotations

import logging
import os

#: 2 = warnings and informational messages off, errors shown.
DEFAULT_LEVEL = "2"


def silence() -> None:
    """Set the defaults that keep TensorFlow's and absl's banners off stderr (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    # absl's Python handler: TensorFlow's Python logs ("tensorflow" logger) go through it.
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
