"""``melanoma-mlops run`` (the DAG under kfp.local), ``run --resume`` and ``demo-data``."""

from __future__ import annotations

import argparse
import logging

from melanoma_mlops import config as cfg
from melanoma_mlops import storage
from melanoma_mlops.data.demo import DEFAULT_DIFFICULTY
from melanoma_mlops.data.demo import LAYOUTS as DEMO_LAYOUTS
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.tracking_client import DEFAULT_OUTAGE_WINDOW_S, OUTAGE_ENV, OUTAGE_PARAM
from melanoma_pipelines.cli.options import (
    DEMO_DIR,
    add_config_options,
    check_local_data,
    check_run_name,
    data_and_config,
)
from melanoma_pipelines.containers import CPU_IMAGE, DEFAULT_MLFLOW_PORT
from melanoma_pipelines.params import MAIN_GROUPS

logger = logging.getLogger(__name__)
SYNTHETIC_FOOTER = (
    "(trained and evaluated on SYNTHETIC demo data: the figures say nothing about real dermoscopy)"
)
KEEP_OUTPUTS = 3


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more seconds")
    return value


def _set_options(args: argparse.Namespace) -> list[str]:
    """The configuration options given on the command line (``--resume`` takes none)."""
    given = [f"--{cfg.option_name(n)}" for n in cfg.field_names() if getattr(args, n, None) is not None]
    return given + (["--data"] if args.data else []) + (["--run-name"] if args.run_name else [])


