"""The face network stored once: emo-cnn as face.tflite + face_bn.npz, rebuilt into Keras exactly."""
import numpy as np
import pytest

from emocli.errors import ModelError


def _trained_looking(width: int = 4, seed: int = 0):
    """A small emo-cnn whose BatchNorm layers hold statistics and scales a trained one would."""
    from emocli.face.networks import build_emo_cnn

    net = build_emo_cnn(width=width)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, n), rng.normal(0, 0.3, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.05, 3.0, n)])
    return net


@pytest.fixture(scope="module")
def single_form(tmp_path_factory):
    """A saved emo-cnn bundle and the network it was saved from."""
    from emocli.face.model import FaceModel

    directory = tmp_path_factory.mktemp("single")
    (directory / "face.keras").write_bytes(b"a stale network of another training run")
    model = FaceModel()
    model.network_ = _trained_looking()
    model.save(directory)
    return directory, model.network_


def test_emo_cnn_is_stored_once_and_rebuilt_exactly(single_form):
    from emocli.face.model import FaceModel

    directory, net = single_form
    assert (directory / "face.tflite").is_file() and (directory / "face_bn.npz").is_file()
    assert not (directory / "face.keras").exists()  # the stale one is gone, not left to disagree
    rebuilt = FaceModel.load(directory).network_
    for a, b in zip(rebuilt.get_weights(), net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    x = np.random.default_rng(1).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    keras_scores = FaceModel.load(directory).score_inputs(x, views="none")
    lite_scores = FaceModel.load(directory, runtime=True).score_inputs(x, views="none")
    np.testing.assert_allclose(keras_scores, np.asarray(net(x, training=False)), atol=1e-6)
    np.testing.assert_allclose(lite_scores, keras_scores, atol=1e-5)


def test_a_rebuilt_network_trains_like_the_original(single_form):
    """BatchNorm in training mode reads gamma and beta, which folding hides: they are restored."""
    from emocli.face.model import FaceModel

    directory, net = single_form
    rebuilt = FaceModel.load(directory).network_
    import keras

    x = np.random.default_rng(2).uniform(0, 255, (6, 48, 48, 1)).astype(np.float32)
    # the convolutions' output in training mode (batch statistics; before the head's dropout)
    ours, theirs = (keras.Model(n.inputs[0], n.get_layer("block4_relu2").output)(x, training=True)
                    for n in (rebuilt, net))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_the_shipped_network_rebuilds_and_scores_as_its_runtime_form():
    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.face.model import FaceModel

    assert not (DEFAULT_BUNDLE / "face.keras").exists()
    x = np.random.default_rng(3).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    keras_form, lite_form = FaceModel.load(DEFAULT_BUNDLE), FaceModel.load(DEFAULT_BUNDLE, runtime=True)
    np.testing.assert_allclose(keras_form.score_inputs(x), lite_form.score_inputs(x), atol=1e-5)


def test_altered_batch_norm_arrays_are_refused(single_form, tmp_path):
    import shutil

    from emocli.face.model import FaceModel

    directory, _ = single_form
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    with np.load(directory / "face_bn.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["block2_bn1/variance"] = arrays["block2_bn1/variance"] * 4
    np.savez(tmp_path / "face_bn.npz", **arrays)
    with pytest.raises(ModelError, match="face_bn.npz: the rebuilt face network scores .* away from face.tflite"):
        FaceModel.load(tmp_path)
    (tmp_path / "face_bn.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelError, match="cannot rebuild the face network"):
        FaceModel.load(tmp_path)


def test_runtime_form_alone_scores_but_does_not_train(single_form, tmp_path):
    import shutil

    from emocli.face.model import FaceModel

    directory, _ = single_form
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    (tmp_path / "face_bn.npz").unlink()
    assert FaceModel.load(tmp_path, runtime=True).score_inputs(np.zeros((1, 48, 48, 1), np.float32)).shape == (1, 7)
    with pytest.raises(ModelError, match=r"face_bn.npz: missing; .*restore the bundle or retrain"):
        FaceModel.load(tmp_path)


def test_networks_it_cannot_rebuild_keep_their_keras_form(tmp_path):
    """A wider head or another backbone is not emo-cnn's layout: face.keras is written as well."""
    import keras

    from emocli.face.model import FaceModel
    from emocli.face.networks import build_emo_cnn

    net = build_emo_cnn(width=4)
    other = keras.Model(net.inputs, keras.layers.Dense(7, activation="softmax", name="scores")(
        keras.layers.Dense(256, activation="relu", name="fc2")(net.get_layer("flatten").output)))
    (tmp_path / "face_bn.npz").write_bytes(b"stale")
    model = FaceModel()
    model.network_ = other
    model.save(tmp_path)
    assert (tmp_path / "face.keras").is_file() and not (tmp_path / "face_bn.npz").exists()
    assert (tmp_path / "face.tflite").is_file()


def test_train_video_from_a_runtime_only_bundle_is_one_line(single_form, faces, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from emocli.bundle import write_manifest
    from emocli.cli.app import app
    from emocli.labels import LABELS

    directory, _ = single_form
    init = tmp_path / "init"
    shutil.copytree(directory, init)
    (init / "face_bn.npz").unlink()
    write_manifest(init, labels=list(LABELS))
    r = CliRunner().invoke(app, ["train-video", str(faces), "--init", str(init), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert "face_bn.npz: missing" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out" / "face.tflite").exists()
