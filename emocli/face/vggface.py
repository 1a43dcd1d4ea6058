"""VGG-Face in Keras 3, its public weight files, and the thesis's transfer-learning heads.

VGG-Face (Parkhi, Vedaldi & Zisserman, "Deep Face Recognition", BMVC 2015) is VGG-16
trained to tell 2,622 people apart. The thesis froze its convolutional blocks and trained
new fully-connected layers on facial expressions. emo cannot ship or download the
weights (see ``docs/vggface.md``): the user brings one of these files and names it with
``--weights PATH`` or the environment variable ``EMO_VGGFACE_WEIGHTS``.

Weight files this module reads (HDF5 written by Keras 2 ``save_weights``/``save``,
read here with h5py: no model is deserialised, no code runs):

``rcmalli_vggface_tf_vgg16.h5`` / ``rcmalli_vggface_tf_notop_vgg16.h5`` (keras-vggface v2.0)
    Layers named ``conv1_1`` ... ``conv5_3`` (kernels 3x3xCinxCout), and in the full
    file ``fc6`` (25088, 4096), ``fc7`` (4096, 4096), ``fc8`` (4096, 2622) as Dense
    kernels; ``fc6`` reads the channels-last flattening of ``pool5`` (7, 7, 512).
    Matched by layer name.
``vgg_face_weights.h5`` (deepface)
    deepface's Sequential model (ZeroPadding2D + Convolution2D, then fc6/fc7/fc8 as
    convolutions with kernels (7, 7, 512, 4096), (1, 1, 4096, 4096), (1, 1, 4096, 2622),
    Flatten, softmax). Its layers carry no names in deepface's code, so the names in the
    file are whatever Keras generated when it was saved; deepface loads it with Keras's
    ``load_weights``, which matches layers by order. emo does the same: the 16 layers
    that hold weights are matched in order, and the convolutional fc kernels are
    reshaped to Dense kernels ((7, 7, 512, 4096) -> (25088, 4096) in C order, which is
    the channels-last ``Flatten`` order, so the result is the same function).

Every shape is checked before any weight is assigned; the first layer that does not
fit is named in a :class:`~emocli.errors.ModelError`.

Input convention (both files): 224x224 pixels, **BGR** channel order, values 0-255 minus
the VGG-Face mean pixel ``(93.5940, 104.7624, 129.1863)`` given in BGR order (keras-vggface
``utils.preprocess_input(version=1)``; deepface's ``normalization="VGGFace"``; deepface
feeds OpenCV BGR images). emo expresses this as ``Preprocessing(size=224, color="rgb",
scale=1.0, offset=(-129.1863, -104.7624, -93.5940), channels="bgr")``: the mean is
subtracted in RGB order, then the channels are reversed.

TensorFlow/Keras and h5py are imported inside functions so that ``emo --help`` stays instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emocli.choices import HEADS
from emocli.errors import ModelError
from emocli.face.model import FaceModel, Preprocessing
from emocli.face.networks import FEATURE_LAYER, SCORES_LAYER, build_frozen_backbone_model, build_classifier
from emocli.labels import LABELS
from emocli.quiet_imports import gpu_available

VGGFACE_SIZE = 224  # pixels: the network's input side
VGGFACE_CLASSES = 2622  # identities in the VGG-Face dataset: fc8's width
VGGFACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)  # mean training pixel, B, G, R (0-255)
WEIGHTS_ENV = "EMO_VGGFACE_WEIGHTS"

FC_DROPOUT = 0.5  # VGG-Face's dropout after fc6 and fc7

# (filters, convolutions) per block; every convolution is 3x3, stride 1, "same", ReLU,
# and every block ends with a 2x2 max-pool of stride 2.
CONV_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
CONV_LAYERS = tuple(f"conv{b}_{i}" for b, (_, n) in enumerate(CONV_BLOCKS, start=1) for i in range(1, n + 1))
FC_LAYERS = ("fc6", "fc7", "fc8")
WEIGHTED_LAYERS = CONV_LAYERS + FC_LAYERS  # the 16 layers with weights, in network order
POOL5_SHAPE = (7, 7, 512)
FC_UNITS = {"fc6": 4096, "fc7": 4096, "fc8": VGGFACE_CLASSES}

_WEIGHTS_HELP = (f"pass --weights PATH or set the environment variable {WEIGHTS_ENV}=PATH "
                 "(keras-vggface's rcmalli_vggface_tf_vgg16.h5 or rcmalli_vggface_tf_notop_vgg16.h5, or "
                 "deepface's vgg_face_weights.h5; emo never downloads them, see docs/vggface.md)")


def _expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(kernel, bias) shape of each weighted layer as built here (fc layers as Dense)."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    c_in = 3
    names = iter(CONV_LAYERS)
    for filters, n in CONV_BLOCKS:
        for _ in range(n):
            shapes[next(names)] = ((3, 3, c_in, filters), (filters,))
            c_in = filters
    n_in = int(np.prod(POOL5_SHAPE))
    for name in FC_LAYERS:
        shapes[name] = ((n_in, FC_UNITS[name]), (FC_UNITS[name],))
        n_in = FC_UNITS[name]
    return shapes


EXPECTED_SHAPES = _expected_shapes()
# The same fc layers written as convolutions (deepface's layout, the original Caffe/MatConvNet form).
CONV_FC_SHAPES = {"fc6": POOL5_SHAPE + (4096,), "fc7": (1, 1, 4096, 4096), "fc8": (1, 1, 4096, VGGFACE_CLASSES)}


# --------------------------------------------------------------------------------------
# The network


def build_vggface(include_top: bool = True):
    """VGG-Face with keras-vggface's layer names; random weights (see :func:`load_vggface_weights`).

    Input: float32 (N, 224, 224, 3), BGR, 0-255 minus :data:`VGGFACE_MEAN_BGR`.
    Output: with ``include_top`` the 2,622 identity probabilities (N, 2622), otherwise
    ``pool5`` (N, 7, 7, 512). Layers: ``conv1_1`` ... ``conv5_3``, ``pool1`` ... ``pool5``,
    then ``flatten``, ``fc6``, ``fc6_relu``, ``fc6_dropout``, ``fc7``, ``fc7_relu``,
    ``fc7_dropout``, ``fc8``, ``fc8_softmax`` (keras-vggface writes ``fc6/relu``; Keras 3
    forbids ``/`` in names, and these layers hold no weights). 145,002,878 parameters
    with the top, 14,714,688 without.
    """
    return _build("fc8" if include_top else "pool5")


def _build(upto: str, *, initializer: str = "glorot_uniform"):
    """VGG-Face up to ``pool5``, ``fc6`` (after its ReLU) or ``fc8`` (softmax).

    ``initializer="zeros"`` for layers that will be overwritten by pretrained weights: the
    initializer is stored with the network, and drawing 100 M random numbers again at
    every load of a saved bundle costs seconds.
    """
    import keras
    from keras import layers

    inp = keras.Input((VGGFACE_SIZE, VGGFACE_SIZE, 3), name="face")
    x = inp
    for b, (filters, n) in enumerate(CONV_BLOCKS, start=1):
        for i in range(1, n + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=initializer,
                              name=f"conv{b}_{i}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{b}")(x)
    if upto != "pool5":
        x = layers.Flatten(name="flatten")(x)
        for name in FC_LAYERS[:1] if upto == "fc6" else FC_LAYERS[:2]:
            x = layers.Dense(FC_UNITS[name], kernel_initializer=initializer, name=name)(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
            if upto == "fc8":
                x = layers.Dropout(FC_DROPOUT, name=f"{name}_dropout")(x)
        if upto == "fc8":
            x = layers.Dense(VGGFACE_CLASSES, kernel_initializer=initializer, name="fc8")(x)
            x = layers.Softmax(name="fc8_softmax", dtype="float32")(x)
    return keras.Model(inp, x, name="vggface_vgg16")


# --------------------------------------------------------------------------------------
# Weight files


def resolve_weights(path_or_none: str | os.PathLike | None) -> Path:
    """The VGG-Face weight file: the argument, else ``$EMO_VGGFACE_WEIGHTS``.

    Raises
    ------
    ModelError
        When neither is given, or the file does not exist; the message says where to
        put it (``--weights PATH`` or ``EMO_VGGFACE_WEIGHTS``).
    """
    source = "--weights"
    if path_or_none is None or str(path_or_none) == "":
        env = os.environ.get(WEIGHTS_ENV, "")
        if not env:
            raise ModelError(f"VGG-Face weights not given: {_WEIGHTS_HELP}")
        path_or_none, source = env, WEIGHTS_ENV
    return _existing_file(Path(path_or_none).expanduser(), source)


def _existing_file(path: Path, source: str = "--weights") -> Path:
    if not path.is_file():
        raise ModelError(f"{path}: VGG-Face weight file not found (given by {source}); put the file there, or "
                         f"{_WEIGHTS_HELP}")
    return path


def load_vggface_weights(model, path: str | os.PathLike) -> str:
    """Copy a public VGG-Face weight file into the VGG layers of ``model``.

    ``model`` is anything with layers named as in :func:`build_vggface` (the full network,
    the ``_notop`` one, or an emotion network built on them). Layers of the file that
    ``model`` lacks are shape-checked and skipped (a full file loads into a no-top model).

    Parameters
    ----------
    model : keras.Model
    path : HDF5 weight file in one of the layouts described in the module docstring

    Returns
    -------
    str
        The layout found: ``"keras-vggface"``, ``"keras-vggface-notop"`` or ``"deepface"``.

    Raises
    ------
    ModelError
        The file is missing (the message names ``--weights``/``EMO_VGGFACE_WEIGHTS``), is
        not HDF5, has an unknown layout, has a layer whose shape differs from VGG-Face
        (the first such layer is named with expected and found shapes), or lacks a layer
        that ``model`` needs (e.g. ``fc6`` in a ``_notop`` file).
    """
    import h5py

    path = _existing_file(Path(path))
    if not h5py.is_hdf5(path):
        raise ModelError(f"{path}: not an HDF5 file; VGG-Face weights are .h5 files ({_WEIGHTS_HELP})")
    targets = {layer.name: layer for layer in model.layers if layer.name in EXPECTED_SHAPES and layer.weights}
    if not targets:
        raise ModelError(f"model {model.name!r} has no VGG-Face layers (conv1_1 ... fc8) to load weights into")
    with h5py.File(path, "r") as f:
        file_layers = _weighted_layers(f, path)
        layout, mapping = _match_layers(file_layers, path)
        # Check every shape first, so that a bad file leaves the model untouched.
        arrays = {}
        for name in WEIGHTED_LAYERS:
            if name in mapping:
                arrays[name] = _check_layer(name, *mapping[name], path)
        for name, layer in targets.items():
            if name not in arrays:
                hint = (" (a _notop file holds only the convolutions: use the full file, or --transfer exp2)"
                        if name in FC_LAYERS else "")
                raise ModelError(f"{path}: no weights for layer {name}{hint}")
            want = tuple(tuple(int(d) for d in w.shape) for w in layer.weights)
            have = (EXPECTED_SHAPES[name][0], EXPECTED_SHAPES[name][1])
            if want != have:
                raise ModelError(f"model layer {name} has weight shapes {want}, VGG-Face has {have}; "
                                 "the model was not built by emocli.face.vggface")
        for name, layer in targets.items():
            kernel_ds, bias_ds = arrays[name]
            kernel = np.asarray(kernel_ds[()], dtype=np.float32).reshape(EXPECTED_SHAPES[name][0])
            bias = np.asarray(bias_ds[()], dtype=np.float32)
            layer.set_weights([kernel, bias])
            del kernel, bias
    return layout


def _attr_list(group, name: str) -> list[str]:
    """A Keras string-list attribute, joined from its chunks (``name0``, ``name1``...) when split."""
    if name in group.attrs:
        values = [group.attrs[name]]
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.append(group.attrs[f"{name}{i}"])
            i += 1
    out: list[str] = []
    for v in values:
        for item in np.atleast_1d(v):
            out.append(item.decode("utf8") if isinstance(item, bytes) else str(item))
    return out


def _weighted_layers(f, path: Path) -> list[tuple[str, list[Any]]]:
    """(layer name, [datasets]) for every layer with weights, in the file's order."""
    root = f
    if "layer_names" not in f.attrs and "model_weights" in f:  # a full-model file (Keras 2 ``model.save``)
        root = f["model_weights"]
    names = _attr_list(root, "layer_names")
    if not names:
        raise ModelError(f"{path}: not a Keras HDF5 weight file (no 'layer_names' attribute); {_WEIGHTS_HELP}")
    out = []
    for name in names:
        if name not in root:
            raise ModelError(f"{path}: layer {name!r} is listed but has no group; the file is truncated or corrupt")
        group = root[name]
        weight_names = _attr_list(group, "weight_names")
        if not weight_names:
            continue
        try:
            out.append((name, [group[w] for w in weight_names]))
        except KeyError as exc:
            raise ModelError(f"{path}: layer {name!r} lists weights that are missing ({exc}); "
                             "the file is truncated or corrupt") from None
    return out


