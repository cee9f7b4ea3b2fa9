"""``melanoma-mlops predict``: score image files and folders with a registered model.

It scores through the same pyfunc that ``mlflow models serve`` and the app use (default
``@champion``), so the command line cannot disagree with them; a file that cannot be scored is
reported and the others are still scored. Besides each file's probability and decision it says what
the version's frozen threshold means for benign lesions and whether the probability is calibrated,
from the version's own test figures (the same sentences as the app).

Fast to answer: TensorFlow is imported once, quietly (no banners), and only after every file was
checked from its header; the model is read straight from the registry's artifact store.
"""

from __future__ import annotations

import argparse
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

from melanoma_mlops import MODEL_NAME, tracking_client
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_pipelines.cli.store import use_tracking_store

logger = logging.getLogger(__name__)

DISCLAIMER = "Research software, not a diagnostic device: every result needs a clinician's judgement."


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict`` on the main parser's subcommands."""
    predict = subparsers.add_parser(
        "predict",
        help="score image files or folders with a registered model (default: @champion)",
        description="Score dermoscopic images with a model from the MLflow registry "
        "(MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db). Folders are searched recursively for "
        "files with the extensions of the formats the model accepts, leaving out the lesion masks "
        "of a data set's masks/ folders (name a masks folder itself to score it). "
        "A file that cannot be scored "
        "is reported and the rest are still scored; the exit status is then 1. " + DISCLAIMER,
    )
    predict.add_argument("images", nargs="+", metavar="PATH", help="image files and/or folders")
    source = predict.add_mutually_exclusive_group()
    source.add_argument(
        "--model-uri", default=None, help="any MLflow model URI (default: models:/MODEL_NAME@champion)"
    )
    source.add_argument("--version", default=None, help="a registered version number of --model-name")
    predict.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(func=cmd_predict)


#: Images scored per call of the model: bounds the bytes and decoded pixels held at once.
PREDICT_CHUNK = 16


def shown(path: Path | str) -> str:
    """A path as text that can always be printed (a non-UTF-8 name shows its bytes escaped)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ascii(text)[1:-1]
    return text


def is_mask(path: Path, folder: Path) -> bool:
    """Is ``path`` a lesion mask of a data set in ``folder``: below a ``masks/`` (or ``mask/``)
    subfolder, the data sources' rule (``MASK_FOLDERS``)? A demo or ISIC folder holds one per image."""
    from melanoma_mlops.data.sources.common import MASK_FOLDERS

    return bool(MASK_FOLDERS & {p.lower() for p in path.relative_to(folder).parts[:-1]})


def collect_images(paths: list[str]) -> tuple[list[Path], list[dict[str, str]], int]:
    """Files to score (folders searched recursively for image extensions), per-path errors, and how
    many lesion masks the folder search left out: a user scoring a data set's folder means its lesion
    images, and a mask scored as one would also enter the prediction log as a bogus prediction."""
    from melanoma_mlops.serving.formats import IMAGE_SUFFIXES

    files: list[Path] = []
    errors: list[dict[str, str]] = []
    masks = 0
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            images = [p for p in found if not is_mask(p, path)]
            masks += len(found) - len(images)
            if found and not images:
                error = "only lesion masks (below masks/) in this folder: name a masks folder to score it"
                errors.append({"file": shown(path), "error": error})
            elif not found:
                errors.append(
                    {"file": shown(path), "error": f"no {'/'.join(IMAGE_SUFFIXES)} files in this folder"}
                )
            files += images
        elif path.is_file():
            files.append(path)
        else:
            errors.append({"file": shown(path), "error": "no such file or folder"})
    return files, errors, masks


def read_image(path: Path) -> bytes:
    """The file's bytes, after checking from its header that it is an image the model accepts."""
    from melanoma_mlops.serving.headers import check_encoded

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from exc
    check_encoded(raw, shown(path))
    return raw


def _model_uri(args: argparse.Namespace) -> str:
    if args.model_uri:
        return args.model_uri
    if args.version:
        return f"models:/{args.model_name}/{args.version}"
    return f"models:/{args.model_name}@{CHAMPION}"


