"""The face networks as Keras builds them: emo-cnn, a frozen backbone with the thesis's head,
the average of several networks, a copy in another precision, the augmentation used in
training, and re-estimating BatchNorm statistics.

TensorFlow is imported inside functions so that ``emo --help`` stays instant.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from emocli.choices import PRECISIONS
from emocli.errors import ModelError, ParameterError
from emocli.labels import LABELS
from emocli.quiet_imports import import_keras

FACE_SIZE = 48  # pixels: FER2013's crop size, the default network's input side
FEATURE_LAYER = "fc2"  # 256-unit layer whose activations feed feature-level fusion
SCORES_LAYER = "scores"

# Augmentation, as in the thesis: rotation, horizontal flips, zoom and shifts.
AUG_ROTATION_DEG = 30.0
AUG_ZOOM = 0.15  # +-15 %
AUG_SHIFT = 0.10  # +-10 % of the side


def build_classifier(x, *, n_classes: int, dropout: float = 0.4):
    """The thesis's best head: FC 512 -> FC 256 -> softmax."""
    from keras import layers

    x = layers.Dropout(dropout, name="head_dropout0")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="head_dropout1")(x)
    x = layers.Dense(256, activation="relu", name=FEATURE_LAYER)(x)
    x = layers.Dropout(dropout / 2, name="head_dropout2")(x)
    return layers.Dense(n_classes, activation="softmax", name=SCORES_LAYER, dtype="float32")(x)


def build_emo_cnn(*, n_classes: int = len(LABELS), width: int = 32, size: int = FACE_SIZE, channels: int = 1):
    """emo's default face network: VGG-style blocks + the thesis's head.

    Input: float32 (N, size, size, channels), pixels in [0, 255] (grey: 1 channel, colour: 3).
    The blocks end in a flatten, so the first dense layer's input grows with ``size``.
    """
    keras = import_keras()
    from keras import layers

    inp = keras.Input((size, size, channels), name="face")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
    for b, filters in enumerate((width, 2 * width, 4 * width, 8 * width), start=1):
        for c in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inp, build_classifier(x, n_classes=n_classes), name="emo_cnn")


def build_frozen_backbone_model(backbone, *, n_classes: int = len(LABELS), feature_layer: str | None = None):
    """Freeze ``backbone`` (a Keras model) and put the thesis's head on top.

    ``feature_layer`` names the backbone layer to take features from (default: the layer
    before its classifier, i.e. the last layer whose output is not a probability vector).
    """
    keras = import_keras()
    from keras import layers

    if feature_layer is None:
        feature_layer = _default_feature_layer(backbone)
    try:
        feat = backbone.get_layer(feature_layer).output
    except ValueError as exc:
        names = ", ".join(layer.name for layer in backbone.layers[-6:])
        raise ModelError(f"backbone has no layer {feature_layer!r}; its last layers are: {names}") from exc
    trunk = keras.Model(backbone.inputs, feat, name="backbone")
    trunk.trainable = False
    inp = keras.Input(backbone.inputs[0].shape[1:], name="face")
    x = trunk(inp, training=False)
    if len(x.shape) > 2:
        x = layers.Flatten(name="flatten")(x) if math.prod(x.shape[1:]) <= 8192 else layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, build_classifier(x, n_classes=n_classes), name="frozen_backbone")


def _default_feature_layer(model) -> str:
    layers_ = model.layers
    for layer in reversed(layers_[:-1]):
        if "activation" in type(layer).__name__.lower() or "softmax" in layer.name:
            continue
        return layer.name
    raise ModelError("could not find a feature layer in the backbone; pass one explicitly")


def augmenter(seed: int = 0, *, rotation: float = AUG_ROTATION_DEG, zoom: float = AUG_ZOOM,
              shift: float = AUG_SHIFT):
    """Random rotation (+-``rotation`` degrees), horizontal flip, zoom and shift, as in the thesis."""
    keras = import_keras()
    from keras import layers

    steps = [layers.RandomFlip("horizontal", seed=seed)]
    if rotation > 0:
        steps.append(layers.RandomRotation(rotation / 360.0, fill_mode="reflect", seed=seed + 1))
    if zoom > 0:
        steps.append(layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2))
    if shift > 0:
        steps.append(layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 3))
    return keras.Sequential(steps, name="augment")


