"""basic-auth's configuration: the packaged ``basic_auth.ini`` template rendered with its placeholders
filled, and secrets read from files (a mounted Kubernetes Secret) rather than the environment.

Standard library only, like the rest of the package (the MLflow server image has no TensorFlow).
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path

from .errors import ServerConfigError

AUTH_TEMPLATE_FILE = "basic_auth.ini"
DEFAULT_AUTH_DATABASE_URI = "sqlite:///mlruns/basic_auth.db"
# The value of the template's ${MLFLOW_AUTH_DATABASE_URI}.
ENV_AUTH_DATABASE_URI = "MLFLOW_AUTH_DATABASE_URI"


def default_auth_template() -> Path | None:
    """The basic-auth template shipped as package data beside this module (None if it was stripped)."""
    candidate = Path(__file__).resolve().parent / AUTH_TEMPLATE_FILE
    return candidate if candidate.is_file() else None


def read_secret_file(env: Mapping[str, str], name: str) -> str | None:
    """The content of the file named by ``env[name]`` (stripped), or None when ``name`` is unset."""
    path = env.get(name, "").strip()
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServerConfigError(f"{name}={path}: cannot read the file ({exc.strerror or exc})") from exc
    if not value:
        raise ServerConfigError(f"{name}={path}: the file is empty")
    if "\n" in value or "\r" in value:
        raise ServerConfigError(f"{name}={path}: the secret must be one line")
    return value


def render_auth_config(
    template: Path, out_dir: Path, env: Mapping[str, str], admin_password: str | None = None
) -> Path:
    """Write the basic-auth config with its ``${VAR}`` placeholders filled from ``env``.

    The file can hold the auth database password and, with ``admin_password`` (read from
    ``MLFLOW_AUTH_ADMIN_PASSWORD_FILE``), the admin's first password, so it is written to a private
    (0700) directory with mode 0600 and never to the repository. MLflow reads no environment
    variables inside the ini file itself, hence this rendering step.
    """
    values = {ENV_AUTH_DATABASE_URI: DEFAULT_AUTH_DATABASE_URI, **env}
    try:
        text = string.Template(template.read_text()).substitute(values)
    except KeyError as exc:
        raise ServerConfigError(f"{template} needs the environment variable {exc.args[0]}") from exc
    except ValueError as exc:  # a stray "$" in the template
        raise ServerConfigError(f"{template} has a malformed placeholder: {exc}") from exc
    if admin_password is not None:
        if "[mlflow]" not in text:
            raise ServerConfigError(f"{template} has no [mlflow] section to hold admin_password")
        # configparser interpolates "%": doubled, it reads back as one.
        line = f"admin_password = {admin_password.replace('%', '%%')}"
        text = text.replace("[mlflow]", f"[mlflow]\n{line}", 1)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = out_dir / "basic_auth.ini"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return target
