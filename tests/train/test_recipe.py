"""The shipped bundle's recipe (README, "Rebuild the shipped bundle") run with `emo`
commands only, on tiny generated corpora: every trained part is written, the bundle is complete,
verifies and scores a real clip."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, colour_corpora, write_wav
from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
from emocli.cli.app import app

pytestmark = pytest.mark.slow  # trains face networks: `pytest -m 'not slow'` leaves it out

runner = CliRunner()


def ok(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def speech_corpus(root, rng):
    """EmoDB naming, four speakers: the example clip's words with a tone per emotion."""
    from emocli.media.ffmpeg import load_audio

    speech = load_audio(EXAMPLES / "1001_DFA_HAP_XX.avi")[3200:3200 + 24000]
    t = np.arange(len(speech)) / 16000
    root.mkdir()
    for spk in ("03", "08", "09", "10"):
        for code, hz in (("W", 1400.0), ("T", 300.0), ("F", 700.0)):
            for take in "ab":
                write_wav(root / f"{spk}a01{code}{take}.wav",
                          speech + 0.05 * np.sin(2 * np.pi * hz * rng.uniform(0.95, 1.05) * t))
    return root


@pytest.mark.graph
def test_the_shipped_bundles_recipe_with_emo_commands_only(faces, tmp_path):
    rng = np.random.default_rng(0)
    data = colour_corpora(tmp_path / "data", rng, {"affectnet/train": 10, "sfew/Train": 5, "rafdb/train": 10,
                                                  "fer2013/val": 2})
    voices = speech_corpus(tmp_path / "emodb", rng)
    b = tmp_path / "bundle"
    # the face network, its views and its class-prior adjustment
    # (the shipped network's stages also ran `emo refresh-bn`, which writes only when it helps: a
    # one-epoch network on 56 faces gives it nothing to win, so its own tests cover it)
    ok("train-video", faces, "--out", b, "--epochs", 1, "--width", 4, "--batch-size", 16, "--holdout", 0.25)
    ok("tune-views", b, faces, "--write")
    ok("tune-prior", b, faces, "--write")
    # the second expert is converted (scripts/dequantize_onnx.py writes it; copied here), then its
    # last stage fine-tuned into a new bundle
    for name in ("face_expert_rafdb.onnx", "LICENSE.face_expert_rafdb.Apache-2.0.txt"):
        shutil.copy(DEFAULT_BUNDLE / name, b / name)
    ok("train-expert", data, "--bundle", b, "--out", tmp_path / "expert", "--epochs", 2, "--lr", 0.003,
       "--cache", tmp_path / "c0")
    b = tmp_path / "expert"
    ok("calibrate-experts", data, "--model", b, "--cache", tmp_path / "c1", "--write")
    ok("train-head", data, "--model", b, "--cache", tmp_path / "c2", "--write")
    (data / "fer2013" / "train").symlink_to(faces)  # the faces emo-cnn trained on: its held-out part is there
    ok("calibrate-small-faces", data, "--bundle", b, "--write")
    # the voice (with its speaker-adapted twin and the speech gate) and the fusion rule
    ok("train-audio", voices, "--out", b, "--test-speakers", "emodb_03", "--feature-set", "thesis68",
       "--no-augment", "--repeats", 1, "--workers", 1, "--adapted-model")
    ok("fuse", b)

    manifest = verify_bundle(b)
    assert {"face.tflite", "face_bn.npz", "face.json", "face_expert_rafdb.onnx", "experts.json", "face_head.npz",
            "voice.npz", "voice.json", "voice_speaker.npz", "voice_speaker.json", "voice_vad.npz", "fusion.json",
            "training_items.npz"} <= set(manifest["files"])
    face = json.loads((b / "face.json").read_text())
    assert {"tta_selection", "prior_adjustment"} <= set(face)
    experts = json.loads((b / "experts.json").read_text())
    assert experts["head"]["info"]["command"].startswith("emo train-head") and "emo calibrate-experts" in experts[
        "info"]["command"]
    assert experts["info"]["rafdb_fine_tune"]["command"].startswith("emo train-expert")
    assert experts["small_faces"]["info"]["command"].startswith("emo calibrate-small-faces")
    from emocli import fingerprints

    sets = fingerprints.read(b)
    assert {"face.emo-cnn", "face.emo-cnn-holdout", "face.rafdb-expert-tuned", "face.calibration", "face.head",
            "face.small-calibration", "voice.svm"} <= set(sets)
    assert len(sets["face.head"]) > len(sets["face.calibration"]) > 0
    r = json.loads(ok("predict", EXAMPLES / "1001_DFA_HAP_XX.avi", "--model", b, "--json").stdout.splitlines()[-1])
    assert r["status"] == "ok" and r["modalities"] == ["face", "voice"] and set(r["face_experts"]) == {"emo-cnn",
                                                                                                     "rafdb"}