def _match_layers(file_layers: list[tuple[str, list[Any]]], path: Path):
    """Layout name and {VGG layer: (file layer name, datasets)}."""
    by_name = dict(file_layers)
    if "conv1_1" in by_name:  # keras-vggface: match by name
        mapping = {n: (n, by_name[n]) for n in WEIGHTED_LAYERS if n in by_name}
        missing_conv = [n for n in CONV_LAYERS if n not in mapping]
        if missing_conv:
            raise ModelError(f"{path}: keras-vggface layout without layer {missing_conv[0]}; "
                             "the file is not VGG-Face (VGG16) weights, or it is truncated")
        fcs = [n for n in FC_LAYERS if n in mapping]
        return ("keras-vggface" if fcs else "keras-vggface-notop"), mapping
    if len(file_layers) == len(WEIGHTED_LAYERS):  # deepface: unnamed Sequential, match by order
        return "deepface", {n: fl for n, fl in zip(WEIGHTED_LAYERS, file_layers)}
    found = ", ".join(n for n, _ in file_layers[:6]) + (" ..." if len(file_layers) > 6 else "")
    raise ModelError(f"{path}: unknown weight layout: {len(file_layers)} layers with weights ({found or 'none'}); "
                     "expected keras-vggface's (layers conv1_1 ... conv5_3 [fc6 fc7 fc8]) or deepface's "
                     f"vgg_face_weights.h5 (16 layers in order); {_WEIGHTS_HELP}")


