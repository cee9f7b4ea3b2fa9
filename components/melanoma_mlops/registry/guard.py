"""The registration guard: nothing trained by the ablation's leaky negative control reaches the registry.

The leaky control reproduces the published protocol's oversample-then-split on purpose, to measure
how much the leak inflates the metrics. Its models were tested on copies of their training images,
so register refuses them and promotion refuses them again (even with ``--force``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from melanoma_mlops.artifacts import LEAKY_LABEL, LEAKY_TAG, PARENT_TAG
from melanoma_mlops.errors import LeakageError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class LeakyRunError(LeakageError):
    """A run of the leaky negative control (or one nested under it) was about to be registered."""


def _is_true(value: str | None) -> bool:
    return str(value or "").strip().lower() == "true"


def assert_registrable(run_id: str, client: MlflowClient | None = None) -> None:
    """Refuse to register anything produced by the leaky control.

    Walks from ``run_id`` up the ``mlflow.parentRunId`` chain and raises :class:`LeakyRunError`
    if any run on it is tagged ``leaky=true``: a step run, a trial run and anything nested under
    them inherit the verdict, so tagging the trial once is enough. ``register_step`` calls this
    first; the ablation pipeline has no register step at all, so this guards against a human or a
    script registering a leaky model by hand.
    """
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    seen: set[str] = set()
    current: str | None = run_id
    while current and current not in seen:
        seen.add(current)
        run = client.get_run(current)
        if _is_true(run.data.tags.get(LEAKY_TAG)):
            where = "" if current == run_id else f" (via its ancestor run {current})"
            raise LeakyRunError(
                f"run {run_id} belongs to the {LEAKY_LABEL} of the ablation{where}: its model was trained "
                "and tested on a split that puts copies of the same images in train and test (the published "
                "protocol's oversample-then-split). It exists to measure that leak and must never be "
                "registered or served. Register a model from the main pipeline (melanoma-mlops run)."
            )
        current = run.data.tags.get(PARENT_TAG) or None
