"""README's Data section as a user follows it: Kaggle's fer2013.csv -> folders
(scripts/fer2013_csv_to_folders.py), and a new bundle started from a copy of the shipped one."""

import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO, write_wav
from emocli.cli.app import app

from emocli.corpus.layouts import detect_layout, load_corpus

SCRIPT = REPO / "scripts" / "fer2013_csv_to_folders.py"


def test_three_rows_become_train_val_test_folders(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, 48 * 48) for _ in range(3)]
    rows = [(0, "Training"), (3, "PublicTest"), (6, "PrivateTest")]  # angry, happy, neutral
    lines = ["emotion,pixels,Usage"] + [f"{e},{' '.join(map(str, f))},{u}" for (e, u), f in zip(rows, faces)]
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "fer2013"
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "fer2013.csv"), str(out)],
                       capture_output=True, text=True, check=True)
    assert "train 1" in r.stdout and "val 1" in r.stdout and "test 1" in r.stdout
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["test/neutral/PrivateTest_00002.png", "train/angry/Training_00000.png",
                     "val/happy/PublicTest_00001.png"]
    img = cv2.imread(str(out / files[1]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 48) and np.array_equal(img.ravel(), faces[0])  # row by row, lossless
    # emo reads the result as it is: folder names map to its labels
    assert detect_layout(out / "val") == "images"
    assert sorted((it.label, it.split) for it in load_corpus(out)) == [("anger", "train"), ("happy", "val"),
                                                                      ("neutral", "test")]


def test_a_copy_of_the_shipped_bundle_takes_a_new_voice_model(tmp_path):
    import json
    import shutil

    from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
    from emocli.pipeline.core import Pipeline

    from emocli.media.ffmpeg import load_audio

    # the shipped bundle's voice-activity gate scores speech only: the example clip's words
    # (0.45-1.4 s), with a tone per label that makes the classes separable
    speech = load_audio(EXAMPLES / "1001_DFA_HAP_XX.avi")[3200:3200 + 24000]
    rows = ["path,label,speaker"]
    for label, hz in (("happy", 300), ("sad", 700), ("anger", 1400)):
        for i in range(4):
            t = np.arange(len(speech)) / 16000
            write_wav(tmp_path / f"{label}{i}.wav", speech + 0.05 * np.sin(2 * np.pi * (hz + 20 * i) * t))
            rows.append(f"{label}{i}.wav,{label},s{i % 2}")
    (tmp_path / "voices.csv").write_text("\n".join(rows) + "\n")
    mine = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "mybundle")  # the README's `cp -r`
    runner = CliRunner()
    r = runner.invoke(app, ["extract", str(tmp_path / "voices.csv"), "--out", str(tmp_path / "feats"),
                            "--model", str(mine)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train-audio", "--features", str(tmp_path / "feats"), "--out", str(mine)])
    assert r.exit_code == 1 and "voice_speaker" in r.output  # it would leave the shipped speaker model behind
    for stale in mine.glob("voice_speaker.*"):  # the README's `rm mybundle/voice_speaker.*`
        stale.unlink()
    r = runner.invoke(app, ["train-audio", "--features", str(tmp_path / "feats"), "--out", str(mine)])
    assert r.exit_code == 0, r.output
    assert json.loads((mine / "voice.json").read_text())["n_clips"] == 12
    verify_bundle(mine)  # manifest re-hashed: the copy loads
    res = Pipeline(mine).run(tmp_path / "sad1.wav")
    assert res.status == "ok" and res.voice_scores is not None
    verify_bundle(DEFAULT_BUNDLE)  # the shipped bundle is untouched