def average_networks(nets: Sequence, names: Sequence[str]):
    """One functional model whose scores are the mean of the members' scores.

    Built from standard layers only (it loads in Keras safe mode): each member up to its fc2
    features; ``fc2`` = their concatenation (the ensemble's feature-fusion input); one Dense
    with the members' own softmax weights side by side gives both members' logits; a softmax
    per member and their mean give ``scores``.
    """
    keras = import_keras()
    from keras import layers

    inp = keras.Input(nets[0].inputs[0].shape[1:], name="face")
    feats, kernels, biases = [], [], []
    for net, name in zip(nets, names):
        member = keras.Model(net.inputs[0], net.get_layer(FEATURE_LAYER).output, name=name)
        feats.append(member(inp))
        w, b = net.get_layer(SCORES_LAYER).get_weights()
        kernels.append(w)
        biases.append(b)
    k, n = len(nets), kernels[0].shape[1]
    fc2 = layers.Concatenate(name=FEATURE_LAYER)(feats)
    logits = layers.Dense(k * n, name="member_logits")(fc2)
    probs = layers.Softmax(axis=-1, name="member_scores")(layers.Reshape((k, n), name="per_member")(logits))
    out = layers.GlobalAveragePooling1D(name=SCORES_LAYER, dtype="float32")(probs)
    model = keras.Model(inp, out, name="emo_cnn_ensemble")
    kernel = np.zeros((sum(w.shape[0] for w in kernels), k * n), np.float32)
    row = 0
    for i, w in enumerate(kernels):  # block-diagonal: member i's features -> member i's logits
        kernel[row:row + w.shape[0], i * n:(i + 1) * n] = w
        row += w.shape[0]
    model.get_layer("member_logits").set_weights([kernel, np.concatenate(biases)])
    return model


def with_precision(net, policy: str):
    """A copy of the (flat, functional) network ``net`` whose layers compute in ``policy``.

    Training in ``mixed_bfloat16`` doubles throughput on CPUs with AVX512-BF16/AMX (and
    ``mixed_float16`` on GPUs); the softmax stays float32, and networks are always converted
    back to float32 before they are saved, so a bundle scores the same on every machine.
    """
    keras = import_keras()
    if policy not in PRECISIONS:
        raise ModelError(f"unknown precision {policy!r}; use one of {', '.join(PRECISIONS)}")

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.Model):
            raise ModelError("mixed precision needs a flat network (emo-cnn); this backbone nests a model")
        if layer.name != SCORES_LAYER and "dtype" in cfg:
            cfg["dtype"] = policy
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(net, clone_function=clone)
    new.set_weights(net.get_weights())
    return new


def _all_layers(net):
    """The layers of a Keras model, nested models' layers included."""
    for layer in net.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def refresh_batch_norm(net, batches) -> int:
    """Re-estimate ``net``'s BatchNorm moving statistics on ``batches`` (an iterable of network
    input), in place: each trainable BatchNorm layer's moving mean and variance become the plain
    mean of its batch statistics over all batches (SWA's ``update_bn``). Dropout is off meanwhile.

    A network trained with augmentation keeps statistics of augmented faces (rotated, zoomed,
    shifted, with filled borders) averaged with a momentum over the last steps of training; faces
    at inference are neither. Frozen BatchNorm layers (``trainable=False``) are left as they are.
    Returns the number of layers refreshed.
    """
    import itertools

    keras = import_keras()
    layers = list(_all_layers(net))
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    drops = [(layer, layer.rate) for layer in layers if isinstance(layer, keras.layers.Dropout)]
    if not bns:
        return 0
    batches = iter(batches)
    first = next(batches, None)
    if first is None:  # before any statistic is reset: the network stays as it was
        raise ParameterError("no faces to estimate the BatchNorm statistics on")
    momenta = [bn.momentum for bn in bns]
    try:
        for drop, _ in drops:
            drop.rate = 0.0
        for bn in bns:
            bn.moving_mean.assign(np.zeros(bn.moving_mean.shape, bn.moving_mean.dtype))
            bn.moving_variance.assign(np.ones(bn.moving_variance.shape, bn.moving_variance.dtype))
        for k, batch in enumerate(itertools.chain([first], batches)):
            for bn in bns:
                bn.momentum = k / (k + 1)  # a running mean: batch k gets weight 1 / (k + 1)
            net(np.asarray(batch, np.float32), training=True)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        for drop, rate in drops:
            drop.rate = rate
    return len(bns)


def feature_network(net):
    """``net`` with two outputs: its fc2 features and its scores."""
    keras = import_keras()
    # A single input tensor (not a list), so calling it with one array matches its structure.
    return keras.Model(net.inputs[0], [net.get_layer(FEATURE_LAYER).output, net.outputs[0]])


def inference_copy(net):
    """The same network without optimizer state (a third of the file size, nothing to resume)."""
    keras = import_keras()

    clean = keras.Model.from_config(net.get_config())
    clean.set_weights(net.get_weights())
    return clean
