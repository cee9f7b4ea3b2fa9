"""Promotion in the MLflow registry: a fair gate against the champion, and audited manual moves.

**The gate** (:func:`gate_step`, the pipeline step after ``register``) decides whether the new
version (alias ``challenger``) may replace the alias ``champion``. Absolute thresholds alone let a
model that is fine but worse than the one in service through; a comparison with the champion's
*own* test metrics compares two test sets as much as two models. So the gate scores the registered
pyfuncs of both versions - the very artifacts that would serve - on the same test manifest, through
the same code path (raw image bytes in; each model applies its own preprocessing at its own image
size), each at its own threshold frozen on its own validation set (the TFX Evaluator's value
thresholds + change thresholds). If the champion was trained on images that are now in this test
set (the data grew and the split moved), its numbers there are inflated, so the comparison then
uses only the test images it did not train on, when its training manifest can be found.

A rejected candidate is an outcome, not an error: the step records why (tags ``gate.*`` on the
version, the ``promote`` run in MLflow, a Markdown report) and the pipeline run stays green.

**Manual moves** (:func:`promote`, :func:`rollback`) need a reason and leave an audit trail as
version tags ``audit.<n>.action|by|at|reason|previous_champion``; the registered model's tag
``champion_history`` (a JSON list of versions, oldest first) is what rollback walks back through.
A version whose gate failed, or that was never gated, is promoted only with ``force`` and a
written justification. Registry stages are deprecated in MLflow: only aliases are used.

The registry has no transactions: two people promoting at the same moment can interleave. The
alias is moved first, so the registry's serving state is always one of the two intended ones.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from . import manifest, metrics, storage, tracking
from .errors import ConfigError, GateError, MelanomaError
from .evaluate import EVALUATION_FILE

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
HISTORY_MAX = 100
DECISION_FILE = "gate_decision.json"
MARKDOWN_FILE = "gate.md"
# The candidate's pyfunc re-scores the test set; beyond this AUC gap from the evaluate step the
# served artifact does not reproduce its own evaluation (train/serve skew) and we say so loudly.
REPRODUCTION_TOLERANCE = 0.01


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def who() -> str:
    """The user behind an action: getpass (LOGNAME/USER/..., then the password database), else $USER.

    In a container without a passwd entry for its uid getpass raises, hence the fallback.
    """
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "unknown")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise GateError(f"{model_name} has no version {version!r} in {tracking.tracking_uri()}") from exc


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, model_name: str) -> list[str]:
    """Versions that have been champion, oldest first (the registered model's ``champion_history`` tag)."""
    try:
        raw = client.get_registered_model(model_name).tags.get(HISTORY_TAG, "[]")
    except MlflowException as exc:
        raise GateError(f"no registered model {model_name!r} in {tracking.tracking_uri()}") from exc
    try:
        history = json.loads(raw)
    except json.JSONDecodeError:
        logger.warning(
            "tag %s of %s is not JSON (%r); treating the history as empty", HISTORY_TAG, model_name, raw
        )
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def _write_history(client: MlflowClient, model_name: str, history: list[str]) -> None:
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))


def _next_audit_index(tags: dict[str, str]) -> int:
    indices = [
        int(key.split(".")[1]) for key in tags if key.startswith("audit.") and key.split(".")[1].isdigit()
    ]
    return max(indices, default=0) + 1


