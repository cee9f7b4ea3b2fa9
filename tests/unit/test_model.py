"""The classifier: preprocessing inside the model, Stage 1 freezing, Stage 2 unfreezing, weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from melanoma_mlops.errors import WeightsError
from melanoma_mlops.model import network as model


def test_preprocess_layer_matches_keras_resnet50_preprocess_input() -> None:
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = model.ResNetPreprocess()(x)
    theirs = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-4)


def test_stage1_trains_only_the_head(tiny_classifier) -> None:
    trainable = {w.path for w in tiny_classifier.trainable_weights}
    assert trainable and all(p.startswith("malignancy/") for p in trainable), trainable


def test_stage2_unfreezes_everything_but_batchnorm_when_asked() -> None:
    import keras

    clf = model.build_classifier(32, "none", 0.2)
    model.unfreeze(clf, bn_inference=True)
    base = clf.get_layer(model.BASE_NAME)
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    assert bns and not any(b.trainable for b in bns)
    assert all(c.trainable for c in convs)
    model.unfreeze(clf, bn_inference=False)
    assert all(b.trainable for b in bns)


def test_saved_model_round_trips_with_its_custom_layer(tiny_classifier, tmp_path) -> None:
    path = tmp_path / "m.keras"
    tiny_classifier.save(path)
    loaded = model.load(path)
    x = tf.random.uniform((2, 32, 32, 3), 0, 255)
    np.testing.assert_allclose(loaded(x, training=False), tiny_classifier(x, training=False), atol=1e-5)


def test_imagenet_without_network_names_the_alternatives() -> None:
    # No network here (and tests isolate KERAS_HOME), so the download must fail cleanly.
    with pytest.raises(WeightsError) as err:
        model.build_base(32, "imagenet")
    message = str(err.value)
    assert "--weights none" in message
    assert "--weights /path/to/that.h5" in message


def test_missing_weights_file_is_named(tmp_path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.h5"):
        model.build_base(32, str(tmp_path / "nope.h5"))


def test_weights_file_is_loaded(tmp_path) -> None:
    base = model.build_base(32, "none")
    path = tmp_path / "resnet50_notop.weights.h5"
    base.save_weights(path)
    loaded = model.build_base(32, str(path))
    np.testing.assert_allclose(loaded.weights[0].numpy(), base.weights[0].numpy())
