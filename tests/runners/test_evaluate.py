"""emo evaluate for researchers and scripts: training splits recorded and checked, folders of face
crops without flags, per-item predictions, null recall for absent classes, the confusion plot."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ffmpeg
from emocli.cli.app import app
from emocli.errors import DatasetError
from emocli.labels import LABELS

runner = CliRunner()


def ok(r):
    assert r.exit_code == 0, r.output
    return r


# -- 2. still images that are face crops ------------------------------------------------------

def test_face_sized_image_without_a_face_is_scored_as_a_crop(face_only_bundle, tmp_path):
    import cv2

    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    rng = np.random.default_rng(1)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    cv2.imwrite(str(small), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    cv2.imwrite(str(big), rng.integers(0, 255, (400, 300), dtype=np.uint8))
    res = Pipeline(face_only_bundle, Options()).run(small)
    assert res.status == "ok" and any("scored it whole as a face crop" in n for n in res.notes)
    assert sum(res.face_scores.values()) == pytest.approx(1, abs=1e-5)
    res = Pipeline(face_only_bundle, Options(detect=True)).run(small)  # --detect: no fallback
    assert res.status == "error" and "no face found" in res.error
    res = Pipeline(face_only_bundle, Options()).run(big)  # larger than a face crop: still an error
    assert res.status == "error" and "no face found" in res.error


# -- 5. the confusion plot ----------------------------------------------------------------------

def _report(face: bool, voice: bool):
    from emocli.runners.evaluate import Evaluation

    ev = Evaluation()
    rng = np.random.default_rng(0)
    for i in range(20):
        s = {lab: float(v) for lab, v in zip(LABELS, rng.dirichlet(np.ones(7)))}
        ev.add(LABELS[i % 5], {"face": s if face else None, "voice": s if voice else None, "fused": s}, )
    return ev.report()


@pytest.mark.parametrize("face,voice,panels", [(True, True, 4), (True, False, 2), (False, True, 2)])
def test_confusion_figure_draws_the_modalities_that_ran(face, voice, panels, tmp_path):
    import matplotlib.pyplot as plt

    from emocli.runners.evaluate import confusion_figure, plot_confusions

    rep = _report(face, voice)
    fig = confusion_figure(rep)
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.patches and not ax.images]  # matrices carry colour strips too
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(images) == panels - 1 and len(bars) == 1 and len(colorbars) == 1
    titles = [ax.get_title().split(":")[0] for ax in images]
    assert titles == [m for m, on in (("face", face), ("voice", voice), ("fused", face and voice)) if on]
    # percent of the true class, counts below in smaller print, both readable at 100% zoom (>= 7 pt)
    percents = [t for t in images[0].texts if t.get_text().endswith("%")]
    counts = [t for t in images[0].texts if t.get_text().isdigit()]
    assert percents and counts and min(t.get_fontsize() for t in counts) >= 7
    assert max(t.get_fontsize() for t in counts) < min(t.get_fontsize() for t in percents)
    # the recall chart shows its values, and its legend sits below it, not over a bar
    assert len(bars[0].texts) >= len(LABELS) * (panels - 2 if panels > 2 else 1)
    legend = bars[0].get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 < bars[0].get_window_extent().y0
    # a grid of two columns (four panels: 2 x 2, not one row 2200 px wide)
    assert fig.get_size_inches()[0] <= 2 * 5.2 + 1e-6
    assert "plain voice model" in fig.get_suptitle() or not voice
    plt.close(fig)
    assert plot_confusions(rep, tmp_path / "cm.png") == panels


# -- 1. training splits -------------------------------------------------------------------------

def test_training_split_defaults_to_train_and_refuses_eval_splits():
    from emocli.train.data import training_split

    items = [{"split": sp, "id": f"{sp}{i}"} for sp in ("Train", "Val") for i in range(3)]
    keep, split = training_split(items, None)
    assert split == "Train" and [d["id"] for d in keep] == ["Train0", "Train1", "Train2"]
    with pytest.raises(DatasetError, match="--allow-eval-split"):
        training_split(items, "val")
    keep, split = training_split(items, "Val", allow_eval_split=True)
    assert split == "Val" and len(keep) == 3
    flat = [{"split": "", "id": str(i)} for i in range(4)]
    assert training_split(flat, None) == (flat, None)  # no splits: every item
    with pytest.raises(DatasetError, match="none named Train"):
        training_split([{"split": "fold1"}, {"split": "fold2"}], None)
    with pytest.raises(DatasetError, match="no items in split"):
        training_split(items, "Dev2")


@pytest.fixture(scope="module")
def voice_corpus(tmp_path_factory):
    """A CSV manifest of generated tones: 3 emotions x 2 speakers x 2 Train clips, 2 Val clips."""
    root = tmp_path_factory.mktemp("tones")
    rows = ["path,label,split,speaker"]
    for k, (label, hz) in enumerate((("happy", 300), ("sad", 700), ("anger", 1400))):
        for split, n in (("Train", 4), ("Val", 2)):
            for i in range(n):
                name = f"{split.lower()}_{label}_{i}.wav"
                ffmpeg("-f", "lavfi", "-i", f"sine=frequency={hz * (1 + 0.02 * i + 0.01 * k)}:sample_rate=16000:"
                       "duration=1.0", str(root / name))
                rows.append(f"{name},{label},{split},{split[0]}{i % 2}")
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    return root / "corpus.csv"


def test_features_training_records_its_split_and_evaluate_warns_on_overlap(voice_corpus, tiny_bundle, tmp_path):
    feats = tmp_path / "feats"
    ok(runner.invoke(app, ["extract", str(voice_corpus), "--out", str(feats), "--model", str(tiny_bundle)]))
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    r = ok(runner.invoke(app, ["train-audio", "--features", str(feats), "--out", str(bundle), "--no-vad"]))
    assert "training on 12 clips of split Train" in r.output
    meta = json.loads((bundle / "voice.json").read_text())
    assert meta["trained_split"] == "Train" and len(meta["trained_items"]) == 12
    rep = json.loads(ok(runner.invoke(app, ["evaluate", str(voice_corpus), "--split", "Val", "--model", str(bundle),
                                            "--json"])).stdout)
    assert rep["training_overlap"] == {} and rep["n_items"] == 6

    # training on Val needs --allow-eval-split, and evaluate then says the figures are not a measurement
    r = runner.invoke(app, ["train-audio", "--features", str(feats), "--out", str(bundle), "--split", "Val", "--no-vad"])
    assert r.exit_code == 1 and "--allow-eval-split" in r.output
    ok(runner.invoke(app, ["train-audio", "--features", str(feats), "--out", str(bundle), "--split", "Val",
                           "--allow-eval-split", "--no-vad"]))
    r = ok(runner.invoke(app, ["evaluate", str(voice_corpus), "--split", "Val", "--model", str(bundle), "--json"]))
    rep = json.loads(r.stdout)
    assert rep["training_overlap"]["voice"]["n"] == 6 and rep["training_overlap"]["voice"]["split"] == "Val"
    assert "face" not in rep["training_overlap"]
    assert "warning:" in r.stderr and "voice model has seen 6 of the 6" in r.stderr
    assert rep["unseen"]["voice"]["n"] == 0 and rep["unseen"]["voice"]["n_seen"] == 6


def test_train_audio_fingerprints_its_clips_and_evaluate_gives_the_unseen_figures(tiny_bundle, tmp_path):
    """A bundle knows the clips that trained it, under any name: evaluating the whole corpus warns,
    counts them, and reports the figures on the others, equal to evaluating those alone."""
    from emocli import fingerprints

    root = tmp_path / "tones"  # voice_corpus's layout, every clip different (its Val clips repeat Train ones)
    root.mkdir()
    rows = ["path,label,split,speaker"]
    for k, (label, hz) in enumerate((("happy", 300), ("sad", 700), ("anger", 1400))):
        for split, n, off in (("Train", 4, 0.0), ("Val", 2, 0.005)):
            for i in range(n):
                name = f"{split.lower()}_{label}_{i}.wav"
                ffmpeg("-f", "lavfi", "-i", f"sine=frequency={hz * (1 + 0.02 * i + 0.01 * k + off)}:sample_rate=16000:"
                       "duration=1.0", str(root / name))
                rows.append(f"{name},{label},{split},{split[0]}{i % 2}")
    voice_corpus = root / "corpus.csv"
    voice_corpus.write_text("\n".join(rows) + "\n")
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    ok(runner.invoke(app, ["train-audio", str(voice_corpus), "--out", str(bundle), "--test-speakers", "V0,V1",
                           "--feature-set", "thesis68", "--no-vad", "--repeats", "1", "--workers", "1"]))
    sets = fingerprints.read(bundle)
    assert len(sets["voice.svm"]) == 12 and "training_items.npz" in json.loads((bundle / "manifest.json").read_text())[
        "files"]
    # the same corpus copied elsewhere under other names: still recognised
    copy = tmp_path / "copy"
    copy.mkdir()
    rows = voice_corpus.read_text().splitlines()
    for row in rows[1:]:
        name = row.split(",")[0]
        shutil.copy(voice_corpus.parent / name, copy / f"renamed_{name}")
    (copy / "corpus.csv").write_text("\n".join([rows[0]] + ["renamed_" + r for r in rows[1:]]) + "\n")
    r = ok(runner.invoke(app, ["evaluate", str(copy / "corpus.csv"), "--model", str(bundle), "--json"]))
    rep = json.loads(r.stdout)
    assert rep["training_overlap"]["voice.svm"]["n"] == 12 and rep["training_overlap"]["voice.svm"]["modality"] == "voice"
    assert "voice model has seen 12 of the 18" in r.stderr
    unseen = rep["unseen"]["voice"]
    assert unseen["n"] == 6 and unseen["n_seen"] == 12
    val = json.loads(ok(runner.invoke(app, ["evaluate", str(copy / "corpus.csv"), "--split", "Val", "--model",
                                            str(bundle), "--json"])).stdout)
    assert val["unseen"] is None and val["training_overlap"] == {}
    assert (unseen["accuracy"], unseen["confusion"]) == (val["voice"]["accuracy"], val["voice"]["confusion"])


def test_fingerprint_file_is_merged_by_part_and_a_damaged_one_is_one_line(tmp_path):
    from emocli import fingerprints
    from emocli.errors import ModelError

    a, b, c = (tmp_path / n for n in "abc")
    for i, p in enumerate((a, b, c)):
        p.write_bytes(bytes([i]) * 100)
    (tmp_path / "a_copy").write_bytes(a.read_bytes())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert fingerprints.write(bundle, {"face.emo-cnn": [a, b], "voice.svm": [c]}) == {"face.emo-cnn": 2, "voice.svm": 1}
    assert fingerprints.write(bundle, {"voice.svm": [a]}, replace=("voice",)) == {"face.emo-cnn": 2, "voice.svm": 1}
    seen = fingerprints.seen_by(fingerprints.read(bundle), fingerprints.fingerprints([tmp_path / "a_copy", c,
                                                                                      tmp_path / "missing"]))
    assert seen["face.emo-cnn"].tolist() == [True, False, False] and seen["voice.svm"].tolist() == [True, False, False]
    # a bundle made from others (refresh-bn: one; ensemble: two) carries their face parts, keeps its own voice
    made = tmp_path / "made"
    made.mkdir()
    fingerprints.write(made, {"voice.svm": [b]})
    other = tmp_path / "other"
    other.mkdir()
    fingerprints.write(other, {"face.emo-cnn": [c], "voice.svm": [a]})
    fingerprints.carry(made, bundle, other)
    sets = fingerprints.read(made)
    assert len(sets["face.emo-cnn"]) == 3 and sets["voice.svm"].tolist() == fingerprints.fingerprints([b]).tolist()
    (bundle / fingerprints.FINGERPRINTS_FILE).write_bytes(b"PK\x03\x04torn")
    with pytest.raises(ModelError, match="training_items.npz: not a readable fingerprint file"):
        fingerprints.read(bundle)


# -- 3-4. per-item predictions and null recall on a folder of crops --------------------------

@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """FER2013-style 48x48 grey noise 'crops' (no detectable face) of two emotions only."""
    import cv2

    root = tmp_path_factory.mktemp("fer_val")
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (root / label).mkdir()
        for i in range(3):
            cv2.imwrite(str(root / label / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return root


def test_evaluate_crops_items_predictions_null_recall_and_plot(crops, face_only_bundle, tmp_path):
    from PIL import Image

    pred, plot = tmp_path / "pred.csv", tmp_path / "cm.png"
    r = ok(runner.invoke(app, ["evaluate", str(crops), "--model", str(face_only_bundle), "--json",
                               "--predictions", str(pred), "--plot", str(plot)]))
    rep = json.loads(r.stdout)
    assert rep["n_items"] == 6 and rep["n_failed"] == 0  # default options: no --no-detect needed
    # absent classes: recall null (not 0.0); present ones a number
    assert rep["face"]["recall"]["anger"] is None and isinstance(rep["face"]["recall"]["happy"], float)
    assert len(rep["items"]) == 6
    it = rep["items"][0]
    assert it["status"] == "ok" and it["true_label"] in ("happy", "sad") and it["voice_scores"] is None
    assert it["face_label"] in LABELS and it["fused_label"] == it["face_label"]
    assert any("face crop" in n for n in it["notes"])
    rows = list(csv.DictReader(io.StringIO(pred.read_text())))
    assert len(rows) == 6 and {r_["file"] for r_ in rows} == {i["file"] for i in rep["items"]}
    assert rows[0]["voice_label"] == "" and float(rows[0][f"face_{rows[0]['face_label']}"]) > 0
    assert f"wrote {pred}" in r.stderr and f"wrote {plot}" in r.stderr
    w, h = Image.open(plot).size
    assert w == 2 * 5.2 * 110 and abs(h - 4.9 * 110) <= 1  # face matrix + recall chart; no "fused" copy of face


# -- metrics: one classification_report for training, evaluate and scripts ----------------------

def test_classification_report_by_hand():
    from emocli.report.metrics import classification_report

    labels = ["a", "b", "c"]
    # a: 2 of 3 right; b: 1 of 1; c: never true, predicted once
    rep = classification_report([0, 0, 0, 1], [0, 0, 2, 1], labels)
    assert rep["confusion"] == [[2, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert rep["n"] == 4 and rep["accuracy"] == 0.75
    assert rep["uar"] == pytest.approx((2 / 3 + 1) / 2)  # over the classes present, c left out
    assert rep["macro_f1"] == pytest.approx((0.8 + 1.0) / 2)
    assert rep["recall"] == {"a": pytest.approx(2 / 3), "b": 1.0, "c": 0.0}
    assert rep["support"] == {"a": 3, "b": 1, "c": 0}
    assert classification_report([0, 0, 0, 1], [0, 0, 2, 1], labels, absent=None)["recall"]["c"] is None
    empty = classification_report([], [], labels)
    assert (empty["n"], empty["accuracy"], empty["uar"], empty["confusion"]) == (0, 0.0, 0.0, [[0] * 3] * 3)


def test_classification_report_gives_scikit_learns_figures():
    """The report is numpy's; its UAR, macro-F1 and confusion are scikit-learn's, whichever classes
    the truth or the predictions leave out, and with predictions outside the labels."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    from emocli.report.metrics import classification_report

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        y_true = rng.choice(rng.choice(7, int(rng.integers(1, 8)), replace=False), n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(-1, 7, n))  # -1: no class (a miss)
        rep = classification_report(y_true, y_pred, LABELS)
        present = np.unique(y_true)
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
            warnings.simplefilter("ignore", UserWarning)
            assert rep["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
        assert rep["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro",
                                                         zero_division=0), abs=1e-12)
        assert rep["confusion"] == confusion_matrix(y_true, y_pred, labels=np.arange(7)).tolist()


