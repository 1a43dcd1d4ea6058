"""Synthetic VGG-Face weight files and bundles for tests (no real weights are needed).

The files copy the HDF5 structure that Keras 2's ``save_weights`` writes, which is how
both public files were made:

* root attributes ``layer_names`` (every layer, in order), ``backend``, ``keras_version``;
* one group per layer with the attribute ``weight_names`` (empty for layers without
  weights) and one dataset per weight at ``<layer>/<weight name>``, e.g.
  ``conv1_1/conv1_1/kernel:0``. A name with ``/`` (keras-vggface's ``fc6/relu``) becomes a
  sub-group, exactly as h5py does it for Keras 2.

``keras-vggface`` files use that project's layer names (``keras_vggface/models.py``);
``deepface`` files use the names Keras 2 gives the layers of an unnamed Sequential model
(deepface's ``VGGFace.base_model``), with fc6/fc7/fc8 stored as convolutions.

``with tiny_vggface():`` makes emocli.face.vggface build, check and load a tiny network of the same
layout (layer names, pools, fc-as-convolution files) so that tests need not allocate 580 MB.

Reuse: ``from vggface_helpers import make_vggface_bundle`` (pytest puts ``tests/`` on
``sys.path``) builds a trained two-file face bundle for end-to-end tests of ``emo predict``.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from emocli.face import vggface
from emocli.face.vggface import CONV_LAYERS, FC_LAYERS

# A VGG-shaped network small enough to build, train and write in well under a second:
# the same 16 weighted layers, pools, names and fc-as-convolution layouts, small widths.
# 64 pixels make pool5 (2, 2, 8), so fc6 still reads a flattened grid (the deepface
# reshape (2, 2, 8, 16) -> (32, 16) keeps its channels-last order).
TINY_SIZE = 64
TINY_BLOCKS = ((4, 2), (4, 2), (8, 3), (8, 3), (8, 3))
TINY_FC = 16
TINY_CLASSES = 10
# Layer names after the input, in order, of build_vggface() at any size (checked at full size
# in test_vggface_architecture.py, at tiny size in test_vggface.py).
VGGFACE_LAYER_NAMES = (
    "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3", "pool3",
    "conv4_1", "conv4_2", "conv4_3", "pool4", "conv5_1", "conv5_2", "conv5_3", "pool5",
    "flatten", "fc6", "fc6_relu", "fc6_dropout", "fc7", "fc7_relu", "fc7_dropout", "fc8", "fc8_softmax",
)

Weights = dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (kernel, bias), as built by emocli.face.vggface


@contextmanager
def tiny_vggface():
    """Shrink the sizes in :mod:`emocli.face.vggface` (not its layer names or code) while the block runs.

    Every function there reads these module constants when called, so ``build_vggface``,
    ``load_vggface_weights`` and ``build_vggface_emotion`` then build, check and load the
    tiny network exactly as they do the real one. ``setattr`` refuses a constant that no
    longer exists, so a rename in ``emocli.face.vggface`` fails here rather than going unnoticed.
    """
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        fc = {"fc6": TINY_FC, "fc7": TINY_FC, "fc8": TINY_CLASSES}
        pool5 = (TINY_SIZE // 32, TINY_SIZE // 32, TINY_BLOCKS[-1][0])
        mp.setattr(vggface, "VGGFACE_SIZE", TINY_SIZE)
        mp.setattr(vggface, "VGGFACE_CLASSES", TINY_CLASSES)
        mp.setattr(vggface, "CONV_BLOCKS", TINY_BLOCKS)
        mp.setattr(vggface, "POOL5_SHAPE", pool5)
        mp.setattr(vggface, "FC_UNITS", fc)
        mp.setattr(vggface, "EXPECTED_SHAPES", vggface._expected_shapes())
        mp.setattr(vggface, "CONV_FC_SHAPES", {"fc6": pool5 + (TINY_FC,), "fc7": (1, 1, TINY_FC, TINY_FC),
                                                "fc8": (1, 1, TINY_FC, TINY_CLASSES)})
        yield


def shape_weights() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(kernel shape, bias shape) of every VGG layer, for layer lists written with :func:`shapes_only`."""
    return dict(vggface.EXPECTED_SHAPES)


def vgg_weights(model) -> Weights:
    """(kernel, bias) of every VGG layer that ``model`` has."""
    names = set(CONV_LAYERS + FC_LAYERS)
    return {layer.name: tuple(np.asarray(w) for w in layer.get_weights())
            for layer in model.layers if layer.name in names}


