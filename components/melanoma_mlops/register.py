"""The register step: the final model goes into the MLflow registry as a self-contained pyfunc.

The version carries its contract (input, class meaning, frozen threshold, data fingerprint, test
metrics) as model metadata and as version tags, a Markdown model card, and the alias
``challenger``; promotion to ``champion`` is a separate, gated decision.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from . import CLASS_NAMES, __version__, manifest, modelcard, tracking, training
from .evaluate import EVALUATION_FILE
from .gradcam import SUMMARY_FILE
from .leakage import assert_registrable
from .serving import CONTRACT_ARTIFACT, KERAS_ARTIFACT, MelanomaClassifier

logger = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
# ``binary``: MLflow's scoring server base64-decodes this column of dataframe_split/_records JSON.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema(
        [ColSpec("double", "probability"), ColSpec("long", "label"), ColSpec("string", "class_name")]
    ),
)


def input_example() -> pd.DataFrame:
    """One tiny PNG: MLflow saves it with the model as ``serving_input_example.json`` (the exact
    JSON body a REST client sends) and, at logging time, loads the model and runs it once, so a
    version that cannot serve is never registered.
    """
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="PNG")
    return pd.DataFrame({"image": [buf.getvalue()]})


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "keras", "tensorflow", "tensorflow-cpu", "pillow", "pandas", "numpy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def data_counts(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, run_metrics: dict[str, float]
) -> dict[str, dict[str, int]]:
    """Images per class and split (groups = images sharing a patient/lesion/duplicate group)."""
    counts = {}
    for name, df in (("train", train), ("val", val), ("test", test)):
        groups = df["group_id"].astype(str)
        counts[name] = {**manifest.class_counts(df), "groups": int(groups[groups != ""].nunique())}
    if "oversample/after_benign" in run_metrics:
        counts["train_oversampled"] = {
            "benign": int(run_metrics["oversample/after_benign"]),
            "malignant": int(run_metrics["oversample/after_malignant"]),
        }
    return counts


def group_key(df: pd.DataFrame) -> str:
    """What kept the splits apart, in words, from the manifest's group kinds."""
    kinds = sorted({k for k in df.get("group_kind", pd.Series(dtype=str)).astype(str) if k})
    if not kinds:
        return "nothing shared: every image is its own group (no patient/lesion ids, no duplicates)"
    return ", ".join(kinds) + " (images without one are their own group)"


def build_contract(evaluation: dict[str, Any], params: dict[str, str], fingerprint: str) -> dict[str, Any]:
    """What a consumer of the model must know: input, output, classes, threshold, provenance."""
    return {
        "input": {
            "image_size": int(params["image_size"]),
            "accepts": "column 'image': encoded JPEG/PNG/BMP/GIF bytes, base64 text of them (JSON), "
            "or HxWx3 uint8 RGB arrays",
            "preprocessing": "decode to RGB, bilinear antialiased resize to image_size, truncate to uint8 "
            "(as the training input pipeline); "
            "ResNet50 caffe preprocessing inside the model",
        },
        "output": {"probability": "P(malignant)", "label": "1 if probability >= threshold else 0"},
        "classes": {str(i): name for i, name in enumerate(CLASS_NAMES)},
        "threshold": evaluation["threshold"],
        "threshold_rule": evaluation["threshold_rule"],
        "target_sensitivity": evaluation.get("target_sensitivity"),
        "data_fingerprint": fingerprint,
        "test_metrics": {
            k: evaluation["test"][k] for k in ("auc_roc", "sensitivity", "specificity", "f1", "accuracy")
        },
        "package_version": __version__,
    }


