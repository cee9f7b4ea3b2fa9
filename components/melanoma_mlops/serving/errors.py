"""The one error every refusal of a model input raises, and how its messages name the input.

Kept apart from the vetting modules (formats, headers, decoding, the input column) because all of
them raise it, and callers (the pyfunc, the app, the CLI) catch it without caring which refused.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from melanoma_mlops.errors import DataError


class InvalidImageError(DataError, MlflowException):
    """An input row is not an image the model accepts.

    A :class:`DataError` for Python callers and the CLI, and an ``MlflowException`` with
    ``INVALID_PARAMETER_VALUE`` so that ``mlflow models serve`` answers HTTP 400 with this message
    instead of a generic 'unexpected error' that hides it in a stack trace.

    MLflow's scoring server rewrites the message of any MlflowException raised by ``predict`` to
    ``f"Failed to predict data '{data}'. Error: {message}"`` - the repr of the whole input
    DataFrame, i.e. the caller's image bytes, echoed in the 400 body. ``message`` is therefore
    fixed at construction: later assignments are ignored, and the body carries our text only.
    """

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


def input_name(row: int | str) -> str:
    """How a message names the offending input: ``row 3`` for a row number, else the name given."""
    return f"row {row}" if isinstance(row, int) else str(row)
