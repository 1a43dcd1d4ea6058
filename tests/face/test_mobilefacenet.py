"""The RAF-DB MobileFaceNet rebuilt in Keras from its ONNX graph, and written back (emo train-expert)."""

import numpy as np
import pytest

from emocli.bundle import DEFAULT_BUNDLE
from emocli.errors import ModelError
from emocli.face.experts import RAFDB_FILE, OnnxExpert

pytest.importorskip("onnx")  # in the test extra; the runtime does not need it


@pytest.fixture(scope="module")
def keras_expert():
    from emocli.face.mobilefacenet import to_keras

    return to_keras(DEFAULT_BUNDLE / RAFDB_FILE)


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)


def keras_outputs(net, faces):
    return [np.asarray(v) for v in net((faces.astype(np.float32) / 255.0 - 0.5) / 0.5, training=False)]


def test_the_keras_network_computes_what_opencv_computes_from_the_graph(keras_expert, faces):
    emb_cv, logits_cv = OnnxExpert(DEFAULT_BUNDLE / RAFDB_FILE).logits(faces, embeddings=True)
    emb_k, logits_k = keras_outputs(keras_expert, faces)
    assert emb_k.shape == emb_cv.shape == (8, 512)
    assert np.abs(emb_k - emb_cv).max() < 1e-4 and np.abs(logits_k - logits_cv).max() < 1e-3


def test_written_weights_are_what_opencv_reads_back(keras_expert, faces, tmp_path):
    """Unchanged weights keep their int8 form; changed ones are written float32 and OpenCV then
    computes what the Keras network computes."""
    import keras

    from emocli.face.mobilefacenet import write_onnx

    src = DEFAULT_BUNDLE / RAFDB_FILE
    same = tmp_path / "same.onnx"
    assert write_onnx(keras_expert, src, same) == 0
    assert abs(same.stat().st_size - src.stat().st_size) < 1024
    a, b = (OnnxExpert(p).logits(faces, embeddings=True) for p in (src, same))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])

    net = keras.models.clone_model(keras_expert)
    net.set_weights(keras_expert.get_weights())
    rng = np.random.default_rng(1)
    for name in ("474_quantized_f", "477", "logits"):  # a 1x1 int8 convolution, the depthwise GDC, the classifier
        layer = net.get_layer(name)
        layer.set_weights([w + rng.normal(0, 0.02, w.shape).astype(np.float32) for w in layer.get_weights()])
    moved = tmp_path / "moved.onnx"
    assert write_onnx(net, src, moved) == 6  # a weight and a bias each (the classifier's bias is an Add's)
    emb_cv, logits_cv = OnnxExpert(moved).logits(faces, embeddings=True)
    emb_k, logits_k = keras_outputs(net, faces)
    assert np.abs(emb_k - emb_cv).max() < 1e-4 and np.abs(logits_k - logits_cv).max() < 1e-3
    assert np.abs(emb_cv - a[0]).max() > 1e-2  # the change reached the file


def test_a_file_that_is_not_onnx_is_refused_with_the_fix(tmp_path):
    from emocli.face.mobilefacenet import to_keras

    bad = tmp_path / RAFDB_FILE
    bad.write_bytes(b"not a graph")
    with pytest.raises(ModelError, match=f"{RAFDB_FILE}: not a readable ONNX graph.*restore"):
        to_keras(bad)
