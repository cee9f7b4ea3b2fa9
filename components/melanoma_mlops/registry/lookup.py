"""Reading the registry for a move: a version, the version behind an alias, a model's tags.

A missing version or model the user named is a :class:`GateError` (a message, not a traceback); a
missing alias is ``None`` (no champion yet is a normal state).
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking_client
from melanoma_mlops.errors import GateError


def get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        store = tracking_client.tracking_uri()
        raise GateError(f"{model_name} has no version {version!r} in {store}") from exc


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        client.get_model_version(model_name, version)
    except MlflowException:
        return False
    return True


def model_tags(client: MlflowClient, model_name: str) -> dict[str, str]:
    """The registered model's tags (where the record and the history live)."""
    try:
        return dict(client.get_registered_model(model_name).tags)
    except MlflowException as exc:
        raise GateError(f"no registered model {model_name!r} in {tracking_client.tracking_uri()}") from exc


def version_of_uri(client: MlflowClient, model_uri: str) -> ModelVersion:
    """The version a ``models:/name@alias`` or ``models:/name/N`` URI names.

    Raises MlflowException when the registry has no such version, ValueError for another form;
    callers word the message for their user.
    """
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, number = ref.split("/", 1)
    return client.get_model_version(name, number)
