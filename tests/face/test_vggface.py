"""VGG-Face: both public weight-file layouts, the thesis's heads, keras: backbones.

No real weights are needed: weight files are written from a randomly initialised network
in the exact HDF5 layouts of keras-vggface and deepface (see ``vggface_helpers``). The
network is a tiny one of VGG-Face's layout (same layers and names, small widths, 64-pixel
input; ``vggface_helpers.tiny_vggface``), so loading, training and saving take seconds;
the full-size architecture and shape checks are in ``test_vggface_architecture.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emocli.errors import ModelError
from emocli.face import vggface
from emocli.quiet_imports import gpu_available
from emocli.face.model import FaceModel, Preprocessing, prepare_faces
from emocli.face.vggface import (
    CONV_LAYERS,
    WEIGHTS_ENV,
    build_keras_backbone,
    build_vggface,
    build_vggface_emotion,
    load_vggface_weights,
    resolve_weights,
)
from vggface_helpers import (
    VGGFACE_LAYER_NAMES,
    deepface_layers,
    keras_vggface_layers,
    make_vggface_bundle,
    random_faces,
    shapes_only,
    tiny_vggface,
    vgg_weights,
    write_keras2_h5,
)


@pytest.fixture(scope="module", autouse=True)
def tiny():
    """Every test here runs on the tiny VGG-shaped network (vggface_helpers.tiny_vggface)."""
    with tiny_vggface():
        yield vggface


@pytest.fixture(scope="module")
def source(tiny):
    """A seeded random VGG-Face, its weights and its pool5 / fc7 / softmax on two random inputs."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_vggface()
    size = tiny.VGGFACE_SIZE
    x = np.random.default_rng(0).normal(0.0, 60.0, (2, size, size, 3)).astype(np.float32)
    probe = _probe(model)
    ref = [np.asarray(o) for o in probe(x, training=False)]
    ns = SimpleNamespace(model=model, x=x, ref=ref, weights=vgg_weights(model))
    yield ns
    del ns.model, ns.weights


def _probe(model):
    import keras

    return keras.Model(model.input, [model.get_layer("pool5").output, model.get_layer("fc7_relu").output,
                                     model.output])


@pytest.fixture(scope="module")
def weight_files(source, tmp_path_factory):
    """The source network written as keras-vggface full / notop files and as deepface's file."""
    d = tmp_path_factory.mktemp("vggface_weights")
    files = SimpleNamespace(
        full=write_keras2_h5(d / "rcmalli_vggface_tf_vgg16.h5", keras_vggface_layers(source.weights)),
        notop=write_keras2_h5(d / "rcmalli_vggface_tf_notop_vgg16.h5",
                              keras_vggface_layers(source.weights, include_top=False)),
        deepface=write_keras2_h5(d / "vgg_face_weights.h5", deepface_layers(source.weights)),
    )
    yield files
    for p in (files.full, files.notop, files.deepface):
        p.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def target(tiny):
    """A second full VGG-Face with other random weights, to load files into."""
    import keras

    keras.utils.set_random_seed(1)
    return build_vggface()


@pytest.fixture(scope="module")
def notop(tiny):
    return build_vggface(include_top=False)


@pytest.fixture(scope="module")
def vggface_bundles(weight_files, tmp_path_factory):
    """``get(head)``: a saved face bundle (face.keras, face.json, manifest.json) of a VGG-Face model trained one step.

    exp1 from deepface's file (it needs fc6), exp2 from the notop file; each is built once,
    on first use, and shared: copy the directory before changing it. Returns (directory, FaceModel).
    """
    made = {}

    def get(head: str):
        if head not in made:
            directory = tmp_path_factory.mktemp(f"vggface_{head}")
            path = weight_files.deepface if head == "exp1" else weight_files.notop
            made[head] = directory, make_vggface_bundle(directory, path, head=head)
        return made[head]

    return get


def _assert_same(actual, expected):
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# --------------------------------------------------------------------------------------
# The graph