def register_step(
    model_dir: str,
    evaluation_dir: str,
    gradcam_dir: str,
    train_manifest: str,
    val_manifest: str,
    test_manifest: str,
    *,
    parent_run_id: str,
    model_name: str,
) -> str:
    """Pipeline step 8: log the pyfunc, register a version, tag it, alias it ``challenger``."""
    assert_registrable(parent_run_id)  # the ablation's LEAKY (negative control) is never registered
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "register", {"model_name": model_name}) as step_run_id:
        parent = client.get_run(parent_run_id)
        params = parent.data.params
        fingerprint = parent.data.tags.get("data.fingerprint", "")
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        gradcam_file = Path(gradcam_dir) / SUMMARY_FILE
        gradcam = json.loads(gradcam_file.read_text()) if gradcam_file.exists() else {}
        contract = build_contract(evaluation, params, fingerprint)
        train, val, test = (manifest.read(p) for p in (train_manifest, val_manifest, test_manifest))
        with tempfile.TemporaryDirectory() as tmp:
            contract_path = Path(tmp) / "contract.json"
            contract_path.write_text(json.dumps(contract, indent=2))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=MelanomaClassifier(),
                artifacts={
                    KERAS_ARTIFACT: str(Path(model_dir) / training.MODEL_FILE),
                    CONTRACT_ARTIFACT: str(contract_path),
                },
                signature=SIGNATURE,
                input_example=input_example(),
                code_paths=[str(Path(__file__).parent)],
                pip_requirements=_pip_requirements(),
                metadata=contract,
                registered_model_name=model_name,
            )
        version = str(info.registered_model_version)
        # Set by validate from the demo generator's marker: consumers (the app) must be able to warn.
        synthetic = parent.data.tags.get("data.synthetic") == "true"
        tags = {
            "threshold": f"{evaluation['threshold']:.6g}",
            "threshold_rule": evaluation["threshold_rule"],
            "data_fingerprint": fingerprint,
            "pipeline_run_id": parent_run_id,
            "register_run_id": step_run_id,
            "kfp_run_id": parent.data.tags.get("kfp.run_id", ""),
            "data_synthetic": str(synthetic).lower(),
            **{f"test_{k}": f"{v:.6g}" for k, v in contract["test_metrics"].items()},
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
        card = modelcard.render_model_card(
            {
                "model": {
                    "name": model_name,
                    "version": version,
                    "architecture": "ResNet50 + GAP + dropout + dense(1, sigmoid)",
                    "input": contract["input"]["preprocessing"],
                    "classes": "0 = benign, 1 = malignant",
                    "lineage": {"mlflow_run_id": parent_run_id, "kfp_run_id": tags["kfp_run_id"]},
                },
                "data": {
                    "source": params.get("data", ""),
                    "layout": parent.data.tags.get("data.layout", ""),
                    "synthetic": synthetic,
                    "fingerprint": fingerprint,
                    "counts": data_counts(train, val, test, parent.data.metrics),
                    "group_key": group_key(pd.concat([train, val, test])),
                    "exclusions": json.loads(parent.data.tags.get("data.excluded", "{}")),
                },
                "protocol": {
                    "description": "Stage 1: head only on a frozen ResNet50; "
                    "Stage 2: every layer at a low learning rate. "
                    "Oversampling (1:1) of the training split only, after a grouped stratified split.",
                    "hyperparameters": dict(params),
                },
                "operating_point": {
                    "rule": evaluation["threshold_rule"],
                    "threshold": evaluation["threshold"],
                    "target_sensitivity": evaluation.get("target_sensitivity"),
                },
                "metrics": evaluation["test"],
                "ci": evaluation["ci"],
                "bootstrap": evaluation["bootstrap"],
                "calibration": evaluation["calibration"],
                "gradcam": {
                    "energy_in_mask": gradcam.get("energy_in_mask"),
                    "pointing_game": gradcam.get("pointing_game"),
                    "n_images": gradcam.get("n_samples"),
                    "n_with_mask": gradcam.get("n_with_mask", 0),
                },
            }
        )
        mlflow.log_text(card, "model_card.md")
        card_uri = f"runs:/{step_run_id}/model_card.md"
        client.update_model_version(model_name, version, description=card)
        client.set_model_version_tag(model_name, version, "model_card", card_uri)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        tracking.set_parent_tags(parent_run_id, {"model.name": model_name, "model.version": version})
        logger.info("registered %s version %s as @%s", model_name, version, CHALLENGER)
    return version
