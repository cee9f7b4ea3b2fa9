"""Streamlit detection app: the MLflow champion model in front of a clinician, with its evidence.

Run:  MLFLOW_TRACKING_URI=... streamlit run app/app.py   (listens on 127.0.0.1:8501)
Configuration (environment): MLFLOW_TRACKING_URI, MELANOMA_MODEL_URI (default
models:/melanoma-resnet50@champion), MELANOMA_APP_MAX_UPLOAD_MB (default 20),
MELANOMA_APP_MAX_PIXELS; Streamlit's own settings in app/.streamlit/config.toml (loopback address,
server-side upload cap, viewer toolbar), each overridable by its STREAMLIT_* variable. All logic
lives in melanoma_mlops.app (logic, champion, loader); this file is layout only.
"""

from __future__ import annotations

from melanoma_mlops import quiet_tensorflow

quiet_tensorflow.silence()  # before anything imports TensorFlow: no banners on the server's console

import streamlit as st  # noqa: E402

from melanoma_mlops.app import champion as app_champion  # noqa: E402
from melanoma_mlops.app import loader as app_loader  # noqa: E402
from melanoma_mlops.app import logic as app_logic  # noqa: E402
from melanoma_mlops.errors import MelanomaError  # noqa: E402

st.set_page_config(page_title="Melanoma risk (research prototype)", layout="wide")
#: How long an upload waits for the model still loading before the page gives up.
MODEL_WAIT_S = 300.0


@st.cache_resource(show_spinner=False)
def loader(model_uri: str, tracking_uri: str) -> app_loader.ChampionLoader:
    # One loader per (model URI, tracking URI) for the server's lifetime: it loads in the
    # background, so the page is usable at once; the version is pinned at load time, so a promotion
    # takes effect on the next restart.
    return app_loader.ChampionLoader(model_uri, tracking_uri)


def loading_line(state: app_loader.LoadState) -> str:
    return f"Loading the model ({state.elapsed_s:.0f} s): {state.phase}..."


@st.fragment(run_every=1.0)
def loading_status(model_loader: app_loader.ChampionLoader, had_entry: bool) -> None:
    """Says what the loader is doing, once a second; reruns the page when there is more to show."""
    state = model_loader.state()
    if state.done or (state.entry is not None) != had_entry:
        st.rerun(scope="app")
    st.info(loading_line(state), icon="⏳")


st.title("Melanoma risk from a dermoscopic image")
st.warning(app_logic.DISCLAIMER, icon="⚠️")

try:
    # The server refuses request bodies above server.maxUploadSize itself; the app's limit is
    # never above it (a file the server refuses never reaches the app's message).
    settings = app_logic.Settings.from_env().within_server_limit(st.get_option("server.maxUploadSize"))
except MelanomaError as exc:
    st.error(f"The app is misconfigured: {exc}")
    st.stop()
model_loader = loader(settings.model_uri, settings.tracking_uri)
state = model_loader.state()
if state.error is not None:
    loader.clear()  # the next page view tries again (a model promoted meanwhile, a server back up)
    st.error(f"The model is not available: {state.error}")
    st.stop()
if not state.ready:
    loading_status(model_loader, state.entry is not None)
else:
    # The status line's slot stays: the elements below keep their positions from the loading runs,
    # so a rerun replaces them in place instead of showing stale copies next to new ones.
    st.empty()

model = state.champion or state.entry
with st.sidebar:
    st.header("Model")
    if model is None:
        st.caption(f"Reading the registry at {settings.tracking_uri}...")
    else:
        about = app_champion.describe_model(model)
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
        if about["operating_point"]:
            st.caption(about["operating_point"])
        st.caption(about["calibration"])
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
    if not state.ready:
        with st.spinner("Waiting for the model, which is still loading..."):
            state = model_loader.wait(MODEL_WAIT_S)
        if state.error is not None:
            st.error(f"The model is not available: {state.error}")
            st.stop()
        if state.champion is None:
            st.error(f"The model is still loading after {MODEL_WAIT_S:.0f} s: try again in a minute.")
            st.stop()
    champion = state.champion
    assert champion is not None  # narrowed above; for the type checker
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
if operating_point := app_champion.operating_point_text(champion):
    st.caption(operating_point)
st.caption(app_champion.calibration_text(champion))

left, right = st.columns(2)
left.image(result.image, caption="Uploaded image", width="stretch")
right.image(
    result.overlay, caption=f"Grad-CAM: regions behind the '{result.class_name}' decision", width="stretch"
)
right.image(result.scale, caption=app_logic.SCALE_CAPTION, width="stretch")
if result.gradcam_flat:
    st.info(
        "Grad-CAM found no positive evidence for this decision in the network's feature maps: "
        "the overlay is flat."
    )
st.caption(
    "Grad-CAM shows where the network's evidence came from, not a lesion boundary or a diagnosis; "
    "a heatmap on skin or artefacts rather than the lesion is a reason for extra caution."
)