def _check_layer(name: str, file_name: str, datasets: list[Any], path: Path):
    """(kernel, bias) datasets of one layer after checking their shapes and dtype."""
    kernel_shape, bias_shape = EXPECTED_SHAPES[name]
    allowed = [kernel_shape] + ([CONV_FC_SHAPES[name]] if name in CONV_FC_SHAPES else [])
    where = name if file_name == name else f"{name} (file layer {file_name!r})"
    shapes = [tuple(int(d) for d in ds.shape) for ds in datasets]
    expected = " or ".join(str(s) for s in allowed) + f" and bias {bias_shape}"
    kernels = [ds for ds in datasets if ds.ndim >= 2]
    biases = [ds for ds in datasets if ds.ndim == 1]
    ok = (len(datasets) == 2 and len(kernels) == 1 and len(biases) == 1
          and tuple(kernels[0].shape) in allowed and tuple(biases[0].shape) == bias_shape)
    if not ok:
        raise ModelError(f"{path}: layer {where} does not match VGG-Face: expected kernel {expected}, "
                         f"found {' and '.join(str(s) for s in shapes) or 'no arrays'}; "
                         "the file is not VGG-Face weights, or it is truncated or corrupt")
    for ds in datasets:
        if ds.dtype.kind != "f":
            raise ModelError(f"{path}: layer {where} holds {ds.dtype} values, not floating point")
    return kernels[0], biases[0]