def test_items_a_gate_rejected_are_counted_as_left_out_of_that_modality():
    """A voice the gate rejected (or a face never found) stays an item: counted in that modality's
    n_failed with the items that failed whole, and named in the table's header; a voice that is simply
    absent (an image) is not a failure."""
    from rich.console import Console

    from emocli.runners.evaluate import Evaluation, metrics_table

    s = {lab: float(lab == "happy") for lab in LABELS}
    ev = Evaluation()
    ev.n_items = 4
    ev.add("happy", {"face": s, "voice": None, "fused": s},
           notes=["no speech detected (voice activity: 0.06 s of speech, under 0.3 s): voice not used", "face only"])
    ev.add("happy", {"face": None, "voice": s, "fused": s}, notes=["no face found in 10 frame(s) (yunet)"])
    ev.add("happy", {"face": s, "voice": None, "fused": s}, notes=["face only"])  # an image: no voice to gate
    ev.add_failed("sad", file="broken.avi", error="broken.avi: not a readable video")
    rep = ev.report()
    assert rep["n_failed"] == 1
    assert (rep["voice"]["n_failed"], rep["face"]["n_failed"]) == (2, 2)
    assert rep["left_out"] == {"face": 2, "voice": 2}
    assert rep["voice"]["n_missing"] == 2 and rep["voice"]["n"] == 1
    console = Console(record=True, width=120)
    metrics_table(rep, title="t", console=console)
    text = console.export_text()
    assert "left out of the figures" in text and "face 2 of 4" in text and "voice 2 of 4" in text