def test_tiny_network_has_the_vgg_face_layout(source, notop, tiny):
    """The stand-in is VGG-Face with other widths: same layers in the same order, shapes from the same code."""
    model = source.model
    assert tuple(layer.name for layer in model.layers[1:]) == VGGFACE_LAYER_NAMES
    for name, (kernel, bias) in tiny.EXPECTED_SHAPES.items():
        assert [tuple(w.shape) for w in model.get_layer(name).weights] == [kernel, bias], name
    assert tuple(model.get_layer("pool5").output.shape[1:]) == tiny.POOL5_SHAPE
    assert tiny.POOL5_SHAPE[:2] != (1, 1)  # fc6 reads a grid, so the flatten order matters
    assert model.count_params() == sum(int(np.prod(k)) + int(np.prod(b)) for k, b in tiny.EXPECTED_SHAPES.values())
    assert tuple(notop.output.shape[1:]) == tiny.POOL5_SHAPE
    assert source.ref[2].shape == (2, tiny.VGGFACE_CLASSES)
    # probabilities over the identities
    np.testing.assert_allclose(source.ref[2].sum(1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------------------
# Weight files


def test_keras_vggface_file_loads_to_identical_outputs(source, target, weight_files):
    before = np.asarray(_probe(target)(source.x, training=False)[1])
    assert not np.allclose(before, source.ref[1])
    assert load_vggface_weights(target, weight_files.full) == "keras-vggface"
    out = [np.asarray(o) for o in _probe(target)(source.x, training=False)]
    for a, e in zip(out, source.ref):
        _assert_same(a, e)
    assert np.abs(source.ref[1]).max() > 0  # the comparison is not between two zero vectors


def test_deepface_file_loads_to_identical_outputs(source, target, weight_files):
    import h5py

    with h5py.File(weight_files.deepface, "r") as f:  # the file really stores fc layers as convolutions
        assert f["conv2d_14/conv2d_14/kernel:0"].shape == vggface.CONV_FC_SHAPES["fc6"]
        assert f["conv2d_16/conv2d_16/kernel:0"].shape == vggface.CONV_FC_SHAPES["fc8"]
    for w in target.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    assert load_vggface_weights(target, weight_files.deepface) == "deepface"
    out = [np.asarray(o) for o in _probe(target)(source.x, training=False)]
    for a, e in zip(out, source.ref):
        _assert_same(a, e)


def test_notop_file_loads_and_full_file_loads_into_notop(source, notop, weight_files):
    import keras

    for path, layout in ((weight_files.notop, "keras-vggface-notop"), (weight_files.full, "keras-vggface"),
                         (weight_files.deepface, "deepface")):
        for w in notop.weights:
            w.assign(np.zeros(w.shape, w.dtype))
        assert load_vggface_weights(notop, path) == layout
        _assert_same(np.asarray(keras.Model(notop.input, notop.output)(source.x)), source.ref[0])


def test_notop_file_refused_for_a_model_with_fc_layers(target, weight_files):
    kernel = np.asarray(target.get_layer("conv1_1").kernel).copy()
    with pytest.raises(ModelError, match=r"no weights for layer fc6.*_notop"):
        load_vggface_weights(target, weight_files.notop)
    np.testing.assert_array_equal(np.asarray(target.get_layer("conv1_1").kernel), kernel)  # untouched


def test_wrong_shape_names_the_first_bad_layer(source, notop, tmp_path):
    """At tiny size, from real arrays (the full-size check, from shapes, is in test_vggface_architecture.py)."""
    kernel, _ = source.weights["conv3_2"]
    layers = keras_vggface_layers(source.weights)
    bad = [(n, [(w, kernel[..., :-1] if w == "conv3_2/kernel:0" else a) for w, a in ws]) for n, ws in layers]
    path = write_keras2_h5(tmp_path / "bad.h5", bad)
    want, found = re.escape(str(kernel.shape)), re.escape(str(kernel[..., :-1].shape))
    before = np.asarray(notop.get_layer("conv1_1").kernel).copy()
    with pytest.raises(ModelError, match=rf"layer conv3_2 .*expected kernel {want}.*found {found}"):
        load_vggface_weights(notop, path)
    np.testing.assert_array_equal(np.asarray(notop.get_layer("conv1_1").kernel), before)  # untouched

    layers = shapes_only(deepface_layers(source.weights))
    fc8 = vggface.CONV_FC_SHAPES["fc8"]
    bad = [(n, [(w, fc8[:-1] + (3,) if w == "conv2d_16/kernel:0" else s) for w, s in ws]) for n, ws in layers]
    path = write_keras2_h5(tmp_path / "bad_deepface.h5", bad)
    # fc8 is checked even though the no-top model does not use it
    with pytest.raises(ModelError, match=rf"layer fc8 \(file layer 'conv2d_16'\).*{re.escape(str(fc8))}.*"
                                         rf"found {re.escape(str(fc8[:-1] + (3,)))}"):
        load_vggface_weights(notop, path)


def test_other_files_are_refused(notop, tmp_path):
    with pytest.raises(ModelError, match=r"--weights PATH.*EMO_VGGFACE_WEIGHTS"):
        load_vggface_weights(notop, tmp_path / "missing.h5")
    (tmp_path / "not.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="not an HDF5 file"):
        load_vggface_weights(notop, tmp_path / "not.h5")
    other = write_keras2_h5(tmp_path / "other.h5", [("dense_1", [("dense_1/kernel:0", (8, 4)),
                                                                  ("dense_1/bias:0", (4,))])])
    with pytest.raises(ModelError, match="unknown weight layout"):
        load_vggface_weights(notop, other)


def test_resolve_weights(monkeypatch, tmp_path, weight_files):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ModelError, match=r"--weights PATH.*EMO_VGGFACE_WEIGHTS"):
        resolve_weights(None)
    assert resolve_weights(weight_files.notop) == weight_files.notop
    monkeypatch.setenv(WEIGHTS_ENV, str(weight_files.full))
    assert resolve_weights(None) == weight_files.full
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "gone.h5"))
    with pytest.raises(ModelError, match=r"gone\.h5.*given by EMO_VGGFACE_WEIGHTS"):
        resolve_weights(None)


