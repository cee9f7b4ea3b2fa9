"""User-facing errors: each one names the file or value at fault and what to do about it.

The CLI prints these as one clear message and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class MelanomaError(Exception):
    """Base class of errors whose message is meant for the user, not for a developer."""

    exit_code = 2


class DataError(MelanomaError):
    """The data source is missing, malformed or fails validation."""


class ConfigError(MelanomaError):
    """An option or parameter is out of range or inconsistent."""


class WeightsError(MelanomaError):
    """Pretrained weights cannot be loaded (no network, wrong file)."""


class LeakageError(DataError):
    """The same image, lesion or patient appears in more than one of train/validation/test."""


class GateError(MelanomaError):
    """A quality gate refused the model."""


class AccessError(MelanomaError):
    """The tracking server's authentication refuses this user the action (basic-auth permissions)."""
