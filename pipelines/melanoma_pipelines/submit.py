"""Submit a compiled run to a Kubeflow Pipelines host and print its URL."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from melanoma_mlops.errors import MelanomaError

from .cluster import ClusterOptions
from .compile import compile_pipeline

logger = logging.getLogger(__name__)

TOKEN_ENV = "KFP_TOKEN"
SERVICE_ACCOUNT = "melanoma-pipeline-runner"


class SubmitError(MelanomaError):
    """The KFP host refused or could not be reached."""


def submit(
    host: str,
    arguments: dict[str, Any],
    *,
    image: str,
    cluster: ClusterOptions,
    experiment: str,
    run_name: str,
    namespace: str | None = None,
    service_account: str = SERVICE_ACCOUNT,
    dry_run: str | None = None,
) -> str:
    """Compile, then create a run; return the run's URL.

    With ``dry_run`` nothing is sent: the package is written to that path and the run's arguments
    (exactly what would be submitted, data and every option included) to ``<path>.arguments.json``;
    both paths are returned, separated by " and ".
    """
    if dry_run:
        path = compile_pipeline(dry_run, image=image, cluster=cluster)
        args_path = arguments_path(path)
        args_path.write_text(
            json.dumps({"run_name": run_name, "arguments": arguments}, indent=2, default=str)
        )
        return f"{path} and {args_path}"
    import kfp
    import kfp_server_api
    import urllib3

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", image=image, cluster=cluster)
        try:
            client = kfp.Client(
                host=host, existing_token=os.environ.get(TOKEN_ENV) or None, namespace=namespace
            )
            run = client.create_run_from_pipeline_package(
                str(package),
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                service_account=service_account,
            )
        except (OSError, ValueError, urllib3.exceptions.HTTPError, kfp_server_api.ApiException) as exc:
            raise SubmitError(
                f"could not submit to {host}: {exc}. Check --host (port-forward the KFP UI, "
                f"e.g. kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80) and {TOKEN_ENV}."
            ) from exc
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


def arguments_path(package: str | Path) -> Path:
    """Where a dry run writes the run's arguments: beside the package, ``<name>.arguments.json``."""
    return Path(package).with_suffix(".arguments.json")