def audit(
    client: MlflowClient,
    model_name: str,
    version: str,
    action: str,
    reason: str,
    previous_champion: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Append one entry to the version's audit trail (tags ``audit.<n>.*``); return it."""
    mv = client.get_model_version(model_name, version)
    n = _next_audit_index(mv.tags)
    entry = {
        "action": action,
        "by": who(),
        "at": _now(),
        "reason": reason,
        "previous_champion": previous_champion or "none",
        **(extra or {}),
    }
    for key, value in entry.items():
        client.set_model_version_tag(model_name, version, f"audit.{n}.{key}", str(value))
    return {"index": str(n), "version": str(version), **entry}


def audit_trail(client: MlflowClient, model_name: str, version: str) -> list[dict[str, str]]:
    """The version's audit entries in order."""
    tags = client.get_model_version(model_name, version).tags
    entries: dict[int, dict[str, str]] = {}
    for key, value in tags.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "audit" and parts[1].isdigit():
            entries.setdefault(int(parts[1]), {})[parts[2]] = value
    return [entries[i] for i in sorted(entries)]


def _set_champion(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    action: str,
    reason: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Point ``champion`` at ``version``, extend the history, write the audit entry.

    ``challenger`` keeps pointing at the newest registered candidate, so
    ``models:/NAME@challenger`` always resolves after a pipeline run; when it is also the champion
    ``promote`` without ``--version`` refuses to re-promote it.
    """
    current = alias_version(client, model_name, CHAMPION)
    previous = str(current.version) if current else ""
    client.set_registered_model_alias(model_name, CHAMPION, version)
    history = champion_history(client, model_name)
    if not history or history[-1] != str(version):
        history.append(str(version))
    _write_history(client, model_name, history)
    entry = audit(client, model_name, version, action, reason, previous, extra)
    logger.info(
        "%s: @%s -> version %s (was %s) by %s: %s",
        model_name,
        CHAMPION,
        version,
        previous or "none",
        entry["by"],
        reason,
    )
    return entry


# --------------------------------------------------------------------------------------------
# scoring a registered version on a manifest
# --------------------------------------------------------------------------------------------


def load_version(model_name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    uri = f"models:/{model_name}/{version}"
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise GateError(f"{uri} could not be loaded: {exc}") from exc


def score(loaded: mlflow.pyfunc.PyFuncModel, uris: Iterable[str], batch_size: int) -> np.ndarray:
    """P(malignant) for each image URI, read as raw bytes and scored by the pyfunc itself.

    Raw bytes, not decoded arrays: each model must apply its own preprocessing at its own input
    size, exactly as it would when serving.
    """
    uris = list(uris)
    scores: list[np.ndarray] = []
    for start in range(0, len(uris), batch_size):
        chunk = uris[start : start + batch_size]
        frame = pd.DataFrame({"image": [storage.read_bytes(u) for u in chunk]})
        scores.append(loaded.predict(frame)["probability"].to_numpy(dtype=np.float64))
    return np.concatenate(scores) if scores else np.zeros(0)


def version_threshold(mv: ModelVersion, loaded: mlflow.pyfunc.PyFuncModel) -> float:
    """A version's frozen threshold: its ``threshold`` tag, else the contract in the model metadata."""
    if mv.tags.get("threshold"):
        return float(mv.tags["threshold"])
    meta = loaded.metadata.metadata or {}
    if "threshold" in meta:
        return float(meta["threshold"])
    from .serving import unwrap

    return float(unwrap(loaded).contract["threshold"])


def training_hashes(client: MlflowClient, mv: ModelVersion) -> set[str] | None:
    """sha256 of the images a version was trained on, from its pipeline's oversample step.

    None when that cannot be found (a version registered outside the pipeline, deleted runs):
    the gate then says the overlap is unknown instead of guessing.
    """
    run_id = mv.tags.get("pipeline_run_id", "")
    if not run_id:
        return None
    try:
        parent = client.get_run(run_id)
        runs = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}' and tags.step = 'oversample'",
            max_results=1,
        )
        if not runs:
            return None
        files = [f for f in client.list_artifacts(runs[0].info.run_id, "data") if not f.is_dir]
        if not files:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=runs[0].info.run_id, artifact_path=files[0].path, dst_path=tmp
            )
            df = pd.read_csv(local, usecols=["sha256"], dtype=str, keep_default_na=False)
        return set(df["sha256"]) - {""}
    except (MlflowException, OSError, ValueError, KeyError) as exc:
        logger.warning("training manifest of %s v%s not found: %s", mv.name, mv.version, exc)
        return None


