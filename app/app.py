"""Streamlit detection app: the MLflow champion model in front of a clinician, with its evidence.

Run:  MLFLOW_TRACKING_URI=... streamlit run app/app.py   (listens on 127.0.0.1:8501)
Configuration (environment): MLFLOW_TRACKING_URI, MELANOMA_MODEL_URI (default
models:/melanoma-resnet50@champion), MELANOMA_APP_MAX_UPLOAD_MB (default 20),
MELANOMA_APP_MAX_PIXELS; Streamlit's own settings in app/.streamlit/config.toml (loopback address,
server-side upload cap, viewer toolbar), each overridable by its STREAMLIT_* variable. All logic
lives in melanoma_mlops.app (logic, champion); this file is layout only.
"""

from __future__ import annotations

import streamlit as st

from melanoma_mlops.app import champion as app_champion
from melanoma_mlops.app import logic as app_logic
from melanoma_mlops.errors import MelanomaError

st.set_page_config(page_title="Melanoma risk (research prototype)", layout="wide")


@st.cache_resource(show_spinner="Loading the champion model...")
def load_model(model_uri: str, tracking_uri: str) -> app_champion.Champion:
    # Cached per (model URI, tracking URI) for the server's lifetime: loading ResNet50 takes seconds,
    # and the version is pinned at load time, so a promotion takes effect on the next restart.
    return app_champion.load_champion(model_uri, tracking_uri)


st.title("Melanoma risk from a dermoscopic image")
st.warning(app_logic.DISCLAIMER, icon="⚠️")

try:
    # The server refuses request bodies above server.maxUploadSize itself; the app's limit is
    # never above it (a file the server refuses never reaches the app's message).
    settings = app_logic.Settings.from_env().within_server_limit(st.get_option("server.maxUploadSize"))
    champion = load_model(settings.model_uri, settings.tracking_uri)
except MelanomaError as exc:
    st.error(f"The model is not available: {exc}")
    st.stop()

about = app_champion.describe_model(champion)
with st.sidebar:
    st.header("Model")
    st.caption(about["caption"])
    if about["synthetic"]:
        st.error("This model was trained on SYNTHETIC demo data: its output means nothing clinically.")
    if about["metrics"]:
        st.subheader("Test-set performance")
        st.table(
            {
                "metric": [m for m, _, _ in about["metrics"]],
                "value": [v for _, v, _ in about["metrics"]],
                app_champion.CI_LABEL: [ci or "not recorded" for _, _, ci in about["metrics"]],
            }
        )
        st.caption(
            "Measured on the held-out test split at the threshold frozen on validation; "
            f"{app_champion.CI_LABEL}: bootstrap over the test set's patients/lesions."
        )
    if about["data_fingerprint"]:
        st.caption(f"Training data fingerprint {about['data_fingerprint']}")

uploaded = st.file_uploader(
    f"Dermoscopic image ({app_logic.formats_label()})",
    type=app_logic.upload_suffixes(),
    # The browser's own check matches the server's cap; files between the app's limit and the cap
    # still arrive, so that the app refuses them with its own message.
    max_upload_size=int(st.get_option("server.maxUploadSize")),
    help=app_logic.limits_text(settings) + " The image is analysed in memory and not stored.",
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