# --------------------------------------------------------------------------------------
# The thesis's heads


def _check_round_trip(directory: Path, model: FaceModel):
    from emocli.bundle import verify_bundle

    manifest = verify_bundle(directory)
    assert manifest["labels"] == list(model.labels)
    loaded = FaceModel.load(directory)
    assert loaded.backbone == model.backbone and loaded.preprocessing == model.preprocessing
    faces = random_faces(2, size=80, seed=5)
    scores = model.predict_proba(faces)
    feats, loaded_scores = loaded.score_inputs(prepare_faces(faces, loaded.preprocessing), features=True)
    np.testing.assert_allclose(loaded_scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
    assert feats.shape == (2, 256) and np.isfinite(feats).all()


def test_exp2_head_trains_saves_and_loads(vggface_bundles, source):
    directory, model = vggface_bundles("exp2")
    net = model.network_
    assert model.backbone == "vggface-exp2"
    assert {"fc1", "fc2", "scores"} <= {layer.name for layer in net.layers}
    flat = int(np.prod(vggface.POOL5_SHAPE))  # 25,088 at full size
    assert tuple(net.get_layer("fc1").input.shape[1:]) == (flat,)  # flattened pool5
    assert all(not net.get_layer(n).trainable for n in CONV_LAYERS)
    trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    assert trainable == (flat * 512 + 512) + (512 * 256 + 256) + (256 * 7 + 7)
    # frozen layers kept the pretrained weights through training
    np.testing.assert_array_equal(np.asarray(net.get_layer("conv5_3").kernel), source.weights["conv5_3"][0])
    assert len(model.history_) == 1 and np.isfinite(model.history_[0]["loss"])
    _check_round_trip(directory, model)


def test_exp1_head_keeps_frozen_fc6(vggface_bundles, source):
    directory, model = vggface_bundles("exp1")
    net = model.network_
    assert model.backbone == "vggface-exp1"
    fc6 = vggface.FC_UNITS["fc6"]  # 4,096 at full size
    assert tuple(net.get_layer("fc2").input.shape[1:]) == (fc6,)
    assert not net.get_layer("fc6").trainable
    trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    assert trainable == (fc6 * 256 + 256) + (256 * 7 + 7)
    np.testing.assert_array_equal(np.asarray(net.get_layer("fc6").kernel), source.weights["fc6"][0])
    _check_round_trip(directory, model)


def test_exp1_needs_fc6(weight_files):
    with pytest.raises(ModelError, match="fc6"):
        build_vggface_emotion(weight_files.notop, head="exp1", mixed_precision=False)
    with pytest.raises(ModelError, match="unknown VGG-Face head"):
        build_vggface_emotion(weight_files.notop, head="exp3")


def test_mixed_precision_only_when_asked(weight_files):
    import keras

    if not gpu_available():  # automatic choice: never on a CPU
        _, net = build_vggface_emotion(weight_files.notop, head="exp2")
        assert net.get_layer("conv1_1").dtype_policy.name == "float32"
        del net
    _, net = build_vggface_emotion(weight_files.notop, head="exp2", mixed_precision=True)
    assert net.get_layer("conv1_1").dtype_policy.name == "mixed_float16"
    assert net.get_layer("scores").dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


# --------------------------------------------------------------------------------------
# keras:PATH backbones and the --backbone wiring


def _tiny_keras_model(path: Path, *, rescaling: bool = False, channels: int = 3):
    import keras
    from keras import layers

    inp = keras.Input((32, 32, channels))
    x = layers.Rescaling(1 / 255.0, name="rescale")(inp) if rescaling else inp
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(8, activation="relu", name="feat")(x)
    out = layers.Dense(3, activation="softmax", name="probs")(x)
    keras.Model(inp, out).save(path)
    return path


def test_keras_backbone(tmp_path):
    from emocli.train.face import _backbone_model

    path = _tiny_keras_model(tmp_path / "mine.keras")
    model, net = build_keras_backbone(path)
    assert model.preprocessing == Preprocessing(size=32, color="rgb", scale=1 / 255.0, offset=(0.0, 0.0, 0.0))
    assert tuple(net.output.shape) == (None, 7) and net.get_layer("fc2")
    assert model.backbone == "keras:mine.keras"
    model, net = _backbone_model(f"keras:{path}#gap", width=32)
    assert model.backbone == "keras:mine.keras#gap"
    assert tuple(net.get_layer("backbone").output.shape) == (None, 4)

    grey = _tiny_keras_model(tmp_path / "grey.keras", rescaling=True, channels=1)
    model, _ = build_keras_backbone(grey)
    assert (model.preprocessing.color, model.preprocessing.scale) == ("gray", 1.0)  # it rescales itself
    model, _ = build_keras_backbone(grey, input_range="-1-1")
    assert model.preprocessing.offset == (-1.0,)

    with pytest.raises(ModelError, match="has no layer 'nope'"):
        build_keras_backbone(path, "nope")
    (tmp_path / "old.h5").write_bytes(b"")
    with pytest.raises(ModelError, match=r"only Keras 3 \.keras files"):
        build_keras_backbone(tmp_path / "old.h5")
    with pytest.raises(ModelError, match="not found"):
        build_keras_backbone(tmp_path / "absent.keras")


def test_backbone_spec_errors(monkeypatch, weight_files):
    from emocli.train.face import _backbone_model

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ModelError, match=r"--weights PATH.*EMO_VGGFACE_WEIGHTS"):
        _backbone_model("vggface", width=32)
    with pytest.raises(ModelError, match="belong to --backbone vggface"):
        _backbone_model("emo-cnn", width=32, weights=weight_files.notop)
    with pytest.raises(ModelError, match="unknown backbone"):
        _backbone_model("resnet", width=32)