# --------------------------------------------------------------------------------------
# The thesis's two heads


def vggface_preprocessing():
    """How a face crop becomes VGG-Face input (see the module docstring)."""
    b, g, r = VGGFACE_MEAN_BGR
    return Preprocessing(size=VGGFACE_SIZE, color="rgb", scale=1.0, offset=(-r, -g, -b), channels="bgr")


def build_vggface_emotion(weights_path: str | os.PathLike | None = None, head: str = "exp2",
                          n_classes: int = len(LABELS), *, labels: Sequence[str] | None = None,
                          mixed_precision: bool | None = None):
    """VGG-Face with frozen pretrained layers and a new expression head (the thesis's experiments).

    ``exp1``
        keeps ``fc6`` (4096 units, pretrained, frozen) and trains FC 256 (``fc2``) and a
        softmax (``scores``). Needs a weight file with ``fc6`` (not a ``_notop`` one).
    ``exp2``
        trains FC 512 (``fc1``) -> FC 256 (``fc2``) -> softmax (``scores``), emo's usual
        head, on the flattened ``pool5`` features (25,088). Any of the files will do.

    The convolutional blocks are always frozen.

    Parameters
    ----------
    weights_path : weight file, or None for ``$EMO_VGGFACE_WEIGHTS``
    head : "exp1" or "exp2"
    n_classes : outputs of ``scores``; ``labels`` (default emo's seven) must match
    mixed_precision : float16 compute; None = only when TensorFlow sees a GPU (never on CPU)

    Returns
    -------
    (FaceModel, keras.Model)
        An unfitted model (``backbone`` "vggface-exp1"/"vggface-exp2", BGR mean-subtracted
        224x224 preprocessing) and the network to pass to ``emocli.train.face.fit_face_model(initial_network=...)``.

    Raises
    ------
    ModelError
        Unknown head, missing/incompatible weight file (see :func:`load_vggface_weights`).
    """
    import keras
    from keras import layers

    if head not in HEADS:
        raise ModelError(f"unknown VGG-Face head {head!r}; use exp1 (frozen fc6 + FC 256) or exp2 (FC 512-256)")
    if labels is None:
        if n_classes != len(LABELS):
            raise ModelError(f"n_classes={n_classes} differs from emo's {len(LABELS)} emotions: pass labels")
        labels = LABELS
    if len(labels) != n_classes:
        raise ModelError(f"{len(labels)} labels for {n_classes} classes")
    path = resolve_weights(weights_path)
    if mixed_precision is None:
        mixed_precision = gpu_available()
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        vgg = _build("fc6" if head == "exp1" else "pool5", initializer="zeros")
        load_vggface_weights(vgg, path)
        for layer in vgg.layers:
            layer.trainable = False
        x = vgg.output
        if head == "exp1":
            x = layers.Dropout(FC_DROPOUT, name="fc6_dropout")(x)
            x = layers.Dense(256, activation="relu", name=FEATURE_LAYER)(x)
            x = layers.Dropout(0.2, name="head_dropout2")(x)
            out = layers.Dense(n_classes, activation="softmax", name=SCORES_LAYER, dtype="float32")(x)
        else:
            x = layers.Flatten(name="flatten")(x)
            out = build_classifier(x, n_classes=n_classes)
        net = keras.Model(vgg.input, out, name=f"vggface_{head}")
    finally:
        keras.config.set_dtype_policy(previous)
    model = FaceModel(backbone=f"vggface-{head}", preprocessing=vggface_preprocessing(), labels=tuple(labels))
    return model, net