def cmd_run(args: argparse.Namespace) -> int:
    from melanoma_pipelines.local import DockerSettings, run_local
    from melanoma_pipelines.parent_run import run_name_for
    from melanoma_pipelines.results import summary_lines

    docker = None
    if args.runner == "docker":
        docker = DockerSettings(
            image=args.image, mlflow_port=args.mlflow_port, artifacts_destination=args.mlflow_artifacts
        )
    if args.resume:
        given = _set_options(args)
        if given:
            raise ConfigError(
                f"--resume continues a run with its own settings: drop {', '.join(given)} "
                "(or start a new run with them)"
            )
        result = run_local(
            cfg.RunConfig(),
            "",
            pipeline_root=args.pipeline_root,
            resume=args.resume,
            verbose=args.verbose,
            keep_outputs=args.keep_outputs,
            docker=docker,
            warm=args.runner == "local",
        )
    else:
        data, config = data_and_config(args)
        check_local_data(data)
        data = storage.normalize(data)  # absolute: recorded in MLflow, reused by --resume
        if args.run_name:
            check_run_name(args.run_name)
        baseline = cfg.RunConfig() if args.data else cfg.RunConfig.from_params(cfg.DEMO_PRESET)
        run_name = args.run_name or run_name_for(config, baseline, args.data)
        result = run_local(
            config,
            data,
            pipeline_root=args.pipeline_root,
            run_name=run_name,
            verbose=args.verbose,
            keep_outputs=args.keep_outputs,
            docker=docker,
            warm=args.runner == "local",
        )
    print("\n".join(summary_lines(result)))
    if result.synthetic:
        print(SYNTHETIC_FOOTER)
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from melanoma_mlops.data import demo, demo_clinic, demo_outcomes

    if args.clinic == 2:
        if args.layout is not None:
            raise ConfigError("--layout: clinic 2 is always written as a manifest CSV (labels.csv)")
        summary = demo_clinic.generate(
            args.out, args.source, n=args.n or 300, seed=args.seed, difficulty=args.difficulty
        )
        where = f"; {summary.n_reuploads} planted re-uploads of {args.source} in {demo_clinic.PLANTED_FILE}"
    else:
        summary = demo.generate(
            args.out, n=args.n or cfg.DEMO_IMAGES, size=args.size, seed=args.seed,
            difficulty=args.difficulty, layout=args.layout or DEMO_LAYOUTS[0],
        )  # fmt: skip
        where = ""
    print(
        f"{demo.SYNTHETIC_NOTE}\n"
        f"wrote {summary.n_benign} benign + {summary.n_malignant} malignant to {summary.out_dir}{where}"
    )
    if args.outcomes:
        n = demo_outcomes.write(summary.out_dir, args.outcomes)
        print(f"wrote the biopsy outcomes of {n} images (sha256, label) to {args.outcomes}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the pipeline locally (kfp.local); no --data: synthetic demo")
    run.add_argument("--data", default="", help="data folder, manifest/metadata CSV, or s3://bucket/prefix")
    run.add_argument(
        "--run-name",
        default=None,
        help="MLflow parent run name (default: 'two-stage' plus the options that differ from the "
        "defaults, e.g. 'two-stage lr2=3e-05 seed=7')",
    )
    run.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a killed or failed run (MLflow run id or name) into the same MLflow run: "
        "finished steps are reused, training continues from its last checkpointed epoch",
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # the global -v stays in force when this one is not given
        help="show every line the steps print (kfp's executor input, TensorFlow's banners, Keras)",
    )
    run.add_argument("--pipeline-root", default="local_outputs", help="where kfp.local keeps step outputs")
    run.add_argument(
        "--mlflow-outage-window",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long an MLflow tracking server that stops answering is waited for (retrying with backoff) "
        "before the run fails; a runtime setting like MLFLOW_TRACKING_URI, logged as the param "
        f"{OUTAGE_PARAM} (default: ${OUTAGE_ENV} or {DEFAULT_OUTAGE_WINDOW_S})",
    )
    runner = run.add_argument_group("where the steps run")
    runner.add_argument(
        "--runner",
        choices=("local", "subprocess", "docker"),
        default="local",
        help="local: each step a process of this virtualenv, forked from one that imported TensorFlow "
        "and MLflow once; subprocess: each step a new Python process (kfp.local's own way, slower); "
        "docker: each step a container of --image (kfp.local.DockerRunner), tracking to an MLflow "
        "server container (default: local)",
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
        "--keep-outputs",
        type=int,
        default=KEEP_OUTPUTS,
        metavar="N",
        help=f"after the run, keep the outputs of the newest N local runs in --pipeline-root and delete "
        f"older ones (-1 keeps all; default {KEEP_OUTPUTS})",
    )
    run.add_argument(
        "--demo-images", type=int, default=cfg.DEMO_IMAGES, help="images in the generated demo set"
    )
    add_config_options(run, MAIN_GROUPS)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo-data", help="generate a SYNTHETIC dermoscopy-like dataset with lesion masks")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument(
        "--n", type=int, default=None, help=f"number of images (default {cfg.DEMO_IMAGES}; clinic 2: 300)"
    )
    demo.add_argument("--size", type=int, default=128, help="image side in pixels (clinic 1; clinic 2: 96)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--difficulty",
        type=float,
        default=DEFAULT_DIFFICULTY,
        help="class overlap of the lesions' latent atypia: 0 = trivially separable; the default gives the "
        f"demo pipeline a test AUC of about 0.85-0.93 (default: {DEFAULT_DIFFICULTY})",
    )
    demo.add_argument(
        "--layout",
        choices=DEMO_LAYOUTS,
        default=None,
        help="isic: an ISIC Archive-style export (metadata.csv, several images per lesion, patients, masks); "
        "folder: benign/ malignant/ class folders, one image per lesion (default: isic; clinic 1 only)",
    )
    demo.add_argument(
        "--clinic",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: the demo set run trains on; 2: another clinic for external validation (phone "
        "dermatoscope, skin types I-VI, a manifest CSV, and a few planted re-uploads of clinic 1's "
        "images listed in planted_overlaps.json)",
    )
    demo.add_argument(
        "--from",
        dest="source",
        default=DEMO_DIR,
        help=f"with --clinic 2: the clinic-1 demo set whose images it re-uploads (default: {DEMO_DIR}, "
        "where run writes it)",
    )
    demo.add_argument(
        "--outcomes",
        default=None,
        metavar="FILE.csv",
        help="also write every image's true label keyed by the sha256 of its bytes: the biopsy results "
        "`melanoma-mlops outcomes` reads, once the images have been scored",
    )
    demo.set_defaults(func=cmd_demo_data)
