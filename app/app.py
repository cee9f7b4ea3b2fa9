"""Streamlit detection app: the MLflow champion model in front of a clinician, with its evidence.

Run:  MLFLOW_TRACKING_URI=... streamlit run app/app.py
Configuration (environment): MLFLOW_TRACKING_URI, MELANOMA_MODEL_URI (default
models:/melanoma-resnet50@champion), MELANOMA_APP_MAX_UPLOAD_MB (default 20),
MELANOMA_APP_MAX_PIXELS. All logic lives in melanoma_mlops.app_logic; this file is layout only.
"""

from __future__ import annotations

import math

import streamlit as st

from melanoma_mlops.errors import MelanomaError
from melanoma_mlops.serving import app_logic

st.set_page_config(page_title="Melanoma risk (research prototype)", layout="wide")


@st.cache_resource(show_spinner="Loading the champion model...")
def load_model(model_uri: str, tracking_uri: str) -> app_logic.Champion:
    # Cached per (model URI, tracking URI) for the server's lifetime: loading ResNet50 takes seconds,
    # and the version is pinned at load time, so a promotion takes effect on the next restart.
    return app_logic.load_champion(model_uri, tracking_uri)


st.title("Melanoma risk from a dermoscopic image")
st.warning(app_logic.DISCLAIMER, icon="⚠️")

try:
    settings = app_logic.Settings.from_env()
    champion = load_model(settings.model_uri, settings.tracking_uri)
except MelanomaError as exc:
    st.error(f"The model is not available: {exc}")
    st.stop()

about = app_logic.describe_model(champion)
with st.sidebar:
    st.header("Model")
    st.caption(about["caption"])
    if about["synthetic"]:
        st.error("This model was trained on SYNTHETIC demo data: its output means nothing clinically.")
    if about["metrics"]:
        st.subheader("Test-set performance")
        st.table({"metric": [m for m, _ in about["metrics"]], "value": [v for _, v in about["metrics"]]})
        st.caption("Measured on the held-out test split at the threshold frozen on validation.")
    if about["data_fingerprint"]:
        st.caption(f"Training data fingerprint {about['data_fingerprint']}")

uploaded = st.file_uploader(
    "Dermoscopic image (JPEG or PNG)",
    type=["jpg", "jpeg", "png"],
    max_upload_size=max(1, math.ceil(settings.max_upload_mb)),
    help=f"At most {settings.max_upload_mb:g} MB. The image is analysed in memory and not stored.",
)
if uploaded is None:
    st.info("Upload an image to see the model's estimate and where it looked.")
    st.stop()

try:
    data = app_logic.check_upload(uploaded.name, uploaded.getvalue(), settings)
    with st.spinner("Analysing..."):
        result = app_logic.analyse(champion, data)
except MelanomaError as exc:
    st.error(f"This file cannot be analysed: {exc}")
    st.stop()

st.metric("Estimated probability of malignancy", result.probability_text)
if result.suspicious:
    st.error(result.decision_text())
else:
    st.success(result.decision_text())

left, right = st.columns(2)
left.image(result.image, caption="Uploaded image", width="stretch")
right.image(
    result.overlay, caption=f"Grad-CAM: regions behind the '{result.class_name}' decision", width="stretch"
)
if result.gradcam_flat:
    st.info(
        "Grad-CAM found no positive evidence for this decision in the network's feature maps: "
        "the overlay is flat."
    )
st.caption(
    "Grad-CAM shows where the network's evidence came from, not a lesion boundary or a diagnosis; "
    "a heatmap on skin or artefacts rather than the lesion is a reason for extra caution."
)
