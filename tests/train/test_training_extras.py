"""Training extras of emo train-video: knowledge distillation (--teacher) and BatchNorm statistics
re-estimated on un-augmented faces (--refresh-bn, emo refresh-bn)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emocli.cli.app import app

pytestmark = pytest.mark.slow  # trains face networks: `pytest -m 'not slow'` leaves it out


def test_training_targets_mix_labels_and_soft_targets():
    from emocli.errors import ModelError
    from emocli.train.face import training_targets

    y = np.array([0, 2, 1])
    soft = np.array([[0.2, 0.8, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]], np.float32)
    assert np.array_equal(training_targets(y, 3), np.eye(3, dtype=np.float32)[y])
    t = training_targets(y, 3, soft, 0.25)
    assert np.allclose(t[0], [0.75 + 0.05, 0.2, 0.0]) and np.allclose(t[2], [0.0, 0.75, 0.25])
    assert np.allclose(t.sum(1), 1.0)
    assert np.allclose(training_targets(y, 3, soft, 1.0), soft)
    with pytest.raises(ModelError, match="shape"):
        training_targets(y, 3, soft[:2], 0.5)


def test_train_video_distills_from_teachers_with_the_same_held_out_part(faces, tmp_path, monkeypatch):
    from rich.console import Console

    import emocli.train.face as training
    from emocli.face.model import FaceModel, finish_inputs

    opts = dict(width=4, batch_size=16, holdout=0.25, holdout_seed=0)
    teachers = []
    for seed in (1, 2):
        t = tmp_path / f"t{seed}"
        training.train_video_command(data=faces, out=t, console=Console(stderr=True),
                                     options=training.TrainOptions(epochs=1, seed=seed, **opts))
        teachers.append(t)
    seen = []
    real = training.fit_face_model

    def spy(model, data, **kw):
        seen.append((data.x, data.soft_targets))
        return real(model, data, **kw)

    monkeypatch.setattr(training, "fit_face_model", spy)
    out = tmp_path / "student"
    training.train_video_command(data=faces, out=out, console=Console(stderr=True), options=training.TrainOptions(
        epochs=1, seed=3, teachers=tuple(teachers), distill=0.3, **opts))
    (x, soft), = seen
    # the soft targets are the teachers' mean score (mirror views, no prior) on the student's training faces
    want = np.mean([FaceModel.load(t).score_inputs(np.asarray(finish_inputs(x, FaceModel.load(t).preprocessing)),
                                                   views="mirror") for t in teachers], axis=0)
    assert soft.shape == (len(x), 7) and np.allclose(soft, want, atol=1e-5)
    meta = json.loads((out / "face.json").read_text())
    assert meta["distillation"]["teachers"] == [str(t) for t in teachers]
    assert meta["distillation"]["weight"] == 0.3 and 0 <= meta["distillation"]["teacher_holdout_accuracy"] <= 1


@pytest.fixture(scope="module")
def teacher(faces, tmp_path_factory):
    """A tiny face bundle trained on ``faces`` with held-out share 0.25, seed 0."""
    out = tmp_path_factory.mktemp("teacher") / "t"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), "--epochs", "1", "--width", "4",
                                   "--holdout", "0.25", "--holdout-seed", "0"])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("args", [["--holdout", "0.25", "--holdout-seed", "4"], ["--holdout", "0.4", "--holdout-seed", "0"]])
def test_train_video_refuses_a_teacher_with_another_held_out_part_in_one_line(faces, teacher, tmp_path, args):
    out = tmp_path / "student"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), "--epochs", "1", "--width", "4",
                                   *args, "--teacher", str(teacher)])
    assert res.exit_code == 1, res.output
    msg = " ".join(res.output.split())
    assert str(teacher) in msg and "not trained with the student's held-out split" in msg and "--holdout-seed" in msg
    assert "Traceback" not in res.output and not any((out / name).exists() for name in ("face.keras", "face.tflite"))


def test_refresh_batch_norm_sets_the_mean_of_batch_statistics_with_dropout_off():
    import keras
    from keras import layers

    from emocli.face.networks import refresh_batch_norm

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    conv = layers.Conv2D(3, 3, name="conv")(inp)
    x = layers.BatchNormalization(name="bn1")(conv)
    x = layers.Dropout(0.5, name="drop")(layers.Flatten()(x))
    dense = layers.Dense(4, name="dense")(x)
    x = layers.BatchNormalization(name="bn2")(dense)
    out = layers.Dense(2, name="out")(layers.BatchNormalization(name="frozen", trainable=False)(x))
    net = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (16, 6, 6, 1)).astype(np.float32) for _ in range(3)]
    assert refresh_batch_norm(net, batches) == 2
    frozen = net.get_layer("frozen")
    assert np.allclose(frozen.moving_mean, 0) and np.allclose(frozen.moving_variance, 1)  # left as it was
    assert net.get_layer("drop").rate == 0.5 and net.get_layer("bn1").momentum == 0.99  # restored
    # batch statistics as the network computes them in training mode, less dropout
    conv_of = keras.Model(inp, conv)
    c = [np.asarray(conv_of(b)) for b in batches]
    bn1 = net.get_layer("bn1")
    assert np.allclose(bn1.moving_mean, np.mean([v.mean((0, 1, 2)) for v in c], 0), atol=1e-4)
    assert np.allclose(bn1.moving_variance, np.mean([v.var((0, 1, 2)) for v in c], 0), rtol=1e-3, atol=1e-4)
    bn2_mean = np.array(net.get_layer("bn2").moving_mean)
    # bn2's input as training mode gives it: bn1 normalising with each batch's own statistics
    net.get_layer("drop").rate = 0.0
    dense_of = keras.Model(inp, dense)
    d = [np.asarray(dense_of(b, training=True)) for b in batches]
    net.get_layer("drop").rate = 0.5
    assert np.allclose(bn2_mean, np.mean([v.mean(0) for v in d], 0), atol=1e-4)
    before = [np.array(w) for w in net.get_weights()]
    with pytest.raises(Exception, match="no faces"):
        refresh_batch_norm(net, [])
    assert all(np.array_equal(a, b) for a, b in zip(before, net.get_weights()))  # left as it was


def test_refresh_bn_command_reports_writes_only_a_gain_and_never_uses_held_out_faces(faces, tmp_path, monkeypatch):
    import keras

    import emocli.face.networks as vm
    import emocli.train.tuning as training  # the module that calls refresh_batch_norm
    from emocli.face.model import FaceModel

    bundle = tmp_path / "b"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(bundle), "--epochs", "4", "--width", "4",
                                   "--batch-size", "8", "--lr", "0.01", "--holdout", "0.25", "--rotation", "0",
                                   "--zoom", "0", "--shift", "0"])
    assert res.exit_code == 0, res.output
    # spoil the saved statistics, so that re-estimating them must help
    model = FaceModel.load(bundle)
    for layer in model.network_.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, np.float32))
    model.save(bundle, extra={k: v for k, v in json.loads((bundle / "face.json").read_text()).items()
                              if k not in ("backbone", "preprocessing", "labels", "history", "feature_layer",
                                           "format", "format_version")})
    seen = []
    real = vm.refresh_batch_norm

    def spy(net, batches):
        batches = list(batches)
        seen.append(np.concatenate(batches))
        return real(net, batches)

    monkeypatch.setattr(training, "refresh_batch_norm", spy)
    out = tmp_path / "bn"
    res = CliRunner().invoke(app, ["refresh-bn", str(bundle), str(faces), "--out", str(out), "--write"])
    assert res.exit_code == 0, res.output
    assert len(seen[0]) == 7 * 6  # the 42 training faces; the 14 held-out ones never enter the statistics
    meta = json.loads((out / "face.json").read_text())
    acc = meta["batchnorm_refresh"]["holdout_accuracy"]
    assert acc["after"] > acc["before"] and meta["holdout_accuracy"] == acc["after"]
    assert "prior_adjustment" not in meta and meta["validation"]["n"] == 14
    assert FaceModel.load(out).predict_proba(np.zeros((2, 48, 48, 3), np.uint8)).shape == (2, 7)
    # no gain (statistics left as they are): refused in one line, nothing written
    monkeypatch.setattr(training, "refresh_batch_norm", lambda net, batches: 1)
    again = tmp_path / "bn2"
    res = CliRunner().invoke(app, ["refresh-bn", str(bundle), str(faces), "--out", str(again), "--write"])
    assert res.exit_code == 1 and "does not beat" in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and not again.exists()


def test_train_video_refresh_bn_keeps_the_new_statistics_only_on_a_gain(faces, tmp_path, monkeypatch):
    import keras

    import emocli.train.tuning as training  # the module that calls refresh_batch_norm
    from emocli.face.model import FaceModel

    # one epoch: the assertions hold whichever way the refresh goes (kept exactly when it gains)
    args = ["--epochs", "1", "--width", "4", "--batch-size", "8", "--lr", "0.01", "--holdout", "0.25", "--seed", "1"]
    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), *args, "--refresh-bn"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "face.json").read_text())
    done = meta["batchnorm_refresh"]
    assert done["n_layers"] == 8 and done["n_faces"] == 7 * 6
    acc = done["holdout_accuracy"]
    assert done["kept"] == (acc["after"] > acc["before"])
    assert meta["validation"]["accuracy"] == pytest.approx(acc["after"] if done["kept"] else acc["before"])

    trained = []

    def spoil(net, batches):  # statistics that ruin the network: the held-out accuracy cannot gain
        trained.append([w.copy() for w in net.get_weights()])
        for layer in net.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(np.full(layer.moving_mean.shape, 1e4, np.float32))
        return 8

    monkeypatch.setattr(training, "refresh_batch_norm", spoil)
    spoiled = tmp_path / "spoiled"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(spoiled), *args, "--refresh-bn"])
    assert res.exit_code == 0, res.output
    assert "not kept" in res.output
    assert json.loads((spoiled / "face.json").read_text())["batchnorm_refresh"]["kept"] is False
    # the network as trained is what is saved (rebuilt from face.tflite: to float32 rounding)
    saved = FaceModel.load(spoiled).network_.get_weights()
    assert len(trained) == 1 and all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(trained[0], saved))
