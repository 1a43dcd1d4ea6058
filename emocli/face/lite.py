"""The face network's runtime form, ``face.tflite``: written from the Keras network, run by LiteRT
without TensorFlow, and turned back into the Keras network for training and GPUs.

A bundle stores emo-cnn once. TensorFlow Lite folds each BatchNorm layer into the convolution
before it (and the input's rescaling into the first), so ``face_bn.npz`` keeps the four arrays of
each BatchNorm layer (3,840 values for emo-cnn's 48-px network) and :func:`keras_from_lite`
divides the folding back out: the Keras network is rebuilt to float32 rounding, and checked to
score as ``face.tflite`` does. Networks of other shapes (frozen backbones, ensembles, VGG-Face)
keep ``face.keras`` as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

from emocli.errors import ModelError, ParameterError
from emocli.face.networks import build_emo_cnn, feature_network
from emocli.files import atomic_path
from emocli.quiet_imports import import_keras, lite_interpreter, quiet_fd2

RUNTIME_FILE = "face.tflite"  # the network as TensorFlow Lite: what `predict` runs on a CPU
NORM_FILE = "face_bn.npz"  # with RUNTIME_FILE: the BatchNorm arrays that rebuild the Keras network
KERAS_FILE = "face.keras"  # the Keras network, for networks face.tflite cannot rebuild
RUNTIME_MAX_PARAMS = 20_000_000  # larger networks (VGG-Face) are run by Keras only
# Largest difference of a score or an fc2 feature between a rebuilt Keras network and face.tflite
# (float32 rounding of the division and of the two runtimes' sums: about 1e-6 for emo-cnn)
REBUILD_TOLERANCE = 1e-3


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

    def constant_weights(self) -> tuple[list, list]:
        """The network's constant weights, in graph order: each convolution's (kernel OHWI, bias) and
        each fully-connected layer's (weights (out, in), bias), as float32."""
        it = self._it
        ops = it._get_ops_details()
        made_by = {t: op for op in ops for t in op["outputs"]}

        def const(index):
            op = made_by.get(index)
            if op is not None and op["op_name"] == "DEQUANTIZE":  # float16 weights
                index = op["inputs"][0]
            return np.asarray(it.get_tensor(index), np.float32)

        def weights(op):
            kernel = const(op["inputs"][1])
            bias_index = op["inputs"][2] if len(op["inputs"]) > 2 else -1
            # the converter leaves out a bias that is all zeros (an untrained dense layer)
            return kernel, const(bias_index) if bias_index >= 0 else np.zeros(len(kernel), np.float32)

        convs = [weights(op) for op in ops if op["op_name"] == "CONV_2D"]
        dense = [weights(op) for op in ops if op["op_name"] == "FULLY_CONNECTED"]
        return convs, dense


# --------------------------------------------------------------------------------------
# One stored form: face.tflite and the BatchNorm arrays its folding removed


def emo_cnn_settings(net) -> dict | None:
    """The :func:`~emocli.face.networks.build_emo_cnn` arguments that build ``net`` layer for layer
    (same layers, settings and weight shapes), or None when ``net`` is not such a network."""
    try:
        size, side, channels = (int(v) for v in net.inputs[0].shape[1:])
        settings = {"n_classes": int(net.outputs[0].shape[-1]), "width": int(net.get_layer("block1_conv1").filters),
                    "size": size, "channels": channels}
    except (ValueError, AttributeError, TypeError, IndexError):
        return None
    twin = build_emo_cnn(**settings)
    return settings if side == size and _layout(twin) == _layout(net) else None


def _layout(net) -> list:
    return [(type(layer).__name__, json.dumps(layer.get_config(), sort_keys=True, default=str),
             [tuple(w.shape) for w in layer.weights]) for layer in net.layers]


def _batch_norms(net) -> list:
    keras = import_keras()
    return [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]


def norm_arrays(net) -> dict[str, np.ndarray]:
    """Each BatchNorm layer's gamma, beta, moving mean and variance (float32) and epsilon."""
    out = {}
    for bn in _batch_norms(net):
        for key, value in zip(("gamma", "beta", "mean", "variance"), bn.get_weights()):
            out[f"{bn.name}/{key}"] = np.asarray(value, np.float32)
        out[f"{bn.name}/epsilon"] = np.float64(bn.epsilon)
    return out