def refuse_leaky(client: MlflowClient, mv: ModelVersion) -> None:
    """Raise LeakyRunError if the version was produced under the ablation's leaky negative control.

    Such a model was tested on copies of its training images; no gate result or ``--force`` can
    make it a champion. Checked again here, after register, as defence in depth.
    """
    from .leakage import assert_registrable

    if mv.run_id:
        try:
            assert_registrable(mv.run_id, client)
        except MlflowException as exc:  # the run was deleted: nothing to walk
            logger.warning("lineage of %s v%s not checked: %s", mv.name, mv.version, exc)


def _has_both_classes(y: np.ndarray) -> bool:
    return 0 < int(np.sum(y)) < len(y)


# --------------------------------------------------------------------------------------------
# the gate
# --------------------------------------------------------------------------------------------


def _check(name: str, passed: bool, value: float | None, limit: float | None, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "value": value, "limit": limit, "detail": detail}


def _validate_limits(min_auc: float, min_sensitivity: float, max_auc_drop: float) -> None:
    for flag, value in (
        ("min_auc", min_auc),
        ("min_sensitivity", min_sensitivity),
        ("max_auc_drop", max_auc_drop),
    ):
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{flag} {value} is outside [0, 1]")


def _champion_on_same_test(
    client: MlflowClient,
    champion: ModelVersion,
    test: pd.DataFrame,
    cand_scores: np.ndarray,
    batch_size: int,
) -> dict[str, Any]:
    """Score the champion on the candidate's test set; compare AUCs on images neither trained on."""
    y = test["label"].to_numpy()
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{champion.name}/{champion.version}")
        threshold = version_threshold(champion, loaded)
        champ_scores = score(loaded, test["image_uri"].astype(str), batch_size)
    except (MelanomaError, MlflowException, OSError, KeyError, ValueError) as exc:
        return {"version": str(champion.version), "error": f"{type(exc).__name__}: {exc}"}
    full = metrics.binary_metrics(y, champ_scores, threshold)
    seen = training_hashes(client, champion)
    overlap = None if seen is None else int(test["sha256"].astype(str).isin(seen).sum())
    compare = np.ones(len(test), dtype=bool)
    subset_note = f"all {len(test)} test images"
    if overlap:
        clean = ~test["sha256"].astype(str).isin(seen).to_numpy()
        if _has_both_classes(y[clean]):
            compare = clean
            subset_note = (
                f"the {int(clean.sum())} test images the champion did not train on "
                f"({overlap} of its training images are in this test set)"
            )
        else:
            subset_note = (
                f"all {len(test)} test images, although the champion trained on {overlap} of them "
                "(the rest lack a class): its AUC is optimistic"
            )
    return {
        "version": str(champion.version),
        "threshold": threshold,
        "metrics": full,
        "train_overlap": overlap,
        "compare_mask": compare,
        "compare_note": subset_note,
        "compare_auc": metrics.binary_metrics(y[compare], champ_scores[compare], threshold)["auc_roc"],
        "candidate_compare_auc": metrics.binary_metrics(y[compare], cand_scores[compare], threshold)[
            "auc_roc"
        ],
    }


