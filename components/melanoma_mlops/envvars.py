"""Environment variables set for a block and put back afterwards (stdlib only).

The MLflow client, kfp.local's step subprocesses and the retry budget all read their settings from
the environment, so a run pins them there for its duration and must leave the caller's values as
they were, including "not set".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


def restore(saved: Mapping[str, str | None]) -> None:
    """Put back the values ``saved`` holds; a ``None`` value means the variable was not set."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def pinned(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ for the block; restore what was there before (set or not)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        restore(saved)