# --------------------------------------------------------------------------------------
# Any Keras model as a frozen backbone

INPUT_RANGES = {"0-1": (1.0 / 255.0, 0.0), "0-255": (1.0, 0.0), "-1-1": (2.0 / 255.0, -1.0)}


def build_keras_backbone(path: str | os.PathLike, feature_layer: str | None = None, *,
                         n_classes: int = len(LABELS), input_range: str | None = None):
    """Freeze a user's own ``.keras`` model and put the thesis's FC 512-256 head on it.

    The file is loaded with ``safe_mode=True`` (no Lambda code runs). Legacy ``.h5``/``.hdf5``
    full models are refused: they may carry Lambda layers, which are arbitrary Python.

    Preprocessing follows the model's input shape (N, S, S, C): faces are resized to S x S,
    grey when C = 1, RGB when C = 3. Pixels are scaled to ``input_range``:

    ``"0-1"`` (default) x / 255; ``"0-255"`` raw pixels (chosen automatically when the
    model's first layer is ``Rescaling`` or ``Normalization``: it scales itself);
    ``"-1-1"`` x / 127.5 - 1.

    Parameters
    ----------
    path : a Keras 3 ``.keras`` file
    feature_layer : layer to take features from (default: the one before the classifier)
    n_classes : outputs of the new head
    input_range : see above; None = automatic

    Returns
    -------
    (FaceModel, keras.Model)
        ``backbone`` is ``"keras:NAME[#LAYER]"``.

    Raises
    ------
    ModelError
        Missing or non-``.keras`` file, a file Keras cannot load safely, an input that is
        not a square 1- or 3-channel image, an unknown ``feature_layer`` or ``input_range``.
    """
    import keras

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: backbone model not found; pass --backbone keras:PATH/TO/MODEL.keras[#LAYER]")
    if path.suffix.lower() != ".keras":
        raise ModelError(f"{path}: only Keras 3 .keras files are accepted as backbones (they load with safe_mode, "
                         "so no code runs); a .h5/.hdf5 full model may carry Lambda layers (arbitrary Python). "
                         "Re-save it where you trust it: keras.saving.load_model(old).save('model.keras')")
    try:
        net = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for bad or unsafe files
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelError(f"{path}: backbone file refused ({exc.__class__.__name__}: {why}); pass a Keras 3 .keras "
                         "file saved where you trust it") from None
    if len(net.inputs) != 1:
        raise ModelError(f"{path}: the backbone has {len(net.inputs)} inputs; a face backbone takes one image")
    shape = tuple(net.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise ModelError(f"{path}: input shape {shape} is not a square grey or RGB image (N, S, S, 1|3); "
                         "build the model with a fixed square input size")
    if input_range is None:
        first = next((layer for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)), None)
        scales_itself = isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization))
        input_range = "0-255" if scales_itself else "0-1"
    if input_range not in INPUT_RANGES:
        raise ModelError(f"unknown input range {input_range!r}; use one of {', '.join(INPUT_RANGES)}")
    scale, offset = INPUT_RANGES[input_range]
    channels = int(shape[3])
    pre = Preprocessing(size=int(shape[1]), color="gray" if channels == 1 else "rgb", scale=scale,
                        offset=(offset,) * channels)
    network = build_frozen_backbone_model(net, n_classes=n_classes, feature_layer=feature_layer)
    name = f"keras:{path.name}" + (f"#{feature_layer}" if feature_layer else "")
    return FaceModel(backbone=name, preprocessing=pre), network
