"""Grad-CAM: one gradient pass per batch gives each image's own map; localisation is a number."""

from __future__ import annotations

import numpy as np
import pandas as pd

from melanoma_mlops.artifacts import GRADCAM_GRID_FILE
from melanoma_mlops.evaluation import gradcam


def test_batched_maps_equal_one_image_at_a_time(tiny_classifier) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    batched = gradcam.heatmaps(tiny_classifier, images, batch_size=5)
    single = np.concatenate(
        [gradcam.heatmaps(tiny_classifier, images[i : i + 1], batch_size=1) for i in range(5)]
    )
    assert batched.shape == (5, 32, 32)
    assert batched.min() >= 0 and batched.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_signs_choose_the_explained_class(tiny_classifier) -> None:
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pos = gradcam.heatmaps(tiny_classifier, images, signs=np.array([1.0, 1.0]))
    neg = gradcam.heatmaps(tiny_classifier, images, signs=np.array([-1.0, -1.0]))
    assert not np.allclose(pos, neg)


def test_coarse_maps_move_to_an_earlier_block(tiny_classifier) -> None:
    # 32 px input: the last block is 1x1, useless for localisation; conv4 is 2x2.
    assert gradcam.explained_layer(tiny_classifier) == gradcam.EARLIER_LAYER


def test_localisation_energy_and_pointing_game() -> None:
    cam = np.zeros((4, 4))
    cam[0, 0], cam[3, 3] = 3.0, 1.0
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    energy, hit = gradcam.localisation(cam, mask)
    assert energy == 0.75
    assert hit is True
    energy, hit = gradcam.localisation(cam, ~mask)
    assert energy == 0.25 and hit is False


def test_selection_spreads_over_outcomes() -> None:
    preds = pd.DataFrame(
        {
            "image_uri": [f"i{i}" for i in range(20)],
            "outcome": ["TP"] * 5 + ["FN"] * 5 + ["FP"] * 5 + ["TN"] * 5,
            "score": np.linspace(0, 1, 20),
        }
    )
    picked = gradcam.select(preds, 8, seed=0)
    assert len(picked) == 8
    assert picked["outcome"].value_counts().to_dict() == {"TP": 2, "FN": 2, "FP": 2, "TN": 2}


def test_explain_writes_grid_overlays_and_mask_metrics(tiny_classifier, demo_dir, tmp_path) -> None:
    rows = []
    for path in sorted(demo_dir.glob("*/*.png"))[:6]:
        label = int(path.parent.name == "malignant")
        rows.append(
            {
                "image_uri": str(path),
                "label": label,
                "score": 0.3 + 0.4 * label,
                "outcome": "TP" if label else "TN",
                "pred": label,
                "mask_uri": str(demo_dir / "masks" / path.parent.name / path.name),
            }
        )
    summary = gradcam.explain(
        tiny_classifier, pd.DataFrame(rows), tmp_path, image_size=32, n_samples=4, seed=0
    )
    assert (tmp_path / GRADCAM_GRID_FILE).stat().st_size > 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    assert summary["n_with_mask"] == 4
    assert 0.0 <= summary["energy_in_mask"] <= 1.0
    assert 0.0 <= summary["pointing_game"] <= 1.0
