"""The research workflow end to end through the CLI: an AFEW-layout corpus of generated clips
-> extract -> train-video/train-audio on the extracted features -> fuse -> evaluate."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO, ffmpeg
from emocli.cli.app import app

pytestmark = pytest.mark.slow  # trains face networks: `pytest -m 'not slow'` leaves it out

runner = CliRunner()
CLASSES = {"Happy": ("HAP", 300), "Sad": ("SAD", 700), "Angry": ("ANG", 1400)}  # face clip, tone in Hz


@pytest.fixture(scope="module")
def afew(tmp_path_factory):
    """AFEW naming: <root>/{Train,Val}/<Emotion>/*.avi; each clip = a real face + a class-specific tone."""
    root = tmp_path_factory.mktemp("AFEW")
    for split, n in (("Train", 4), ("Val", 2)):
        for emotion, (code, hz) in CLASSES.items():
            (root / split / emotion).mkdir(parents=True)
            for i in range(n):
                f = hz * (1 + 0.03 * i) * (1.01 if split == "Val" else 1)
                ffmpeg("-ss", f"{0.1 * i:.1f}", "-t", "1.5", "-i", str(EXAMPLES / f"1001_DFA_{code}_XX.avi"),
                       "-f", "lavfi", "-i", f"sine=frequency={f:.0f}:sample_rate=16000:duration=1.5",
                       "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "pcm_s16le",
                       str(root / split / emotion / f"{split.lower()}_{emotion.lower()}_{i:03d}.avi"))
    return root


def ok(r):
    assert r.exit_code == 0, r.output
    return r


def test_extract_train_fuse_evaluate(afew, tiny_bundle, tmp_path):
    feats = tmp_path / "train_features"
    summary = json.loads(ok(runner.invoke(app, ["extract", str(afew), "--split", "Train", "--out", str(feats),
                                                "--model", str(tiny_bundle)])).stdout.splitlines()[-1])
    assert summary["done"] == 12 and summary["failed"] == 0
    bundle = tmp_path / "bundle"
    ok(runner.invoke(app, ["train-video", "--features", str(feats), "--out", str(bundle)]))
    ok(runner.invoke(app, ["train-audio", "--features", str(feats), "--out", str(bundle), "--no-vad"]))  # tones
    r = ok(runner.invoke(app, ["fuse", str(bundle), "--method", "confusion"]))
    # issue 28, 3: weights from 12 training clips (2 per class) come with a warning
    assert "warning:" in r.stderr and "fewer than 50 items of anger (" in r.stderr
    fusion = json.loads((bundle / "fusion.json").read_text())
    assert fusion["method"] == "confusion"
    for lab, w in fusion["face_weights"].items():
        assert 0 <= w <= 1 and w + fusion["voice_weights"][lab] == pytest.approx(1)

    plot = tmp_path / "cm.png"
    r = runner.invoke(app, ["evaluate", str(afew), "--split", "Val", "--model", str(bundle), "--json",
                            "--plot", str(plot)])
    rep = json.loads(ok(r).stdout)
    assert rep["n_items"] == 6 and rep["n_failed"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for m in ("face", "voice", "fused"):
        part = rep[m]
        cm = np.array(part["confusion"])
        assert part["n"] == 6 == cm.sum()
        assert part["labels"] == rep["labels"] and cm.shape == (7, 7)
        assert part["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        assert set(part) >= {"n", "labels", "accuracy", "uar", "macro_f1", "confusion"}
    # the tones are trivially separable: the voice model must have learned them
    assert rep["voice"]["accuracy"] == 1.0

    # feature-level fusion, fitted on the same extracted training features
    r = ok(runner.invoke(app, ["fuse", str(bundle), "--method", "feature-svm", "--features", str(feats)]))
    # what a feature-level method learned, not the decision weights it does not use
    assert "held-out accuracy" in r.stderr and "PCA" in r.stderr and "face weight per emotion" not in r.stderr
    info = json.loads((bundle / "fusion.json").read_text())["info"]
    assert info["pca_components"] >= 1 and info["input_dimension"] > info["pca_components"]
    rep2 = json.loads(ok(runner.invoke(app, ["evaluate", str(afew), "--split", "Val", "--model", str(bundle),
                                             "--json"])).stdout)
    assert rep2["fused"]["n"] == 6 and np.array(rep2["fused"]["confusion"]).sum() == 6

    # issue 28, 3: `emo fuse` with no options writes the shipped rule (equal weights, product), silently
    r = ok(runner.invoke(app, ["fuse", str(bundle)]))
    fusion = json.loads((bundle / "fusion.json").read_text())
    assert (fusion["method"], fusion["rule"]) == ("equal", "product") and "warning" not in r.stderr
    shipped = json.loads((REPO / "models" / "default" / "fusion.json").read_text())
    assert (shipped["method"], shipped["rule"]) == (fusion["method"], fusion["rule"])


def test_train_video_features_into_a_bundle_with_a_face_head_changes_its_default_score(afew, tmp_path):
    """Issue 28, 1: in a bundle whose face score comes from the experts' head, a retrained softmax was
    never read by default (evaluate gave the shipped scores item for item). Now it is the default face
    score, face.json and the command's last line say so, and the head stays one option away."""
    import shutil

    from emocli.bundle import DEFAULT_BUNDLE

    bundle = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    feats = tmp_path / "feats"
    ok(runner.invoke(app, ["extract", str(afew), "--split", "Train", "--out", str(feats), "--model", str(bundle)]))
    r = ok(runner.invoke(app, ["train-video", "--features", str(feats), "--out", str(bundle)]))
    assert "the default face score is now this softmax (emo-cnn alone)" in r.stderr
    assert "retrained softmax" in json.loads((bundle / "face.json").read_text())["default_score"]
    clip = str(next((afew / "Val" / "Happy").glob("*.avi")))

    def face(model, *args):
        out = ok(runner.invoke(app, ["predict", clip, "--model", str(model), "--modality", "face", "--json", *args]))
        return json.loads(out.stdout.splitlines()[-1])

    default, alone, head = face(bundle), face(bundle, "--face-experts", "emo-cnn"), face(bundle, "--face-experts",
                                                                                         "emo-cnn,rafdb")
    shipped = face(DEFAULT_BUNDLE)
    assert default["face_scores"] == alone["face_scores"] != shipped["face_scores"]
    assert head["face_experts"] is not None and set(head["face_experts"]) == {"emo-cnn", "rafdb"}
