"""``melanoma-mlops promote`` and ``history`` (and ``predict``, :mod:`.predict`): the model registry
from the command line.

``promote`` moves the ``champion`` alias by hand - with a reason, and with ``--force`` plus a written
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
from typing import Any

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines.cli.predict import add_commands as add_predict_command
from melanoma_pipelines.cli.store import use_tracking_store

logger = logging.getLogger(__name__)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``predict`` (its own module), ``promote`` and ``history`` on the main parser."""
    add_predict_command(subparsers)

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


def cmd_promote(args: argparse.Namespace) -> int:
    from melanoma_mlops.registry import champion as promotion

    if args.rollback and (args.version or args.force):
        raise ConfigError("--rollback goes back to the previous champion: it takes no --version or --force")
    if args.force_reason and not args.force:
        raise ConfigError("--force-reason is only meaningful with --force")
    if args.force and not args.force_reason.strip():
        raise ConfigError("--force needs --force-reason: the justification goes into the history")
    use_tracking_store()
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
    use_tracking_store()
    moves = record.history(MlflowClient(), args.model_name)
    if args.limit:
        moves = moves[-args.limit :]
    state = promotion.describe(args.model_name)
    if args.json:
        print(json.dumps({"model_name": args.model_name, "state": state, "moves": moves}, indent=2))
    else:
        print(format_history(args.model_name, moves, state))
    return 0
