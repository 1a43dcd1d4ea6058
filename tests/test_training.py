"""emo train-video on raw face images: options reach the trained bundle, which loads and scores."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from emocli.cli import app
from emocli.labels import LABELS
from emocli.errors import DatasetError
from emocli.splits import grouped_holdout, speaker_folds, stratified_holdout
from emocli.training import heldout_part, holdout_seed_of

FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # FER2013's names


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("fer")
    rng = np.random.default_rng(0)
    for i in range(len(LABELS)):
        d = root / "train" / FOLDERS[i]
        d.mkdir(parents=True)
        for k in range(8):
            img = rng.integers(0, 60, (48, 48), dtype=np.uint8)
            img[6 * i:6 * i + 6] = 250  # one bright band per class: learnable
            cv2.imwrite(str(d / f"{k}.png"), img)
    return root / "train"


def test_train_video_mixed_precision_and_augmentation_options(faces, tmp_path):
    from emocli.video_model import FaceModel

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
    from emocli.video_model import build_emo_cnn, with_precision

    import keras

    inner = build_emo_cnn(width=4)
    outer = keras.Sequential([keras.Input((48, 48, 1)), inner])
    with pytest.raises(ModelError, match="flat network"):
        with_precision(outer, "mixed_bfloat16")
    with pytest.raises(ModelError, match="unknown precision"):
        with_precision(inner, "float8")


def test_averaged_face_networks_save_load_and_score_as_the_mean(tmp_path):
    import keras

    from emocli.video_model import FaceModel, average_networks, build_emo_cnn

    keras.utils.set_random_seed(1)
    a, b = build_emo_cnn(width=4), build_emo_cnn(width=4)
    model = FaceModel(backbone="emo-cnn-ensemble")
    model.network_ = average_networks([a, b], ["member_a", "member_b"])
    model.save(tmp_path)
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
    from emocli.training import heldout_part
    from emocli.media import read_image
    from emocli.video_model import FaceModel, Preprocessing, build_emo_cnn, prepare_faces

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


def test_tune_views_scores_each_candidate_and_writes_the_best(faces, tmp_path):
    from emocli.bundle import verify_bundle
    from emocli.training import VIEW_CANDIDATES
    from emocli.video_model import FaceModel

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


def test_ensemble_compares_members_and_their_mean(faces, tmp_path):
    from emocli.video_model import FaceModel

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
    assert not (tmp_path / "same" / "face.keras").exists()


def test_ensemble_refuses_bundles_with_different_held_out_parts(faces, tmp_path):
    a, b = _heldout_bundle(tmp_path / "a", seed=1), _heldout_bundle(tmp_path / "b", seed=2, holdout=0.5)
    res = CliRunner().invoke(app, ["ensemble", str(a), str(b), str(faces), "--out", str(tmp_path / "ens"),
                                   "--write"])
    assert res.exit_code == 1 and res.output.startswith("error:")
    assert "differ in holdout (0.25 vs 0.5)" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "ens").exists()


def test_balance_weights():
    from emocli.training import balance_weights

    groups = np.array([0] * 90 + [1] * 10)
    assert np.allclose(balance_weights(groups, "none"), 1)
    full = balance_weights(groups, "full")
    assert full[:90].sum() == pytest.approx(full[90:].sum()) and full.mean() == pytest.approx(1)
    sq = balance_weights(groups, "sqrt")
    assert sq[95] / sq[0] == pytest.approx(3.0)  # sqrt(90 / 10)
    with pytest.raises(Exception, match="unknown balance"):
        balance_weights(groups, "max")


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
    from emocli.video_model import FaceModel, adjust_prior

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


# -- splits ---------------------------------------------------------------------------------------

@given(seed=st.integers(0, 10_000), n_speakers=st.integers(2, 12), n_folds=st.integers(2, 6))
@settings(max_examples=30, deadline=None)
def test_speaker_folds_never_split_a_speaker(seed, n_speakers, n_folds):
    rng = np.random.default_rng(seed)
    groups = np.array([f"s{i}" for i in rng.integers(0, n_speakers, 60)])
    folds = speaker_folds(groups, n_folds, rng)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen.tolist()) == list(range(60))  # a partition
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])


@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=12), share=st.floats(0.05, 0.95),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_grouped_holdout_never_puts_a_group_on_both_sides(sizes, share, seed):
    groups = np.array([f"x_{s}" for s, n in enumerate(sizes) for _ in range(n)])
    tr, ho = grouped_holdout(groups, share, seed)
    assert sorted([*tr, *ho]) == list(range(len(groups)))  # a partition
    assert len(ho) and not set(groups[tr]) & set(groups[ho])
    np.testing.assert_array_equal(ho, grouped_holdout(groups, share, seed)[1])  # the seed decides


def test_speaker_folds_are_pinned():
    """The shipped voice model's C and gamma were chosen on these folds: a rewrite (GroupKFold deals
    speakers largest first, unshuffled) would change which clips validate which, and the selection."""
    groups = np.repeat(["a", "b", "c", "d", "e", "f"], [5, 1, 3, 2, 4, 2])
    folds = speaker_folds(groups, 4, np.random.default_rng(7))
    assert [va.tolist() for _, va in folds] == [[5, 9, 10, 15, 16], [6, 7, 8], [0, 1, 2, 3, 4], [11, 12, 13, 14]]


def test_train_video_exclude_keeps_listed_images_out_of_training_and_held_out(faces, tmp_path, monkeypatch):
    import hashlib
    import os

    from rich.console import Console

    import emocli.training as training

    listed = sorted(faces.glob("*/[01].png"))  # two images of each class
    excl = tmp_path / "lists" / "excl.csv"
    excl.parent.mkdir()
    # a CSV manifest: a header, absolute paths and paths relative to the list's folder
    rows = ["path,label"] + [f"{p},x" for p in listed[:7]] + [f"{os.path.relpath(p, excl.parent)},x"
                                                              for p in listed[7:]]
    excl.write_text("\n".join(rows) + "\n")
    seen = []
    real = training.fit_face_model

    def spy(model, x, y, *, x_val, y_val, **kw):
        seen.append((x, x_val))
        return real(model, x, y, x_val=x_val, y_val=y_val, **kw)

    monkeypatch.setattr(training, "fit_face_model", spy)
    out = tmp_path / "b"
    training.train_video_command(data=faces, out=out, console=Console(stderr=True), options=training.TrainOptions(
        epochs=1, width=4, batch_size=16, holdout=0.25, exclude=excl))
    (x, x_val), = seen
    assert len(x) + len(x_val) == 7 * 6  # 8 per class, 2 of them excluded
    assert len(x_val) == 7 * 2  # 25 % of the 6 left per class, rounded up (stratified)
    # no excluded image reached training or the held-out part
    from emocli.media import read_image
    from emocli.video_model import FaceModel, store_faces

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
    assert not (out / "face.keras").exists()


@pytest.mark.parametrize("size, channels", [(48, 1), (64, 3)])
def test_build_emo_cnn_takes_larger_and_colour_inputs(size, channels):
    from emocli.video_model import build_emo_cnn

    net = build_emo_cnn(width=4, size=size, channels=channels)
    assert tuple(net.inputs[0].shape[1:]) == (size, size, channels)
    # four 2x poolings, then a flatten: the first dense layer's input grows with the side
    assert net.get_layer("flatten").output.shape[-1] == (size // 16) ** 2 * 8 * 4
    out = net.predict_on_batch(np.zeros((2, size, size, channels), np.float32))
    assert out.shape == (2, 7) and np.allclose(out.sum(1), 1, atol=1e-5)


def test_training_targets_mix_labels_and_soft_targets():
    from emocli.errors import ModelError
    from emocli.training import training_targets

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

    import emocli.training as training
    from emocli.video_model import FaceModel, finish_inputs

    opts = dict(width=4, batch_size=16, holdout=0.25, holdout_seed=0)
    teachers = []
    for seed in (1, 2):
        t = tmp_path / f"t{seed}"
        training.train_video_command(data=faces, out=t, console=Console(stderr=True),
                                     options=training.TrainOptions(epochs=1, seed=seed, **opts))
        teachers.append(t)
    seen = []
    real = training.fit_face_model

    def spy(model, x, y, *, x_val, y_val, soft_targets=None, **kw):
        seen.append((x, soft_targets))
        return real(model, x, y, x_val=x_val, y_val=y_val, soft_targets=soft_targets, **kw)

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


@pytest.mark.parametrize("args", [["--holdout", "0.25", "--holdout-seed", "4"], ["--holdout", "0.4", "--holdout-seed", "0"]])
def test_train_video_refuses_a_teacher_with_another_held_out_part_in_one_line(faces, tmp_path, args):
    teacher = tmp_path / "t"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(teacher), "--epochs", "1", "--width", "4",
                                   "--holdout", "0.25", "--holdout-seed", "0"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "student"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(out), "--epochs", "1", "--width", "4",
                                   *args, "--teacher", str(teacher)])
    assert res.exit_code == 1, res.output
    msg = " ".join(res.output.split())
    assert str(teacher) in msg and "not trained with the student's held-out split" in msg and "--holdout-seed" in msg
    assert "Traceback" not in res.output and not (out / "face.keras").exists()


def test_refresh_batch_norm_sets_the_mean_of_batch_statistics_with_dropout_off():
    import keras
    from keras import layers

    from emocli.video_model import refresh_batch_norm

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
    with pytest.raises(Exception, match="no faces"):
        refresh_batch_norm(net, [])


def test_refresh_bn_command_reports_writes_only_a_gain_and_never_uses_held_out_faces(faces, tmp_path, monkeypatch):
    import keras

    import emocli.video_model as vm
    from emocli.video_model import FaceModel

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

    monkeypatch.setattr(vm, "refresh_batch_norm", spy)
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
    monkeypatch.setattr(vm, "refresh_batch_norm", lambda net, batches: 1)
    again = tmp_path / "bn2"
    res = CliRunner().invoke(app, ["refresh-bn", str(bundle), str(faces), "--out", str(again), "--write"])
    assert res.exit_code == 1 and "does not beat" in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and not again.exists()


def test_train_video_refresh_bn_keeps_the_new_statistics_only_on_a_gain(faces, tmp_path, monkeypatch):
    import keras

    import emocli.video_model as vm
    from emocli.video_model import FaceModel

    args = ["--epochs", "3", "--width", "4", "--batch-size", "8", "--lr", "0.01", "--holdout", "0.25", "--seed", "1"]
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

    monkeypatch.setattr(vm, "refresh_batch_norm", spoil)
    spoiled = tmp_path / "spoiled"
    res = CliRunner().invoke(app, ["train-video", str(faces), "--out", str(spoiled), *args, "--refresh-bn"])
    assert res.exit_code == 0, res.output
    assert "not kept" in res.output
    assert json.loads((spoiled / "face.json").read_text())["batchnorm_refresh"]["kept"] is False
    # the network as trained is what is saved
    saved = FaceModel.load(spoiled).network_.get_weights()
    assert len(trained) == 1 and all(np.array_equal(a, b) for a, b in zip(trained[0], saved))