def gate_step(
    evaluation_dir: str,
    test_manifest: str,
    *,
    parent_run_id: str,
    model_name: str,
    candidate_version: str,
    min_auc: float,
    min_sensitivity: float,
    max_auc_drop: float,
    auto_promote: bool,
    image_size: int,
    batch_size: int,
) -> dict[str, Any]:
    """Pipeline step 9: gate the candidate against absolute limits and the champion on the same test set.

    Returns the decision (JSON-serialisable; :func:`gate_markdown` renders it). With
    ``auto_promote`` a passing candidate becomes ``champion``; without, the gate only recommends.
    ``image_size`` is the candidate's training input size, checked against its contract; each model
    is scored at its own size by its own pyfunc.
    """
    _validate_limits(min_auc, min_sensitivity, max_auc_drop)
    candidate_version = str(candidate_version)
    params = {
        "gate_min_auc": min_auc,
        "gate_min_sensitivity": min_sensitivity,
        "gate_max_auc_drop": max_auc_drop,
        "gate_auto_promote": auto_promote,
    }
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "promote", params) as run_id:
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        test = manifest.read(test_manifest)
        y = test["label"].to_numpy()
        candidate = _get_version(client, model_name, candidate_version)
        refuse_leaky(client, candidate)
        loaded = load_version(model_name, candidate_version)
        contract_size = (loaded.metadata.metadata or {}).get("input", {}).get("image_size")
        if contract_size is not None and int(contract_size) != int(image_size):
            logger.warning(
                "candidate contract image_size %s differs from the pipeline's %s", contract_size, image_size
            )
        threshold = float(evaluation["threshold"])
        cand_scores = score(loaded, test["image_uri"].astype(str), batch_size)
        cand = metrics.binary_metrics(y, cand_scores, threshold)
        eval_auc = float(evaluation["test"]["auc_roc"])
        if abs(cand["auc_roc"] - eval_auc) > REPRODUCTION_TOLERANCE:
            logger.warning(
                "the registered pyfunc scores AUC %.4f on the test set but the evaluate step measured %.4f: "
                "serving does not reproduce evaluation (preprocessing skew?)",
                cand["auc_roc"],
                eval_auc,
            )

        checks = [
            _check(
                "auc",
                cand["auc_roc"] >= min_auc,
                cand["auc_roc"],
                min_auc,
                f"AUC {_fmt(cand['auc_roc'])} {'>=' if cand['auc_roc'] >= min_auc else '<'} {min_auc}",
            ),
            _check(
                "sensitivity",
                cand["sensitivity"] >= min_sensitivity,
                cand["sensitivity"],
                min_sensitivity,
                f"sensitivity {_fmt(cand['sensitivity'])} at threshold {threshold:.4g} "
                f"{'>=' if cand['sensitivity'] >= min_sensitivity else '<'} {min_sensitivity}",
            ),
        ]
        champion = alias_version(client, model_name, CHAMPION)
        champ: dict[str, Any] | None = None
        if champion is not None and str(champion.version) == candidate_version:
            champion = None  # re-gating the champion itself: nothing to compare against
        if champion is None:
            checks.append(
                _check("vs_champion", True, None, max_auc_drop, "no champion yet: absolute limits only")
            )
        else:
            champ = _champion_on_same_test(client, champion, test, cand_scores, batch_size)
            if "error" in champ:
                # Fail closed: a champion we cannot score is not evidence that the candidate is as good.
                checks.append(
                    _check(
                        "vs_champion",
                        False,
                        None,
                        max_auc_drop,
                        f"champion v{champion.version} could not be scored on this test set "
                        f"({champ['error']}); "
                        "promote manually with --force if that is expected",
                    )
                )
            else:
                delta = champ["candidate_compare_auc"] - champ["compare_auc"]
                ok = delta >= -max_auc_drop
                checks.append(
                    _check(
                        "vs_champion",
                        ok,
                        delta,
                        -max_auc_drop,
                        f"AUC {_fmt(champ['candidate_compare_auc'])} vs champion v{champion.version} "
                        f"{_fmt(champ['compare_auc'])} (delta {delta:+.4f}, allowed drop {max_auc_drop}) "
                        f"on {champ['compare_note']}",
                    )
                )

        passed = all(c["passed"] for c in checks)
        failed = [c["detail"] for c in checks if not c["passed"]]
        reason = (
            ("passed: " + "; ".join(c["detail"] for c in checks))
            if passed
            else ("failed: " + "; ".join(failed))
        )
        action = "promoted" if passed and auto_promote else ("recommended" if passed else "rejected")
        decision: dict[str, Any] = {
            "model_name": model_name,
            "candidate_version": candidate_version,
            "passed": passed,
            "promoted": False,
            "action": action,
            "reason": reason,
            "auto_promote": bool(auto_promote),
            "limits": {"min_auc": min_auc, "min_sensitivity": min_sensitivity, "max_auc_drop": max_auc_drop},
            "checks": checks,
            "candidate": {
                "version": candidate_version,
                "threshold": threshold,
                "auc": cand["auc_roc"],
                "auc_evaluate_step": eval_auc,
                "sensitivity": cand["sensitivity"],
                "specificity": cand["specificity"],
                "data_fingerprint": candidate.tags.get("data_fingerprint", ""),
            },
            "champion": None,
            "n_test": len(test),
            "test_fingerprint": manifest.fingerprint(test),
            "run_id": run_id,
            "pipeline_run_id": parent_run_id,
            "decided_at": _now(),
        }
        if champ is not None:
            decision["champion"] = (
                {"version": champ["version"], "error": champ["error"]}
                if "error" in champ
                else {
                    "version": champ["version"],
                    "threshold": champ["threshold"],
                    "auc": champ["metrics"]["auc_roc"],
                    "sensitivity": champ["metrics"]["sensitivity"],
                    "specificity": champ["metrics"]["specificity"],
                    "train_overlap": champ["train_overlap"],
                    "compared_on": champ["compare_note"],
                    "compare_auc": champ["compare_auc"],
                    "candidate_compare_auc": champ["candidate_compare_auc"],
                    "auc_delta": champ["candidate_compare_auc"] - champ["compare_auc"],
                    "data_fingerprint": champion.tags.get("data_fingerprint", "") if champion else "",
                }
            )
        decision = metrics.json_safe(decision)

        _record(client, decision, parent_run_id)
        if passed and auto_promote:
            _set_champion(
                client,
                model_name,
                candidate_version,
                action="auto-promote",
                reason=f"gate {reason} (pipeline run {parent_run_id})",
                extra={"gate_passed": "true"},
            )
            decision["promoted"] = True
        logger.info("gate for %s v%s: %s (%s)", model_name, candidate_version, action.upper(), reason)
        markdown = gate_markdown(decision)
        mlflow.log_text(markdown, f"promotion/{MARKDOWN_FILE}")
        mlflow.log_dict(decision, f"promotion/{DECISION_FILE}")
    # The gate is the pipeline's last step: the parent run ends with it, not with register.
    tracking.finish_pipeline_run(parent_run_id)
    return decision


