"""Frozen BatchNorm folded into the convolution before it, in the training model only.

A BatchNormalization layer that does not train (Stage 1's frozen base; Stage 2 with
``--bn-inference``, the default) is a fixed per-channel affine map, ``y = x * s + t`` with
``s = gamma / sqrt(moving_variance + eps)`` and ``t = beta - moving_mean * s``. After a convolution
with kernel ``W`` and bias ``b`` it is the same as *one* convolution with kernel ``W * s`` and bias
``b * s + t``. Computed that way the activations are written once instead of three more times (the
scale, the shift; under mixed precision also a cast to float32 and back, since Keras' BatchNorm
upcasts), TensorFlow fuses the remaining bias and ReLU into the convolution, and the backward pass
loses the same elementwise work. ResNet50 has 53 such pairs.

It is the same function with the same gradients: ``W * s`` is recomputed from the live variables at
every step, so the gradient reaching ``W`` is ``s x`` the gradient of the folded kernel, exactly what
the unfolded graph gives (tests/unit/test_speed_fold.py compares outputs and gradients). Nothing is
copied: :class:`FoldedGraph` runs the classifier's own layers and variables, in the classifier's
variable order (so checkpoints and early stopping's best weights are unchanged); the saved
classifier is the ordinary Keras ResNet50, for evaluation, Grad-CAM and serving. A BatchNorm that
trains (``--bn-inference false``) computes batch statistics and is left as it is.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf
from keras import layers, ops

logger = logging.getLogger(__name__)


def foldable_pairs(model: keras.Model) -> dict[int, layers.BatchNormalization]:
    """id(Conv2D) -> the BatchNormalization that alone consumes its output, in ``model`` and any
    functional model nested in it (channels-last, ungrouped, linear convolutions only)."""
    pairs: dict[int, layers.BatchNormalization] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            pairs |= foldable_pairs(layer)
            continue
        if not isinstance(layer, layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        parents = layer._inbound_nodes[0].parent_nodes
        conv = parents[0].operation if len(parents) == 1 else None
        if (
            isinstance(conv, layers.Conv2D)
            and len(conv._outbound_nodes) == 1
            and conv.groups == 1
            and conv.data_format == "channels_last"
            and conv.activation is keras.activations.linear
            and layer.axis in (-1, 3)
        ):
            pairs[id(conv)] = layer
    return pairs


def folded_conv(conv: layers.Conv2D, bn: layers.BatchNormalization, x: tf.Tensor) -> tf.Tensor:
    """``bn(conv(x))`` for a BatchNorm in inference mode, as one convolution plus a bias."""
    scale = ops.rsqrt(ops.cast(bn.moving_variance, "float32") + bn.epsilon)
    if bn.scale:
        scale = scale * ops.cast(bn.gamma, "float32")
    shift = -ops.cast(bn.moving_mean, "float32") * scale
    if bn.center:
        shift = shift + ops.cast(bn.beta, "float32")
    if conv.use_bias:
        shift = shift + ops.cast(conv.bias, "float32") * scale
    dtype = conv.compute_dtype
    kernel = ops.cast(ops.cast(conv.kernel, "float32") * scale, dtype)
    y = ops.conv(
        ops.cast(x, dtype),
        kernel,
        strides=conv.strides,
        padding=conv.padding,
        dilation_rate=conv.dilation_rate,
        data_format="channels_last",
    )
    # BiasAdd (not a broadcast add): the op TensorFlow fuses into the convolution with the ReLU.
    return tf.nn.bias_add(y, ops.cast(shift, dtype))


class FoldedGraph(layers.Layer):
    """Runs a functional model's graph with every frozen (Conv2D, BatchNorm) pair as one convolution.

    The model is tracked as this layer's only child, so the layer's variables *are* the model's, in
    its order; training through this layer trains the model.
    """

    def __init__(self, model: keras.Model, **kwargs: object) -> None:
        kwargs.setdefault("name", f"{model.name}_folded")
        super().__init__(dtype=model.dtype_policy, **kwargs)
        self.model = model
        self._pairs = foldable_pairs(model)
        self._bns = {id(bn) for bn in self._pairs.values()}

    @property
    def folded(self) -> int:
        """How many pairs are folded now (BatchNorm layers that train are not)."""
        return sum(not bn.trainable for bn in self._pairs.values())

    def _run(self, model: keras.Model, inputs, training):
        def operation(op):
            bn = self._pairs.get(id(op))
            if bn is not None and not bn.trainable:
                return lambda x, **_: folded_conv(op, bn, x)
            if id(op) in self._bns and not op.trainable:
                return lambda x, **_: x  # already applied by its convolution
            if isinstance(op, keras.Model):
                return lambda *args, **_: self._run(op, list(args), training)
            return lambda *args, **kwargs: op(*args, **_with_training(op, kwargs, training))

        out = model._run_through_graph(inputs, operation_fn=operation)
        return out[0] if isinstance(out, list | tuple) and len(out) == 1 else out

    def call(self, inputs, training=None):  # type: ignore[override]
        return self._run(self.model, [inputs], training)

    def compute_output_shape(self, input_shape):  # type: ignore[override]
        return self.model.compute_output_shape(input_shape)


def _with_training(op: object, kwargs: dict, training: object) -> dict:
    """Pass ``training`` on to the layers that take it, as a functional model's call does."""
    if training is not None and getattr(op, "_call_has_training_arg", False):
        return {**kwargs, "training": training}
    return kwargs


def fold(model: keras.Model) -> keras.layers.Layer:
    """``model`` as a layer that folds its frozen BatchNorm layers; ``model`` itself when it has
    none to fold or its graph cannot be walked (a Keras internals change: logged, never fatal)."""
    try:
        folded = FoldedGraph(model)
    except (AttributeError, TypeError, IndexError) as exc:
        logger.warning("BatchNorm folding unavailable (%s): training the unfolded graph", exc)
        return model
    if not folded.folded:
        return model
    logger.info("%d frozen BatchNorm layers folded into their convolutions", folded.folded)
    return folded
