"""``melanoma-mlops predict``, ``promote`` and ``history``: the model registry from the command line.

``predict`` scores image files and folders with a registered model (default ``@champion``) through
the same pyfunc that ``mlflow models serve`` and the app use, so the command line cannot disagree
with them; a file that cannot be scored is reported and the others are still scored. ``promote``
moves the ``champion`` alias by hand - with a reason, and with ``--force`` plus a written
justification - or rolls it back; ``history`` prints every move of the alias.

``promote`` and ``history`` never import TensorFlow (only ``predict`` loads a model), so they
answer in about the time it takes to import MLflow (benchmarks/bench_registry.py).

Every user mistake (a missing file, an unknown version, a refused promotion) ends as one
:class:`~melanoma_mlops.errors.MelanomaError` that :func:`melanoma_pipelines.cli.main` prints
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from melanoma_mlops import MODEL_NAME, tracking_client
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

DISCLAIMER = "Research software, not a diagnostic device: every result needs a clinician's judgement."


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict``, ``promote`` and ``history`` on the main parser's subcommands."""
    predict = subparsers.add_parser(
        "predict",
        help="score image files or folders with a registered model (default: @champion)",
        description="Score dermoscopic images with a model from the MLflow registry "
        "(MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db). Folders are searched recursively for "
        "files with the extensions of the formats the model accepts. A file that cannot be scored "
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

    promote = subparsers.add_parser(
        "promote",
        help="move the @champion alias (gated versions only, unless --force) or roll it back",
        description="Point @champion at a registered version whose promotion gate passed (default: the "
        "current @challenger), or with --rollback at the champion before the current one. Every move "
        "is recorded (who, when, from which version to which, why): see `melanoma-mlops history`. "
        "Concurrent moves of one model are serialised.",
    )
    promote.add_argument("--version", default=None, help="version to promote (default: the @challenger)")
    promote.add_argument("--reason", required=True, help="why: recorded in the history")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even though the gate failed or never ran (requires --force-reason)",
    )
    promote.add_argument("--force-reason", default="", help="with --force: the justification (required)")
    promote.add_argument(
        "--rollback", action="store_true", help="point @champion back at the champion before the current one"
    )
    promote.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    promote.add_argument("--json", action="store_true", help="print the audit entry as JSON")
    promote.set_defaults(func=cmd_promote)

    history = subparsers.add_parser(
        "history",
        help="print the @champion timeline: who moved it, when, from which version to which, and why",
        description="The champion timeline of a registered model, oldest move first, from its "
        "append-only record (one registered-model tag champion_log.NNNNNN per move): who, when, "
        "from which version to which, why, and the gate figures of the version promoted.",
    )
    history.add_argument(
        "--model-name", default=MODEL_NAME, help=f"registered model name (default: {MODEL_NAME})"
    )
    history.add_argument("--limit", type=int, default=None, metavar="N", help="only the last N moves")
    history.add_argument("--json", action="store_true", help="print the moves as JSON")
    history.set_defaults(func=cmd_history)


def _use_tracking_store() -> str:
    """Point MLflow at the store; refuse a SQLite path that does not exist instead of creating it."""
    import mlflow

    uri = tracking_client.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `melanoma-mlops run` here first, "
            "or set MLFLOW_TRACKING_URI to your tracking server"
        )
    mlflow.set_tracking_uri(uri)
    return uri


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