def write_keras2_h5(path: Path, layers: Sequence[tuple[str, Sequence[tuple[str, object]]]]) -> Path:
    """Write a Keras 2 ``save_weights`` file.

    ``layers``: (layer name, [(weight name, array or shape tuple)]). A shape tuple makes a
    dataset whose storage is never allocated: enough for tests that only read shapes.
    """
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode("utf8") for name, _ in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = [w.encode("utf8") for w, _ in weights]
            for wname, value in weights:
                if isinstance(value, tuple):
                    group.create_dataset(wname, shape=value, dtype="float32")
                else:
                    group.create_dataset(wname, data=np.asarray(value, np.float32))
    return path


def keras_vggface_layers(weights: Weights, *, include_top: bool = True):
    """The layer list of keras-vggface's ``VGG16`` (``keras_vggface/models.py``)."""
    out = [("input_1", [])]
    for b, (_, n) in enumerate(vggface.CONV_BLOCKS, start=1):
        for i in range(1, n + 1):
            name = f"conv{b}_{i}"
            out.append((name, [(f"{name}/kernel:0", weights[name][0]), (f"{name}/bias:0", weights[name][1])]))
        out.append((f"pool{b}", []))
    if include_top:
        out.append(("flatten", []))
        for name, act in (("fc6", "relu"), ("fc7", "relu"), ("fc8", "softmax")):
            out.append((name, [(f"{name}/kernel:0", weights[name][0]), (f"{name}/bias:0", weights[name][1])]))
            out.append((f"{name}/{act}", []))
    return out


def deepface_layers(weights: Weights):
    """The layer list of deepface's ``VGGFace.base_model`` as Keras 2 names it (fc layers as convolutions)."""
    counters: dict[str, int] = defaultdict(int)

    def auto(kind: str) -> str:
        counters[kind] += 1
        return f"{kind}_{counters[kind]}"

    out = []

    def conv(layer: str, kernel_shape=None):
        name = auto("conv2d")
        kernel, bias = weights[layer]
        if kernel_shape is not None:  # a shape tuple (see shape_weights) or an array
            kernel = kernel_shape if isinstance(kernel, tuple) else kernel.reshape(kernel_shape)
        out.append((name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", bias)]))

    names = iter(CONV_LAYERS)
    for _, n in vggface.CONV_BLOCKS:
        for _ in range(n):
            out.append((auto("zero_padding2d"), []))
            conv(next(names))
        out.append((auto("max_pooling2d"), []))
    conv("fc6", vggface.CONV_FC_SHAPES["fc6"])
    out.append((auto("dropout"), []))
    conv("fc7", vggface.CONV_FC_SHAPES["fc7"])
    out.append((auto("dropout"), []))
    conv("fc8", vggface.CONV_FC_SHAPES["fc8"])
    out.append((auto("flatten"), []))
    out.append((auto("activation"), []))
    return out


def shapes_only(layers):
    """The same layer list with every array replaced by its shape (no storage is written)."""
    return [(name, [(w, v if isinstance(v, tuple) else tuple(np.shape(v))) for w, v in ws]) for name, ws in layers]


def random_faces(n: int, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 RGB "faces" of random pixels."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def make_vggface_bundle(directory: Path, weights_path: Path, *, head: str = "exp2", seed: int = 0,
                        n_train: int = 8, n_val: int = 2):
    """Train a VGG-Face emotion model for one step on random faces and save it as a bundle.

    ``directory`` gets ``face.keras``, ``face.json`` and ``manifest.json``; returns the
    trained :class:`~emocli.face.model.FaceModel`. ``weights_path`` is a (synthetic or
    real) VGG-Face weight file: exp1 needs one with fc6.
    """
    from emocli.bundle import write_manifest
    from emocli.train.face import TrainOptions, FaceTrainingSet, fit_face_model
    from emocli.face.model import prepare_faces
    from emocli.face.vggface import build_vggface_emotion

    model, net = build_vggface_emotion(weights_path, head=head, mixed_precision=False)
    faces = random_faces(n_train + n_val, seed=seed)
    x = prepare_faces(faces, model.preprocessing)
    y = np.arange(len(faces)) % len(model.labels)
    fit_face_model(model, FaceTrainingSet(x[:n_train], y[:n_train], x[n_train:], y[n_train:]),
                   options=TrainOptions(epochs=1, batch_size=n_train, seed=seed), initial_network=net)
    model.save(directory)
    write_manifest(directory, labels=list(model.labels))
    return model