def _record(client: MlflowClient, decision: dict[str, Any], parent_run_id: str) -> None:
    """The decision as version tags, step-run tags and metrics (step run and parent run)."""
    champ = decision["champion"] or {}
    cand = decision["candidate"]
    tags = {
        "gate.passed": str(decision["passed"]).lower(),
        "gate.action": decision["action"],
        "gate.reason": decision["reason"][:4900],
        "gate.decided_at": decision["decided_at"],
        "gate.run_id": decision["run_id"],
        "gate.pipeline_run_id": parent_run_id,
        "gate.candidate_auc": _fmt(cand["auc"], 6),
        "gate.candidate_sensitivity": _fmt(cand["sensitivity"], 6),
        "gate.candidate_specificity": _fmt(cand["specificity"], 6),
        "gate.candidate_threshold": f"{cand['threshold']:.6g}",
        "gate.candidate_auc_evaluate_step": _fmt(cand["auc_evaluate_step"], 6),
        "gate.champion_version": champ.get("version", "none"),
        "gate.champion_auc_same_test": _fmt(champ.get("auc"), 6),
        "gate.champion_sensitivity_same_test": _fmt(champ.get("sensitivity"), 6),
        "gate.champion_threshold": _fmt(champ.get("threshold"), 6),
        "gate.auc_delta": _fmt(champ.get("auc_delta"), 6),
        "gate.champion_train_overlap": "unknown"
        if champ.get("train_overlap") is None
        else str(champ["train_overlap"]),
        "gate.min_auc": str(decision["limits"]["min_auc"]),
        "gate.min_sensitivity": str(decision["limits"]["min_sensitivity"]),
        "gate.max_auc_drop": str(decision["limits"]["max_auc_drop"]),
        "gate.n_test": str(decision["n_test"]),
        "gate.test_fingerprint": decision["test_fingerprint"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision["model_name"], decision["candidate_version"], key, value)
    mlflow.set_tags(tags)
    values = {
        "gate/passed": float(decision["passed"]),
        "gate/candidate_auc": cand["auc"],
        "gate/candidate_sensitivity": cand["sensitivity"],
    }
    if champ.get("auc") is not None:
        values |= {"gate/champion_auc_same_test": champ["auc"], "gate/auc_delta": champ["auc_delta"]}
    tracking.log_metrics(
        {k: v for k, v in values.items() if v is not None and math.isfinite(v)}, parent_run_id
    )


def gate_markdown(decision: dict[str, Any]) -> str:
    """The decision as a Markdown report (the KFP ``Markdown`` artifact and the MLflow run's gate.md)."""
    name, version = decision["model_name"], decision["candidate_version"]
    verdict = {
        "promoted": "PASSED - promoted to @champion",
        "recommended": "PASSED - recommended for promotion (auto-promotion is off)",
        "rejected": "FAILED - stays @challenger, champion unchanged",
    }[decision["action"]]
    limits = decision["limits"]
    lines = [
        f"# Promotion gate: {name} version {version}",
        "",
        f"**{verdict}**",
        "",
        f"{decision['reason']}",
        "",
        "## Checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [
        f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |" for c in decision["checks"]
    ]
    cand, champ = decision["candidate"], decision["champion"]
    lines += [
        "",
        f"## Same test set ({decision['n_test']} images, fingerprint `{decision['test_fingerprint'][:12]}`)",
        "",
        "Each model is the registered pyfunc, fed raw image bytes, at its own frozen threshold.",
        "",
        "| | version | AUC | sensitivity | specificity | threshold |",
        "|---|---|---|---|---|---|",
        f"| candidate | {version} | {_fmt(cand['auc'])} | {_fmt(cand['sensitivity'])} | "
        f"{_fmt(cand['specificity'])} | {cand['threshold']:.4g} |",
    ]
    if champ and "error" not in champ:
        lines.append(
            f"| champion | {champ['version']} | {_fmt(champ['auc'])} | {_fmt(champ['sensitivity'])} | "
            f"{_fmt(champ['specificity'])} | {champ['threshold']:.4g} |"
        )
        overlap = champ.get("train_overlap")
        lines += [
            "",
            f"AUC compared on {champ['compared_on']}: candidate {_fmt(champ['candidate_compare_auc'])}, "
            f"champion {_fmt(champ['compare_auc'])}, delta {champ['auc_delta']:+.4f} "
            f"(allowed drop {limits['max_auc_drop']}).",
            "",
            "Champion training images in this test set: "
            + ("unknown (its training manifest was not found)" if overlap is None else str(overlap))
            + ".",
        ]
    elif champ:
        lines += ["", f"Champion version {champ['version']} could not be scored: {champ['error']}"]
    else:
        lines += ["", "No champion yet: only the absolute limits apply."]
    lines += [
        "",
        f"Candidate AUC measured by the evaluate step: {_fmt(cand['auc_evaluate_step'])} "
        "(the served pyfunc should reproduce it).",
        "",
        f"Limits: AUC >= {limits['min_auc']}, sensitivity >= {limits['min_sensitivity']}, "
        f"AUC drop vs champion <= {limits['max_auc_drop']}.",
    ]
    if decision["action"] == "recommended":
        lines += [
            "",
            f'To promote: `melanoma-mlops promote --version {version} --reason "..."`',
        ]
    elif decision["action"] == "rejected":
        lines += [
            "",
            "A deliberate override needs a written justification: "
            f'`melanoma-mlops promote --version {version} --reason "..." --force --force-reason "..."`',
        ]
    lines += [
        "",
        f"MLflow: pipeline run `{decision['pipeline_run_id']}`, promote run `{decision['run_id']}`.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# manual operations
# --------------------------------------------------------------------------------------------


def promote(
    model_name: str,
    version: str | int | None,
    reason: str,
    force: bool = False,
    force_reason: str = "",
) -> dict[str, str]:
    """Point ``champion`` at ``version`` (None: the current challenger); return the audit entry.

    Refuses a version whose gate failed or that was never gated, unless ``force`` with a
    ``force_reason``: overriding the evidence is allowed, but only on the record.
    """
    if not reason.strip():
        raise GateError("a reason is required to promote a model (--reason): it goes into the audit trail")
    client = MlflowClient()
    if version is None:
        challenger = alias_version(client, model_name, CHALLENGER)
        if challenger is None:
            raise GateError(f"{model_name} has no @{CHALLENGER}: name the version to promote (--version N)")
        current = alias_version(client, model_name, CHAMPION)
        if current is not None and str(current.version) == str(challenger.version):
            raise GateError(
                f"{model_name}@{CHALLENGER} (version {challenger.version}) is already @{CHAMPION}: "
                "name another version with --version N"
            )
        version = challenger.version  # str() below
    version = str(version)
    mv = _get_version(client, model_name, version)
    refuse_leaky(client, mv)
    current = alias_version(client, model_name, CHAMPION)
    if current is not None and str(current.version) == version:
        raise GateError(f"{model_name} version {version} is already @{CHAMPION}")
    gate = mv.tags.get("gate.passed")
    extra = {"gate_passed": gate or "not gated"}
    if gate != "true":
        why = (
            f"its gate failed ({mv.tags.get('gate.reason', 'no reason recorded')})"
            if gate == "false"
            else "it was never gated against the champion"
        )
        if not force:
            raise GateError(
                f"refusing to promote {model_name} version {version}: {why}. To override, pass --force "
                "with --force-reason explaining why"
            )
        if not force_reason.strip():
            raise GateError(f"--force on {model_name} version {version} needs --force-reason: {why}")
    if force:
        extra |= {"forced": "true", "force_reason": force_reason.strip() or "(gate passed; forced anyway)"}
    return _set_champion(
        client,
        model_name,
        version,
        action="force-promote" if force else "promote",
        reason=reason.strip(),
        extra=extra,
    )


def rollback(model_name: str, reason: str) -> dict[str, str]:
    """Point ``champion`` back at the previous champion in ``champion_history``; return the audit entry.

    The rolled-back version is popped from the history, so a second rollback goes one further back;
    versions deleted from the registry since are skipped.
    """
    if not reason.strip():
        raise GateError("a reason is required to roll back (--reason): it goes into the audit trail")
    client = MlflowClient()
    current = alias_version(client, model_name, CHAMPION)
    if current is None:
        raise GateError(f"{model_name} has no @{CHAMPION} to roll back")
    current_v = str(current.version)
    history = champion_history(client, model_name)
    while history and history[-1] == current_v:
        history.pop()
    previous = None
    while history:
        if version_exists(client, model_name, history[-1]):
            previous = history[-1]
            break
        logger.warning(
            "%s version %s in the champion history no longer exists: skipped", model_name, history.pop()
        )
    if previous is None:
        raise GateError(
            f"{model_name}: no earlier champion recorded before version {current_v}; "
            "promote a specific version instead (melanoma-mlops promote --version N --reason ...)"
        )
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    _write_history(client, model_name, history)
    audit(
        client,
        model_name,
        current_v,
        "rolled-back",
        reason.strip(),
        current_v,
        {"replaced_by": previous},
    )
    entry = audit(client, model_name, previous, "rollback", reason.strip(), current_v)
    logger.info(
        "%s: rolled @%s back from version %s to %s: %s",
        model_name,
        CHAMPION,
        current_v,
        previous,
        reason,
    )
    return entry


def version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        client.get_model_version(model_name, version)
    except MlflowException:
        return False
    return True


def describe(model_name: str) -> dict[str, Any]:
    """Aliases, history and each aliased version's gate tags: what ``promote`` prints after acting."""
    client = MlflowClient()
    out: dict[str, Any] = {"model_name": model_name, "history": champion_history(client, model_name)}
    for alias in (CHAMPION, CHALLENGER):
        mv = alias_version(client, model_name, alias)
        if mv is not None:
            out[alias] = {"version": str(mv.version), "gate.passed": mv.tags.get("gate.passed", "")}
        else:
            out[alias] = None
    return out