def test_train_video_has_weights_and_head_options():
    from typer.testing import CliRunner

    from emocli.cli.app import app

    result = CliRunner().invoke(app, ["train-video", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--weights" in result.output and "--transfer" in result.output
    result = CliRunner().invoke(app, ["train-video", "data", "--out", "o", "--head", "exp9"])
    assert result.exit_code == 2


@pytest.mark.parametrize("head", ["exp1", "exp2"])
def test_vggface_bundle_round_trips_through_emo_predict(vggface_bundles, tmp_path, head):
    """A trained exp1/exp2 bundle (plus fusion weights) scores the example clip via the CLI."""
    import json
    import shutil

    from typer.testing import CliRunner

    from conftest import EXAMPLES, tiny_voice_model
    from emocli.bundle import write_manifest
    from emocli.cli.app import app
    from emocli.fusion import FusionModel
    from emocli.labels import LABELS

    shared, model = vggface_bundles(head)
    directory = tmp_path / "bundle"
    shutil.copytree(shared, directory)
    tiny_voice_model().save(directory)
    FusionModel("equal").fit().save(directory)
    write_manifest(directory, labels=list(LABELS))
    clip = EXAMPLES / "1001_DFA_HAP_XX.avi"
    r = CliRunner().invoke(app, ["predict", str(clip), "--model", str(directory), "--json", "--fps", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and out["modalities"] == ["face", "voice"] and out["frames_used"] >= 3
    assert sum(out["face_scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert model.preprocessing.size == vggface.VGGFACE_SIZE and model.backbone == f"vggface-{head}"