def keras_from_lite(lite_path: Path, norm_path: Path, n_labels: int):
    """The Keras emo-cnn that ``face.tflite`` was written from, rebuilt from it and ``face_bn.npz``.

    Raises ModelError (naming the files and the fix) when they do not rebuild a network that scores
    as ``face.tflite`` does.
    """
    lite_path, norm_path = Path(lite_path), Path(norm_path)
    fix = "restore the bundle, or retrain it with `emo train-video`"
    try:
        lite = LiteNetwork(lite_path, n_labels)
        convs, dense = lite.constant_weights()
        with np.load(norm_path, allow_pickle=False) as z:
            norm = {key: z[key] for key in z.files}
        size, _, channels = lite.input_shape
        net = build_emo_cnn(n_classes=n_labels, width=len(convs[0][0]), size=size, channels=channels)
        _set_unfolded(net, convs, dense, norm)
    except Exception as exc:  # flatbuffer, npz, shape or key errors
        raise ModelError(f"{lite_path}, {norm_path.name}: cannot rebuild the face network ({type(exc).__name__}: "
                         f"{exc}); {fix}") from None
    gap = rebuild_gap(net, lite)
    if not gap <= REBUILD_TOLERANCE:
        raise ModelError(f"{lite_path}, {norm_path.name}: the rebuilt face network scores {gap:.2g} away from "
                         f"face.tflite; {fix}")
    return net


def _set_unfolded(net, convs: list, dense: list, norm: dict) -> None:
    """Set ``net``'s weights: convolution kernels with their BatchNorm scale (and the input's
    rescaling, for the first) divided back out, dense layers as stored, BatchNorm from ``norm``."""
    keras = import_keras()
    convs, dense = iter(convs), iter(dense)
    input_scale = 1.0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Rescaling):
            input_scale *= float(layer.scale)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, _ = next(convs)
            bn = layer.name.replace("_conv", "_bn")
            scale = norm[f"{bn}/gamma"].astype(np.float64) / np.sqrt(norm[f"{bn}/variance"] + norm[f"{bn}/epsilon"])
            layer.set_weights([(np.transpose(kernel, (1, 2, 3, 0)) / (scale * input_scale)).astype(np.float32)])
            input_scale = 1.0
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([norm[f"{layer.name}/{key}"] for key in ("gamma", "beta", "mean", "variance")])
        elif isinstance(layer, keras.layers.Dense):
            w, b = next(dense)
            layer.set_weights([w.T, b])
    if next(convs, None) is not None or next(dense, None) is not None:
        raise ModelError("face.tflite has more layers than emo-cnn")


def rebuild_gap(net, lite: "LiteNetwork") -> float:
    """Largest difference between the Keras ``net``'s and ``lite``'s fc2 features and scores on a
    fixed batch of random faces."""
    x = np.random.default_rng(0).uniform(0, 255, (8, *lite.input_shape)).astype(np.float32)
    ours = feature_network(net)(x, training=False)
    theirs = lite(x)
    return float(max(np.abs(np.asarray(a, np.float32) - b).max() for a, b in zip(ours, theirs)))


def stored_as(directory: Path) -> str:
    """The file(s) a saved bundle holds its face network in, for messages."""
    directory = Path(directory)
    if (directory / KERAS_FILE).is_file():
        return str(directory / KERAS_FILE)
    return f"{directory / RUNTIME_FILE} (+ {NORM_FILE})"


def write_single_form(directory: Path, net) -> bool:
    """Write ``face_bn.npz`` beside the ``face.tflite`` exported from ``net`` when the two rebuild it
    (emo-cnn); True when they do, else nothing is left written and ``face.keras`` must be kept."""
    directory = Path(directory)
    if emo_cnn_settings(net) is None:
        return False
    with atomic_path(directory / NORM_FILE, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **norm_arrays(net))
    try:
        rebuilt = keras_from_lite(directory / RUNTIME_FILE, directory / NORM_FILE, int(net.outputs[0].shape[-1]))
        same = all(np.allclose(a, b, rtol=1e-5, atol=1e-6)
                   for a, b in zip(rebuilt.get_weights(), net.get_weights()))
    except ModelError:
        same = False
    if not same:
        (directory / NORM_FILE).unlink()
    return same