def _version_info(model_uri: str) -> dict[str, str]:
    """Registered version and its tags behind a models:/ URI (empty for other URIs)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry.lookup import version_of_uri

    if not model_uri.startswith("models:/"):
        return {}
    try:
        mv = version_of_uri(MlflowClient(), model_uri)
    except (MlflowException, ValueError) as exc:
        raise ConfigError(
            f"{model_uri} is not in the registry at {tracking_client.tracking_uri()}: {exc}"
        ) from exc
    return {"name": mv.name, "version": str(mv.version), **mv.tags}


def _model_notes(model_uri: str, info: dict[str, str]) -> dict[str, str | None]:
    """What the threshold means for benign lesions and whether the probability is calibrated: the
    app's sentences, from the version's tags (and its pipeline run for older versions)."""
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.app import champion as app_champion

    tags = {k: v for k, v in info.items() if k not in ("name", "version")}
    client = MlflowClient()
    run_metrics = app_champion.read_run_metrics(client, tags)
    entry = app_champion.RegistryEntry(
        model_uri=model_uri,
        pinned_uri=model_uri,
        version=info.get("version", ""),
        tags=tags,
        intervals=app_champion.read_intervals(client, tags, run_metrics),
        run_metrics=run_metrics,
    )
    return {
        "operating_point": app_champion.operating_point_text(entry),
        "calibration": app_champion.calibration_text(entry),
    }


def _error_text(exc: Exception, name: str) -> str:
    """The message of a per-file error without the file name (the report shows it in its own field)."""
    text = str(exc)
    return text.removeprefix(f"{name}: ") or text


def _score_chunk(loaded: Any, chunk: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """One row per file: a prediction, or the error that file alone raised."""
    import pandas as pd

    from melanoma_mlops.errors import MelanomaError

    try:
        result = loaded.predict(pd.DataFrame({"image": [raw for _, raw in chunk]}))
    except MelanomaError:
        if len(chunk) == 1:
            raise
        # One file is corrupt beyond its header: score each alone to find it, keep the others.
        rows = []
        for item in chunk:
            try:
                rows += _score_chunk(loaded, [item])
            except MelanomaError as exc:
                rows.append({"file": item[0], "error": _error_text(exc, "row 0")})
        return rows
    return [
        {
            "file": name,
            "probability": float(row.probability),
            "label": int(row.label),
            "class_name": str(row.class_name),
        }
        for (name, _), row in zip(chunk, result.itertuples(index=False), strict=True)
    ]


def predict_files(model_uri: str, paths: list[str]) -> dict[str, Any]:
    """Score every image in ``paths`` (files and folders) with the model at ``model_uri``.

    Returns the JSON ``predict --json`` prints: ``predictions`` for the files scored and
    ``errors`` (file, message) for the rest, in the order the files were found. Raises DataError
    when not a single file can be scored (before spending seconds loading the model).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from melanoma_mlops.errors import MelanomaError

    files, errors, masks = collect_images(paths)
    # Fail before the seconds of loading the model when not a single file can be scored.
    first = None
    for i, path in enumerate(files):
        try:
            read_image(path)
        except MelanomaError as exc:
            errors.append({"file": shown(path), "error": _error_text(exc, shown(path))})
        else:
            first = i
            break
    if first is None:
        raise DataError("nothing to score: " + "; ".join(f"{e['file']}: {e['error']}" for e in errors))
    from melanoma_mlops.serving import prediction_log

    info = _version_info(model_uri)
    notes = _model_notes(model_uri, info)
    prediction_log.serve_as("predict")  # every file scored gets a log record (docs/monitoring.md)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"cannot load {model_uri} from {tracking_client.tracking_uri()}: {exc}") from exc
    predictions: list[dict[str, Any]] = []
    remaining = files[first:]
    for start in range(0, len(remaining), PREDICT_CHUNK):
        chunk = []
        for path in remaining[start : start + PREDICT_CHUNK]:
            try:
                chunk.append((shown(path), read_image(path)))
            except MelanomaError as exc:
                errors.append({"file": shown(path), "error": _error_text(exc, shown(path))})
        for row in _score_chunk(loaded, chunk) if chunk else []:
            (errors if "error" in row else predictions).append(row)
    threshold = info.get("threshold") or (loaded.metadata.metadata or {}).get("threshold")
    prediction_log.flush_active()
    return {
        "model_uri": model_uri,
        "version": info.get("version", ""),
        "threshold": float(threshold) if threshold not in (None, "") else None,
        "predictions": predictions,
        "errors": errors,
        "masks_skipped": masks,
        **notes,
        "disclaimer": DISCLAIMER,
    }


def format_table(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`predict_files`'s report."""
    threshold = report["threshold"]
    head = f"model {report['model_uri']}"
    if report["version"]:
        head += f" (version {report['version']})"
    if threshold is not None:
        head += f", decision threshold {threshold:.4g}"
    names = [p["file"] for p in report["predictions"]]
    width = max([len("file"), *map(len, names)])
    lines = [head, ""]
    if report["predictions"]:
        lines.append(f"{'file':<{width}}  {'P(malignant)':>12}  decision")
        for p in report["predictions"]:
            lines.append(f"{p['file']:<{width}}  {p['probability']:>12.4f}  {p['class_name']}")
    if report["errors"]:
        total = len(report["errors"]) + len(report["predictions"])
        lines += ["", f"not scored ({len(report['errors'])} of {total}):"]
        lines += [f"  {e['file']}: {e['error']}" for e in report["errors"]]
    if report.get("masks_skipped"):
        lines += [
            "",
            f"left out {report['masks_skipped']} lesion masks (files below a masks/ folder, not lesion "
            "images); name a masks folder itself to score it",
        ]
    notes = [report.get("operating_point"), report.get("calibration")]
    lines += ["", *textwrap.wrap(" ".join(n for n in notes if n), width=100), "", report["disclaimer"]]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    use_tracking_store()
    report = predict_files(_model_uri(args), args.images)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 1 if report["errors"] else 0
