"""What every component body calls: logging set up once, user errors turned into one clear line.

A component runs as its own process (a subprocess locally, a pod on a cluster), so this is that
process's entry point, the one place besides the CLI that configures logging.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from melanoma_mlops.errors import MelanomaError

T = TypeVar("T")
ERROR_FILE_ENV = "MELANOMA_ERROR_FILE"


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MELANOMA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def run_step(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a step function; a :class:`MelanomaError` ends the process with its message, no traceback.

    When ``MELANOMA_ERROR_FILE`` is set (the local runner sets it) the message is also written
    there, so the CLI can repeat it as the run's one-line outcome.
    """
    configure_logging()
    try:
        return fn(*args, **kwargs)
    except MelanomaError as exc:
        logging.getLogger(f"melanoma.{step}").error("%s failed: %s", step, exc)
        path = os.environ.get(ERROR_FILE_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{step}: {exc}\n")
        raise SystemExit(exc.exit_code) from None
