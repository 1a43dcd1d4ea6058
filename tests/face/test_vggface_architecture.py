"""VGG-Face at full size: the published architecture, its weight-file shape checks, its input.

The network is built with zero initialisers (under a second; no weights are drawn or
written) and the weight files hold shapes only, so nothing here allocates the 580 MB.
The loaders, heads and bundles are tested on a tiny network of the same layout in
``test_vggface.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from emocli.errors import ModelError
from emocli.face.model import Preprocessing, prepare_faces
from emocli.face.vggface import (
    CONV_LAYERS,
    EXPECTED_SHAPES,
    VGGFACE_MEAN_BGR,
    _build,
    load_vggface_weights,
    vggface_preprocessing,
)
from vggface_helpers import VGGFACE_LAYER_NAMES, deepface_layers, keras_vggface_layers, shape_weights, write_keras2_h5

# The published VGG-16 layout with VGG-Face's 2,622-way fc8 (Parkhi et al. 2015, table 3):
# 14,714,688 convolution parameters + fc6 102,764,544 + fc7 16,781,312 + fc8 10,742,334.
# (138,357,544 is the ImageNet VGG-16, whose fc8 has 1,000 outputs: 4,097,000.)
VGGFACE_PARAMS = 145_002_878
VGGFACE_NOTOP_PARAMS = 14_714_688

EXPECTED_OUTPUTS = {
    "conv1_1": (224, 224, 64), "conv1_2": (224, 224, 64), "pool1": (112, 112, 64),
    "conv2_1": (112, 112, 128), "conv2_2": (112, 112, 128), "pool2": (56, 56, 128),
    "conv3_1": (56, 56, 256), "conv3_2": (56, 56, 256), "conv3_3": (56, 56, 256), "pool3": (28, 28, 256),
    "conv4_1": (28, 28, 512), "conv4_2": (28, 28, 512), "conv4_3": (28, 28, 512), "pool4": (14, 14, 512),
    "conv5_1": (14, 14, 512), "conv5_2": (14, 14, 512), "conv5_3": (14, 14, 512), "pool5": (7, 7, 512),
    "flatten": (25088,), "fc6": (4096,), "fc6_relu": (4096,), "fc6_dropout": (4096,),
    "fc7": (4096,), "fc7_relu": (4096,), "fc7_dropout": (4096,), "fc8": (2622,), "fc8_softmax": (2622,),
}


@pytest.fixture(scope="module")
def full():
    """The full network, as build_vggface() makes it but with zero weights (drawing 145 M numbers is slow)."""
    return _build("fc8", initializer="zeros")


@pytest.fixture(scope="module")
def notop():
    return _build("pool5", initializer="zeros")


def test_architecture_matches_published_vgg_face(full, notop):
    model = full
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}
    assert shapes == EXPECTED_OUTPUTS
    assert list(EXPECTED_OUTPUTS) == list(VGGFACE_LAYER_NAMES)  # the tiny test network has these names too
    assert tuple(model.input.shape[1:]) == (224, 224, 3)
    for name, (kernel, bias) in EXPECTED_SHAPES.items():
        assert [tuple(w.shape) for w in model.get_layer(name).weights] == [kernel, bias], name
    for name in CONV_LAYERS:
        conv = model.get_layer(name)
        assert conv.kernel_size == (3, 3) and conv.padding == "same" and conv.activation.__name__ == "relu"
    assert model.get_layer("fc6_dropout").rate == 0.5 and model.get_layer("fc7_dropout").rate == 0.5
    assert model.count_params() == VGGFACE_PARAMS
    assert sum(int(np.prod(k)) + int(np.prod(b)) for k, b in EXPECTED_SHAPES.values()) == VGGFACE_PARAMS
    assert notop.count_params() == VGGFACE_NOTOP_PARAMS
    assert tuple(notop.output.shape[1:]) == (7, 7, 512)


def test_wrong_shape_names_the_first_bad_layer(notop, tmp_path):
    import h5py

    layers = keras_vggface_layers(shape_weights())
    bad = [(n, [(w, (3, 3, 256, 128) if w == "conv3_2/kernel:0" else s) for w, s in ws]) for n, ws in layers]
    bad = [(n, [(w, (4096, 1000) if w == "fc8/kernel:0" else s) for w, s in ws]) for n, ws in bad]
    path = write_keras2_h5(tmp_path / "bad.h5", bad)
    with pytest.raises(ModelError, match=r"layer conv3_2 .*expected kernel \(3, 3, 256, 256\).*found \(3, 3, 256, 128\)"):
        load_vggface_weights(notop, path)

    layers = deepface_layers(shape_weights())
    with h5py.File(write_keras2_h5(tmp_path / "deepface.h5", layers), "r") as f:  # fc layers as convolutions
        assert f["conv2d_14/conv2d_14/kernel:0"].shape == (7, 7, 512, 4096)
        assert f["conv2d_16/conv2d_16/kernel:0"].shape == (1, 1, 4096, 2622)
    bad = [(n, [(w, (1, 1, 4096, 1000) if w == "conv2d_16/kernel:0" else s) for w, s in ws]) for n, ws in layers]
    path = write_keras2_h5(tmp_path / "bad_deepface.h5", bad)
    # fc8 is checked even though the no-top model does not use it
    with pytest.raises(ModelError, match=r"layer fc8 \(file layer 'conv2d_16'\).*\(4096, 2622\) or "
                                         r"\(1, 1, 4096, 2622\).*found \(1, 1, 4096, 1000\)"):
        load_vggface_weights(notop, path)
    kernel = np.asarray(notop.get_layer("conv1_1").kernel)
    assert not kernel.any()  # both files were refused before any weight was assigned


def test_preprocessing_is_bgr_minus_the_vggface_mean():
    pre = vggface_preprocessing()
    red = np.zeros((50, 50, 3), np.uint8)
    red[..., 0] = 255
    x = prepare_faces([red], pre)
    assert x.shape == (1, 224, 224, 3)
    b, g, r = VGGFACE_MEAN_BGR
    np.testing.assert_allclose(x[0, 100, 100], [-b, -g, 255 - r], rtol=1e-6)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    old = {k: v for k, v in Preprocessing().to_dict().items() if k != "channels"}  # bundles before the field
    assert Preprocessing.from_dict(old).channels == "rgb"
