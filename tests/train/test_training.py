"""emo train-video on raw face images: options reach the trained bundle, which loads and scores."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emocli.cli.app import app
from emocli.labels import LABELS
from emocli.errors import DatasetError
from emocli.corpus.splits import stratified_holdout
from emocli.train.data import heldout_part, holdout_seed_of


@pytest.mark.slow
def test_train_video_mixed_precision_and_augmentation_options(faces, tmp_path):
    from emocli.face.model import FaceModel

    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), "--epochs", "2", "--width", "4",
                                   "--batch-size", "16", "--precision", "mixed_bfloat16", "--rotation", "10",
                                   "--zoom", "0", "--shift", "0.05", "--holdout", "0.15"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "face.json").read_text())
    assert meta["precision"] == "mixed_bfloat16"
    assert meta["augmentation"] == {"rotation": 10.0, "zoom": 0.0, "shift": 0.05}
    model = FaceModel.load(out)
    # trained in bfloat16, saved in float32: every layer computes in float32 on any machine
    assert {layer.dtype_policy.name for layer in model.network_.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in model.network_.get_weights())
    scores = model.predict_proba(np.zeros((3, 48, 48, 3), np.uint8))
    assert scores.shape == (3, 7) and np.allclose(scores.sum(1), 1, atol=1e-5)
    # a warm restart continues from the bundle (float32 this time) and extends its history; a new
    # training seed with --holdout-seed keeps the first run's held-out images (so the two compare)
    again = tmp_path / "c"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(again), "--epochs", "1",
                                   "--batch-size", "16", "--init", str(out), "--holdout", "0.15",
                                   "--seed", "5", "--holdout-seed", "0"])
    assert res.exit_code == 0, res.output
    assert "(stratified, seed 0)" in res.output
    meta2 = json.loads((again / "face.json").read_text())
    assert len(meta2["history"]) == 3 and meta2["precision"] == "float32" and meta2["init"] == str(out)
    assert (meta2["seed"], meta2["holdout_seed"]) == (5, 0)
    assert holdout_seed_of(meta2) == holdout_seed_of(meta) == 0
    assert holdout_seed_of({"seed": 3}) == 3  # bundles from before --holdout-seed
    # the scripts that choose views or average networks rebuild exactly that held-out part
    items, y, ho = heldout_part(faces, meta2)
    assert len(items) == len(y) == 7 * 8 and len(ho) == meta2["n_holdout"]
    np.testing.assert_array_equal(ho, stratified_holdout(y, 0.15, 0)[1])
    with pytest.raises(DatasetError, match="held-out images but face.json says"):
        heldout_part(faces, {**meta2, "n_holdout": meta2["n_holdout"] + 1})


def test_train_video_rejects_mixed_precision_for_nested_backbones(tmp_path):
    from emocli.errors import ModelError
    from emocli.face.networks import build_emo_cnn, with_precision

    import keras

    inner = build_emo_cnn(width=4)
    outer = keras.Sequential([keras.Input((48, 48, 1)), inner])
    with pytest.raises(ModelError, match="flat network"):
        with_precision(outer, "mixed_bfloat16")
    with pytest.raises(ModelError, match="unknown precision"):
        with_precision(inner, "float8")


@pytest.mark.slow
def test_averaged_face_networks_save_load_and_score_as_the_mean(tmp_path):
    import keras

    from emocli.face.model import FaceModel
    from emocli.face.networks import average_networks, build_emo_cnn

    keras.utils.set_random_seed(1)
    a, b = build_emo_cnn(width=4), build_emo_cnn(width=4)
    model = FaceModel(backbone="emo-cnn-ensemble")
    model.network_ = average_networks([a, b], ["member_a", "member_b"])
    model.save(tmp_path)
    # not emo-cnn's layout: kept as face.keras (beside its runtime form), not rebuilt from face.tflite
    assert (tmp_path / "face.keras").is_file() and not (tmp_path / "face_bn.npz").exists()
    loaded = FaceModel.load(tmp_path)  # safe mode: nested functional models, no code
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    want = (np.asarray(a(x, training=False)) + np.asarray(b(x, training=False))) / 2
    np.testing.assert_allclose(loaded.score_inputs(x, views="none"), want, atol=1e-5)
    feats, _ = loaded.score_inputs(x, views="none", features=True)
    assert feats.shape == (4, 512)  # both members' fc2 features side by side
    # the runtime form (LiteRT, what predict uses on a CPU) gives the same scores and features
    lite = FaceModel.load(tmp_path, runtime=True)
    assert (tmp_path / "face.tflite").is_file() and type(lite.network_).__name__ == "LiteNetwork"
    lite_feats, lite_scores = lite.score_inputs(x, views="none", features=True)
    np.testing.assert_allclose(lite_scores, want, atol=1e-5)
    np.testing.assert_allclose(lite_feats, feats, atol=1e-4)


def _heldout_bundle(directory, *, seed: int, holdout: float = 0.25, faces=None, right=()):
    """A tiny face bundle (random 2-block net) whose face.json says it held out ``holdout`` of
    the ``faces`` folder with seed 0, as train-video records it.

    With ``faces``, its softmax layer is solved (least squares on the fc2 features) so that on the
    held-out images of the classes in ``right`` it ranks the true class first, and on the others
    second behind a wrong one: two such members with complementary ``right`` are each half
    right, and their mean is right everywhere.
    """
    import keras

    from emocli.bundle import write_manifest
    from emocli.train.data import heldout_part
    from emocli.media.ffmpeg import read_image
    from emocli.face.model import FaceModel, Preprocessing, prepare_faces
    from emocli.face.networks import build_emo_cnn

    keras.utils.set_random_seed(seed)
    model = FaceModel(preprocessing=Preprocessing(flip_tta=False))
    model.network_ = build_emo_cnn(width=4)
    extra = {"holdout": holdout, "seed": 0, "holdout_seed": 0}
    if faces is not None:
        items, y, ho = heldout_part(faces, extra)
        feats, _ = model.score_inputs(prepare_faces([read_image(items[i].path) for i in ho], model.preprocessing),
                                      views="none", features=True)
        logits = np.zeros((len(ho), len(LABELS)))
        for row, c in enumerate(y[ho]):
            logits[row, c] = 5.0 if c in right else 4.0
            if c not in right:
                logits[row, (c + 1) % len(LABELS)] = 5.0
        design = np.hstack([feats, np.ones((len(ho), 1))])
        sol = np.linalg.lstsq(design, logits, rcond=None)[0].astype(np.float32)
        model.network_.get_layer("scores").set_weights([sol[:-1], sol[-1]])
    extra["n_holdout"] = len(stratified_holdout(np.repeat(np.arange(7), 8), holdout, 0)[1])
    model.save(directory, extra=extra, runtime_form=False)
    write_manifest(directory, labels=list(LABELS))
    return directory


@pytest.mark.slow
def test_tune_views_scores_each_candidate_and_writes_the_best(faces, tmp_path):
    from emocli.bundle import verify_bundle
    from emocli.train.tuning import VIEW_CANDIDATES
    from emocli.face.model import FaceModel

    bundle = _heldout_bundle(tmp_path / "b", seed=1)
    res = CliRunner().invoke(app, ["tune-views", str(bundle), str(faces)])
    assert res.exit_code == 0, res.output
    assert all(f"{name}: held-out accuracy" in res.output for name in VIEW_CANDIDATES) and "(n=14)" in res.output
    assert "tta_selection" not in json.loads((bundle / "face.json").read_text())  # nothing written without --write
    res = CliRunner().invoke(app, ["tune-views", str(bundle), str(faces), "--write"])
    assert res.exit_code == 0, res.output
    meta = json.loads((bundle / "face.json").read_text())
    sel = meta["tta_selection"]
    assert set(sel["holdout_accuracy"]) == set(VIEW_CANDIDATES)
    assert sel["holdout_accuracy"][sel["chosen"]] == max(sel["holdout_accuracy"].values())
    assert meta["validation"]["n"] == 14 and meta["validation"]["accuracy"] == sel["holdout_accuracy"][sel["chosen"]]
    pre = FaceModel.load(bundle).preprocessing
    assert (pre.flip_tta, pre.tta_zoom, pre.tta_shift) == VIEW_CANDIDATES[sel["chosen"]]
    verify_bundle(bundle)  # the manifest follows the new face.json


def test_tune_views_refuses_another_folder_in_one_line(faces, tmp_path):
    bundle = _heldout_bundle(tmp_path / "b", seed=1, holdout=0.5)
    meta = json.loads((bundle / "face.json").read_text())
    meta["n_holdout"] += 1  # as if trained on another folder
    (bundle / "face.json").write_text(json.dumps(meta))
    res = CliRunner().invoke(app, ["tune-views", str(bundle), str(faces), "--write"])
    assert res.exit_code == 1
    assert res.output.startswith("error:") and "held-out images but face.json says" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["tune-views", str(tmp_path / "none"), str(faces)])
    assert res.exit_code == 1 and "missing face model file" in res.output


@pytest.mark.slow
def test_ensemble_compares_members_and_their_mean(faces, tmp_path):
    from emocli.face.model import FaceModel

    a = _heldout_bundle(tmp_path / "a", seed=1, faces=faces, right={0, 1, 2, 3})
    b = _heldout_bundle(tmp_path / "b", seed=2, faces=faces, right={4, 5, 6})
    # A's class-prior adjustment belongs to A alone: members are compared and averaged as trained
    doc = json.loads((a / "face.json").read_text())
    doc["prior_adjustment"] = {"tau": 1.0, "prior": dict(zip(LABELS, [0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]))}
    (a / "face.json").write_text(json.dumps(doc))
    out = tmp_path / "ens"
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), str(faces), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "A 0.5714, B 0.4286, mean of both 1.0000" in " ".join(res.output.split())
    assert not out.exists()  # nothing written without --write
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), str(faces), "--out", str(out), "--write"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "face.json").read_text())
    assert meta["ensemble"]["members"] == [str(a), str(b)] and meta["backbone"] == "emo-cnn-ensemble"
    assert meta["holdout_accuracy"] == meta["validation"]["accuracy"] == 1.0 and meta["n_holdout"] == 14
    assert "prior_adjustment" not in meta  # the average's own is chosen afresh (scripts/face_prior.py)
    assert FaceModel.load(out).network_.get_layer("fc2").output.shape[-1] == 2 * 256  # both members' fc2 side by side
    # a member that is no better than the other alone: nothing written, one line, exit 1
    res = CliRunner().invoke(app, ["ensemble", str(a), str(a), str(faces), "--out", str(tmp_path / "same"),
                                   "--write"])
    assert res.exit_code == 1 and "does not beat its best member" in res.output
    assert not any((tmp_path / "same" / name).exists() for name in ("face.keras", "face.tflite"))


def test_ensemble_refuses_bundles_with_different_held_out_parts(faces, tmp_path):
    a, b = _heldout_bundle(tmp_path / "a", seed=1), _heldout_bundle(tmp_path / "b", seed=2, holdout=0.5)
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), str(faces), "--out", str(tmp_path / "ens"),
                                   "--write"])
    assert res.exit_code == 1 and res.output.startswith("error:")
    assert "differ in holdout (0.25 vs 0.5)" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "ens").exists()


def test_balance_weights():
    from emocli.train.data import balance_weights

    groups = np.array([0] * 90 + [1] * 10)
    assert np.allclose(balance_weights(groups, "none"), 1)
    full = balance_weights(groups, "full")
    assert full[:90].sum() == pytest.approx(full[90:].sum()) and full.mean() == pytest.approx(1)
    sq = balance_weights(groups, "sqrt")
    assert sq[95] / sq[0] == pytest.approx(3.0)  # sqrt(90 / 10)
    with pytest.raises(Exception, match="unknown balance"):
        balance_weights(groups, "max")


@pytest.mark.slow
def test_train_video_on_several_corpora_reports_each(faces, tmp_path):
    import shutil

    second = tmp_path / "other" / "train"
    shutil.copytree(faces, second)
    for p in list((second / "disgust").glob("*.png"))[2:]:  # a corpus where disgust is rare
        p.unlink()
    out = tmp_path / "multi"
    res = CliRunner().invoke(app, ["train-video", str(faces), str(second), "--out", str(out), "--epochs", "1",
                                   "--width", "4", "--batch-size", "16", "--holdout", "0.25", "--holdout", "0.5",
                                   "--balance", "sqrt"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "face.json").read_text())
    per = meta["validation_per_corpus"]
    fer = faces.parent.name  # each corpus is named by its folder (the parent of train/)
    assert set(per) == {fer, "other"}
    assert per[fer]["n"] == 7 * 2 and per["other"]["n"] == 6 * 4 + 1  # 25 % and 50 % of each class
    assert per[fer]["n_train"] + per["other"]["n_train"] == meta["n_train"] == 7 * 8 + 6 * 8 + 2 - meta["n_holdout"]
    assert meta["balance"] == "sqrt" and meta["holdout"] == [0.25, 0.5]
    assert meta["trained_on"] == [str(faces), str(second)]
    assert f"{fer}: held-out accuracy" in res.output and "other: held-out accuracy" in res.output
    bad = CliRunner().invoke(app, ["train-video", str(faces), str(second), "--out", str(tmp_path / "x"),
                                   "--holdout", "0.1", "--holdout", "0.2", "--holdout", "0.3"])
    assert bad.exit_code == 2 and "once per folder" in " ".join(bad.output.split())


def test_prior_adjustment_rebalances_scores_and_is_read_from_face_json(tiny_bundle, tmp_path):
    """face.json's prior_adjustment divides the network's scores by prior ** tau (Menon et al.'s
    logit adjustment); a malformed one is refused naming the file."""
    import shutil

    from emocli.errors import ModelError
    from emocli.face.model import FaceModel, adjust_prior

    p = np.array([[0.5, 0.05, 0.1, 0.15, 0.1, 0.05, 0.05]])
    prior = np.array([0.4, 0.02, 0.1, 0.2, 0.1, 0.1, 0.08])
    np.testing.assert_allclose(adjust_prior(p, prior, 0.0), p)
    q = adjust_prior(p, prior, 1.0)
    np.testing.assert_allclose(q.sum(), 1.0)
    assert q[0].argmax() == 1  # the rare class the network half-believes wins once its prior is divided out
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    plain = FaceModel.load(bundle, runtime=True).score_inputs(x, views="none")
    meta = json.loads((bundle / "face.json").read_text())
    meta["prior_adjustment"] = {"tau": 0.8, "prior": dict(zip(LABELS, prior.tolist()))}
    (bundle / "face.json").write_text(json.dumps(meta))
    adjusted = FaceModel.load(bundle, runtime=True)
    assert adjusted.prior_tau == 0.8
    np.testing.assert_allclose(adjusted.score_inputs(x, views="none"), adjust_prior(plain, prior, 0.8), atol=1e-5)
    meta["prior_adjustment"]["prior"]["disgust"] = 0.0
    (bundle / "face.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"face\.json: unusable prior_adjustment"):
        FaceModel.load(bundle, runtime=True)


@pytest.mark.slow
def test_train_video_exclude_keeps_listed_images_out_of_training_and_held_out(faces, tmp_path, monkeypatch):
    import hashlib
    import os

    from rich.console import Console

    import emocli.train.face as training

    listed = sorted(faces.glob("*/[01].png"))  # two images of each class
    excl = tmp_path / "lists" / "excl.csv"
    excl.parent.mkdir()
    # a CSV manifest: a header, absolute paths and paths relative to the list's folder
    rows = ["path,label"] + [f"{p},x" for p in listed[:7]] + [f"{os.path.relpath(p, excl.parent)},x"
                                                              for p in listed[7:]]
    excl.write_text("\n".join(rows) + "\n")
    seen = []
    real = training.fit_face_model

    def spy(model, data, **kw):
        seen.append((data.x, data.x_val))
        return real(model, data, **kw)

    monkeypatch.setattr(training, "fit_face_model", spy)
    out = tmp_path / "b"
    training.train_video_command(data=faces, out=out, console=Console(stderr=True), options=training.TrainOptions(
        epochs=1, width=4, batch_size=16, holdout=0.25, exclude=excl))
    (x, x_val), = seen
    assert len(x) + len(x_val) == 7 * 6  # 8 per class, 2 of them excluded
    assert len(x_val) == 7 * 2  # 25 % of the 6 left per class, rounded up (stratified)
    # no excluded image reached training or the held-out part
    from emocli.media.ffmpeg import read_image
    from emocli.face.model import FaceModel, store_faces

    gone = store_faces([read_image(p) for p in listed], FaceModel.load(out).preprocessing)
    kept = {a.tobytes() for a in np.concatenate([x, x_val])}
    assert len(kept) == 7 * 6 and not kept & {g.tobytes() for g in gone}
    meta = json.loads((out / "face.json").read_text())
    assert meta["n_train"] + meta["n_holdout"] == 7 * 6
    assert meta["exclude"]["n_excluded"] == meta["exclude"]["n_listed"] == 14
    assert meta["exclude"]["sha256"] == hashlib.sha256(excl.read_bytes()).hexdigest()


@pytest.mark.parametrize("content", [None, "", "path\n", "/nowhere/a.png\n/nowhere/b.png\n", b"\xff\xfe\x00bad"])
def test_train_video_exclude_refuses_a_missing_empty_or_unmatched_list_in_one_line(faces, tmp_path, content):
    excl = tmp_path / "excl.txt"
    if isinstance(content, bytes):
        excl.write_bytes(content)
    elif content is not None:
        excl.write_text(content)
    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), "--epochs", "1", "--width", "4",
                                   "--exclude", str(excl)])
    assert res.exit_code == 1, res.output
    msg = " ".join(res.output.split())
    assert str(excl) in msg and ("pass a file listing image paths" in msg or "list the images' paths" in msg)
    assert len(res.output.strip().splitlines()) <= 3 and "Traceback" not in res.output
    assert not any((out / name).exists() for name in ("face.keras", "face.tflite"))


@pytest.mark.parametrize("size, channels", [(48, 1), (64, 3)])
def test_build_emo_cnn_takes_larger_and_colour_inputs(size, channels):
    from emocli.face.networks import build_emo_cnn

    net = build_emo_cnn(width=4, size=size, channels=channels)
    assert tuple(net.inputs[0].shape[1:]) == (size, size, channels)
    # four 2x poolings, then a flatten: the first dense layer's input grows with the side
    assert net.get_layer("flatten").output.shape[-1] == (size // 16) ** 2 * 8 * 4
    out = net.predict_on_batch(np.zeros((2, size, size, channels), np.float32))
    assert out.shape == (2, 7) and np.allclose(out.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_tune_prior_chooses_the_logit_adjustment_on_the_holdout_and_writes_it(faces, tmp_path):
    """Issue 28, 5: the prior adjustment is an `emo` command (it was scripts/face_prior.py)."""
    from emocli.bundle import verify_bundle
    from emocli.train.tuning import PRIOR_TAUS
    from emocli.face.model import FaceModel

    bundle = _heldout_bundle(tmp_path / "b", seed=1)
    res = CliRunner().invoke(app, ["tune-prior", str(bundle), str(faces)])
    assert res.exit_code == 0, res.output
    assert all(f"tau {t:.1f}: held-out accuracy" in res.output for t in PRIOR_TAUS) and "(n=14)" in res.output
    assert "prior_adjustment" not in json.loads((bundle / "face.json").read_text())  # nothing written without --write
    res = CliRunner().invoke(app, ["tune-prior", str(bundle), str(faces), "--write", "--max-accuracy-loss", "1"])
    assert res.exit_code == 0, res.output
    adj = json.loads((bundle / "face.json").read_text())["prior_adjustment"]
    assert adj["tau"] in PRIOR_TAUS and f"best: tau {adj['tau']:.1f}" in res.output
    assert sum(adj["prior"].values()) == pytest.approx(1.0, abs=1e-5) and "emo tune-prior" in adj["chosen"]
    verify_bundle(bundle)  # the manifest follows the new face.json
    assert FaceModel.load(bundle).prior_tau == adj["tau"]
    res = CliRunner().invoke(app, ["tune-prior", str(bundle), str(tmp_path / "elsewhere")])
    assert res.exit_code == 1 and res.output.startswith("error:")