def collect_images(paths: list[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files to score (folders searched recursively for image extensions) and per-path errors."""
    from melanoma_mlops.serving.formats import IMAGE_SUFFIXES

    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                errors.append(
                    {"file": shown(path), "error": f"no {'/'.join(IMAGE_SUFFIXES)} files in this folder"}
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            errors.append({"file": shown(path), "error": "no such file or folder"})
    return files, errors


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

    files, errors = collect_images(paths)
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
    info = _version_info(model_uri)
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
    return {
        "model_uri": model_uri,
        "version": info.get("version", ""),
        "threshold": float(threshold) if threshold not in (None, "") else None,
        "predictions": predictions,
        "errors": errors,
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
    lines += ["", report["disclaimer"]]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    _use_tracking_store()
    report = predict_files(_model_uri(args), args.images)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 1 if report["errors"] else 0


def cmd_promote(args: argparse.Namespace) -> int:
    from melanoma_mlops.registry import champion as promotion

    if args.rollback and (args.version or args.force):
        raise ConfigError("--rollback goes back to the previous champion: it takes no --version or --force")
    if args.force_reason and not args.force:
        raise ConfigError("--force-reason is only meaningful with --force")
    if args.force and not args.force_reason.strip():
        raise ConfigError("--force needs --force-reason: the justification goes into the history")
    _use_tracking_store()
    if args.rollback:
        entry = promotion.rollback(args.model_name, args.reason)
        summary = (
            f"rolled back @champion of {args.model_name}: "
            f"version {entry['previous_champion']} -> {entry['version']}"
        )
    else:
        entry = promotion.promote(args.model_name, args.version, args.reason, args.force, args.force_reason)
        summary = (
            f"{'force-' if args.force else ''}promoted {args.model_name} version {entry['version']} "
            f"to @champion (previous champion: {entry['previous_champion']})"
        )
    if args.json:
        text = json.dumps({**entry, "state": promotion.describe(args.model_name)}, indent=2)
    else:
        text = (
            f"{summary}\nrecorded as move {entry['move']} of the champion history "
            f"(melanoma-mlops history) and as audit.{entry['index']} on version {entry['version']}: "
            f"by {entry['by']} at {entry['at']}"
        )
    print(text)
    return 0


def format_history(model_name: str, moves: list[dict[str, Any]], state: dict[str, Any]) -> str:
    """The timeline as text: one header line per move, then why and the gate figures."""
    champion = (state.get("champion") or {}).get("version", "none")
    challenger = (state.get("challenger") or {}).get("version", "none")
    lines = [f"{model_name}: @champion = {champion}, @challenger = {challenger}; {len(moves)} move(s) shown"]
    if not moves:
        lines.append("no move recorded yet: the first promotion (by the gate or by hand) starts the history")
    for move in moves:
        frm = f"v{move['from']}" if move.get("from") else "(none)"
        when = str(move.get("at", "")).replace("T", " ").replace("Z", " UTC")
        lines += [
            "",
            f"#{move['n']:<4} {when:<24} {move.get('by', '?'):<12} {move.get('action', '?'):<14} "
            f"{frm} -> v{move.get('to', '?')}",
            f"      why:  {move.get('reason', '')}",
        ]
        if move.get("force_reason"):
            lines.append(f"      forced: {move['force_reason']}")
        gate = move.get("gate") or {}
        if gate:
            figures = [f"passed={gate.get('passed', '?')}"]
            figures += [
                f"{k}={gate[k]}" for k in ("auc", "sensitivity", "specificity", "auc_delta") if k in gate
            ]
            if gate.get("vs"):
                figures.append(f"compared with v{gate['vs']}" if gate["vs"] != "none" else "no champion then")
            lines.append(f"      gate (v{move.get('to')}): " + ", ".join(figures))
        if move.get("recovered"):
            lines.append(f"      note: {move['recovered']}")
        if move.get("legacy"):
            lines.append(
                "      note: rebuilt from the version's audit tags (recorded before the history existed)"
            )
    return "\n".join(lines)


def cmd_history(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry import champion as promotion
    from melanoma_mlops.registry import record

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: give a positive number of moves")
    _use_tracking_store()
    moves = record.history(MlflowClient(), args.model_name)
    if args.limit:
        moves = moves[-args.limit :]
    state = promotion.describe(args.model_name)
    if args.json:
        print(json.dumps({"model_name": args.model_name, "state": state, "moves": moves}, indent=2))
    else:
        print(format_history(args.model_name, moves, state))
    return 0
