"""``melanoma-mlops compile`` and ``submit``: the same DAG for a Kubeflow Pipelines cluster."""

from __future__ import annotations

import argparse

from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import PIPELINES
from melanoma_pipelines.cli.options import (
    add_cluster_options,
    add_config_options,
    cluster_from_args,
    config_from_args,
)
from melanoma_pipelines.params import MAIN_GROUPS


def cmd_compile(args: argparse.Namespace) -> int:
    from melanoma_pipelines.compile import compile_pipeline

    path = compile_pipeline(
        args.output, image=args.image, cluster=cluster_from_args(args), pipeline=args.pipeline
    )
    print(f"wrote {path}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from melanoma_pipelines.dag import default_run_name, pipeline_arguments
    from melanoma_pipelines.submit import submit

    if not args.host and not args.dry_run:
        raise ConfigError(
            "--host is required (the KFP API, e.g. http://127.0.0.1:8080), or use --dry-run PATH"
        )
    run_name = args.run_name or default_run_name()
    arguments = pipeline_arguments(config_from_args(args), args.data, run_name=run_name)
    result = submit(
        args.host,
        arguments,
        image=args.image,
        cluster=cluster_from_args(args),
        experiment=args.experiment,
        run_name=run_name,
        namespace=args.namespace,
        dry_run=args.dry_run,
    )
    print(f"wrote {result} (not submitted)" if args.dry_run else f"submitted run {run_name}: {result}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    comp = sub.add_parser("compile", help="write the KFP IR YAML of the pipeline")
    comp.add_argument("--output", "-o", default="pipeline.yaml", help="output YAML path")
    comp.add_argument(
        "--pipeline",
        choices=PIPELINES,
        default=PIPELINES[0],
        help="two-stage (training, the default), ablation (its default trials; `ablation --compile` "
        "chooses them) or external-validation (`evaluate` as a pipeline: docs/evaluation.md)",
    )
    add_cluster_options(comp)
    comp.set_defaults(func=cmd_compile)

    sm = sub.add_parser("submit", help="compile and submit a run to a Kubeflow Pipelines host")
    sm.add_argument("--host", default="", help="KFP API endpoint (auth token from $KFP_TOKEN)")
    sm.add_argument("--data", required=True, help="data source as the cluster sees it (s3://bucket/prefix)")
    sm.add_argument("--experiment", default="melanoma-two-stage", help="KFP experiment name")
    sm.add_argument("--run-name", default=None, help="KFP run and MLflow parent run name")
    sm.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    sm.add_argument(
        "--dry-run",
        metavar="PATH",
        default=None,
        help="write the package that would be submitted, and its arguments as PATH.arguments.json",
    )
    add_cluster_options(sm)
    add_config_options(sm, MAIN_GROUPS)
    sm.set_defaults(func=cmd_submit)
