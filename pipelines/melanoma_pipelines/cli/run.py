"""``melanoma-mlops run`` (the DAG under kfp.local) and ``demo-data`` (the SYNTHETIC demo set)."""

from __future__ import annotations

import argparse
import logging

from melanoma_mlops import config as cfg
from melanoma_pipelines.cli.options import add_config_options, check_local_data, data_and_config
from melanoma_pipelines.containers import CPU_IMAGE, DEFAULT_MLFLOW_PORT
from melanoma_pipelines.params import MAIN_GROUPS

logger = logging.getLogger(__name__)
SYNTHETIC_FOOTER = (
    "(trained and evaluated on SYNTHETIC demo data: the figures say nothing about real dermoscopy)"
)


def cmd_run(args: argparse.Namespace) -> int:
    from melanoma_pipelines.local import DockerSettings, run_local
    from melanoma_pipelines.results import summary_lines

    data, config = data_and_config(args)
    check_local_data(data)
    docker = None
    if args.runner == "docker":
        docker = DockerSettings(
            image=args.image,
            mlflow_port=args.mlflow_port,
            artifacts_destination=args.mlflow_artifacts,
        )
    result = run_local(config, data, pipeline_root=args.pipeline_root, run_name=args.run_name, docker=docker)
    print("\n".join(summary_lines(result)))
    if not args.data:
        print(SYNTHETIC_FOOTER)
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from melanoma_mlops.data import demo

    summary = demo.generate(args.out, n=args.n, size=args.size, seed=args.seed)
    print(
        f"{demo.SYNTHETIC_NOTE}\n"
        f"wrote {summary.n_benign} benign + {summary.n_malignant} malignant to {summary.out_dir}"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the pipeline locally (kfp.local); no --data: synthetic demo")
    run.add_argument("--data", default="", help="data folder, manifest/metadata CSV, or s3://bucket/prefix")
    run.add_argument(
        "--run-name", default=None, help="MLflow parent run name (default: two-stage-<timestamp>)"
    )
    run.add_argument("--pipeline-root", default="local_outputs", help="where kfp.local keeps step outputs")
    runner = run.add_argument_group("where the steps run")
    runner.add_argument(
        "--runner",
        choices=("local", "docker"),
        default="local",
        help="local: each step a subprocess of this virtualenv; docker: each step a container of --image "
        "(kfp.local.DockerRunner), tracking to an MLflow server container (default: local)",
    )
    runner.add_argument(
        "--image", default=CPU_IMAGE, help=f"with --runner docker: the step image (default: {CPU_IMAGE})"
    )
    runner.add_argument(
        "--mlflow-port",
        type=int,
        default=DEFAULT_MLFLOW_PORT,
        help="with --runner docker and no MLFLOW_TRACKING_URI=http(s)://...: the port of the MLflow server "
        f"container started on 127.0.0.1 (default: {DEFAULT_MLFLOW_PORT}; its store is ./mlruns-docker/)",
    )
    runner.add_argument(
        "--mlflow-artifacts",
        default="",
        help="with --runner docker: where that server stores the proxied artifacts, e.g. s3://bucket/prefix "
        "(AWS_* and MLFLOW_S3_ENDPOINT_URL from this environment; default: ./mlruns-docker/artifacts)",
    )
    run.add_argument(
        "--demo-images", type=int, default=cfg.DEMO_IMAGES, help="images in the generated demo set"
    )
    add_config_options(run, MAIN_GROUPS)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo-data", help="generate a SYNTHETIC dermoscopy-like dataset with lesion masks")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--n", type=int, default=cfg.DEMO_IMAGES, help="number of images")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo_data)