def test_evaluate_with_workers_gives_the_same_report(tiny_bundle, tmp_path):
    """--workers 2: decoding and voice features in worker processes, the same items in the same order and
    the same figures as one process (scores within JSON's rounding)."""
    import shutil as sh

    from conftest import EXAMPLES

    rows = ["path,label,split,speaker"]
    for src, lab in (("HAP", "happy"), ("SAD", "sad"), ("ANG", "anger"), ("NEU", "neutral")):
        sh.copy(EXAMPLES / f"1001_DFA_{src}_XX.avi", tmp_path / f"{src}.avi")
        rows.append(f"{tmp_path / f'{src}.avi'},{lab},,1001")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    reps = []
    for w in ("1", "2"):
        r = runner.invoke(app, ["evaluate", str(tmp_path / "m.csv"), "--model", str(tiny_bundle), "--json",
                                "--workers", w])
        assert r.exit_code == 0, r.output
        reps.append(json.loads(r.stdout))
    one, two = reps
    assert [i["file"] for i in one["items"]] == [i["file"] for i in two["items"]]
    for m in ("face", "voice", "fused"):
        assert one[m]["accuracy"] == two[m]["accuracy"] and one[m]["n"] == two[m]["n"]
        for a, b in zip(one["items"], two["items"]):
            assert a[f"{m}_label"] == b[f"{m}_label"]
            if a[f"{m}_scores"]:
                assert max(abs(a[f"{m}_scores"][k] - b[f"{m}_scores"][k]) for k in a[f"{m}_scores"]) < 1e-4
