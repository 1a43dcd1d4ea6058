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

Reuse: ``from vggface_helpers import make_vggface_bundle`` (pytest puts ``tests/`` on
``sys.path``) builds a trained two-file face bundle for end-to-end tests of ``emo predict``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from emocli.vggface import CONV_BLOCKS, CONV_FC_SHAPES, CONV_LAYERS, FC_LAYERS

Weights = dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (kernel, bias), as built by emocli.vggface


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
    for b, (_, n) in enumerate(CONV_BLOCKS, start=1):
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
        kernel = kernel.reshape(kernel_shape) if kernel_shape is not None else kernel
        out.append((name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", bias)]))

    names = iter(CONV_LAYERS)
    for _, n in CONV_BLOCKS:
        for _ in range(n):
            out.append((auto("zero_padding2d"), []))
            conv(next(names))
        out.append((auto("max_pooling2d"), []))
    conv("fc6", CONV_FC_SHAPES["fc6"])
    out.append((auto("dropout"), []))
    conv("fc7", CONV_FC_SHAPES["fc7"])
    out.append((auto("dropout"), []))
    conv("fc8", CONV_FC_SHAPES["fc8"])
    out.append((auto("flatten"), []))
    out.append((auto("activation"), []))
    return out


def shapes_only(layers):
    """The same layer list with every array replaced by its shape (no storage is written)."""
    return [(name, [(w, tuple(np.shape(v))) for w, v in ws]) for name, ws in layers]


def random_faces(n: int, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 RGB "faces" of random pixels."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def make_vggface_bundle(directory: Path, weights_path: Path, *, head: str = "exp2", seed: int = 0,
                        n_train: int = 8, n_val: int = 2):
    """Train a VGG-Face emotion model for one step on random faces and save it as a bundle.

    ``directory`` gets ``face.keras``, ``face.json`` and ``manifest.json``; returns the
    trained :class:`~emocli.video_model.FaceModel`. ``weights_path`` is a (synthetic or
    real) VGG-Face weight file: exp1 needs one with fc6.
    """
    from emocli.bundle import write_manifest
    from emocli.video_model import prepare_faces
    from emocli.vggface import build_vggface_emotion

    model, net = build_vggface_emotion(weights_path, head=head, mixed_precision=False)
    faces = random_faces(n_train + n_val, seed=seed)
    x = prepare_faces(faces, model.preprocessing)
    y = np.arange(len(faces)) % len(model.labels)
    model.fit(x[:n_train], y[:n_train], x_val=x[n_train:], y_val=y[n_train:], epochs=1,
              batch_size=n_train, seed=seed, initial_network=net)
    model.save(directory)
    write_manifest(directory, labels=list(model.labels))
    return model
