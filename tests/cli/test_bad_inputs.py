"""A battery of bad and unusual inputs: each gets a documented degraded result or a one-line
error naming the file and the fix, never a traceback (README: "What happens when")."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, ffmpeg, make_clip
from emocli.cli.app import app
from emocli.pipeline.core import Pipeline
from emocli.pipeline.options import Options

runner = CliRunner()


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    return Pipeline(tiny_bundle, Options())


def predict_json(bundle, *args):
    r = runner.invoke(app, ["predict", *map(str, args), "--model", str(bundle), "--json"])
    assert "Traceback" not in r.output
    return r.exit_code, [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def one_line_error(res, name):
    assert res.status == "error"
    assert name in res.error and "\n" not in res.error
    assert res.scores is None


# --- files that cannot be read ---------------------------------------------------------

def test_missing_path(pipe, tmp_path):
    one_line_error(pipe.run(tmp_path / "nope.avi"), "nope.avi")


def test_directory_without_media(tiny_bundle, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    code, out = predict_json(tiny_bundle, tmp_path)
    assert code == 1 and out[0]["status"] == "error" and "no video, audio or image" in out[0]["error"]


def test_zero_byte_file(pipe, tmp_path):
    (tmp_path / "empty.avi").write_bytes(b"")
    res = pipe.run(tmp_path / "empty.avi")
    one_line_error(res, "empty.avi")
    assert "empty" in res.error


def test_text_file_named_avi(pipe, tmp_path):
    (tmp_path / "fake.avi").write_text("hello\n" * 100)
    res = pipe.run(tmp_path / "fake.avi")
    one_line_error(res, "fake.avi")
    assert res.error_type == "MediaError"


def test_corrupt_image(pipe, tmp_path):
    good = tmp_path / "good.png"
    import cv2

    cv2.imwrite(str(good), np.zeros((64, 64, 3), np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    one_line_error(pipe.run(bad), "bad.jpg")


# --- damaged or unusual media: degraded results ----------------------------------------

def test_video_truncated_halfway(pipe, tmp_path):
    src = EXAMPLES / "1001_DFA_HAP_XX.avi"
    cut = tmp_path / "cut.avi"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    res = pipe.run(cut)
    assert res.status == "ok", res.error
    assert 0 < res.frames_used < 11  # only the first part decodes


def test_video_without_audio_is_face_only(pipe, tmp_path):
    silent = tmp_path / "silent.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-an", "-c:v", "copy", str(silent))
    res = pipe.run(silent)
    assert res.status == "ok" and res.modalities == ["face"] and res.voice_scores is None
    assert "no audio track" in res.notes and "face only" in res.notes


def test_audio_only_file_is_voice_only(pipe, tmp_path):
    wav = make_clip(tmp_path / "tone.wav", video=False, seconds=1.5)
    res = pipe.run(wav)
    assert res.status == "ok" and res.modalities == ["voice"] and res.face_scores is None
    assert res.scores == res.voice_scores


def test_video_without_a_face_is_voice_only(pipe, tmp_path):
    clip = make_clip(tmp_path / "pattern.avi", seconds=1.0)
    res = pipe.run(clip)
    assert res.status == "ok" and res.modalities == ["voice"]
    assert any("no face found" in n for n in res.notes) and "voice only" in res.notes


def test_one_frame_video(pipe, tmp_path):
    one = tmp_path / "one.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-frames:v", "1", "-an", str(one))
    res = pipe.run(one)
    assert res.status == "ok" and res.frames_used == 1


def test_audio_shorter_than_one_window(pipe, tmp_path):
    blip = tmp_path / "blip.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=0.01", str(blip))
    res = pipe.run(blip)  # no face, and too little audio: an error that says both
    one_line_error(res, "blip.wav")
    assert "too short" in res.error or "window" in res.error


def test_short_audio_with_face_is_face_only(pipe, tmp_path):
    clip = tmp_path / "short_audio.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-f", "lavfi", "-i",
           "sine=frequency=300:sample_rate=16000:duration=0.01", "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "pcm_s16le", str(clip))
    res = pipe.run(clip)
    assert res.status == "ok" and res.modalities == ["face"]
    assert "face only" in res.notes and any("too short" in n for n in res.notes)


def test_4k_frames_are_downscaled(pipe, tmp_path):
    big = tmp_path / "big.mkv"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-t", "0.5", "-vf", "scale=3840:2160",
           "-c:v", "mpeg4", "-q:v", "8", "-an", str(big))
    res = pipe.run(big)
    assert res.status == "ok" and res.frames_used >= 2


def test_variable_frame_rate(pipe, tmp_path):
    vfr = tmp_path / "vfr.mkv"
    # drop frames irregularly and keep the original timestamps: variable frame rate
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-vf", "select='not(mod(n\\,3))+eq(n\\,10)'",
           "-fps_mode", "vfr", "-c:v", "mpeg4", "-an", str(vfr))
    res = pipe.run(vfr)
    assert res.status == "ok" and 8 <= res.frames_seen <= 12  # ~2 s at 5 fps, whatever the stream's rate


def test_rotation_metadata_is_applied(tmp_path):
    from emocli.media import ffmpeg as media

    rot = tmp_path / "rot.mp4"
    # stream copy keeps the display matrix (re-encoding would rotate the pixels instead)
    ffmpeg("-display_rotation", "90", "-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-t", "0.5",
           "-c:v", "copy", "-an", str(rot))
    info = media.probe(rot)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (360, 480)
    _, frames = next(media.iter_frames(rot, fps=5, info=info))
    assert frames.shape[1:3] == (480, 360)  # upright, as players show it


@pytest.mark.parametrize("name", ["with space.avi", "ünïcødé_ŝ.avi", "-dash.avi"])
def test_awkward_file_names(tiny_bundle, tmp_path, name):
    p = tmp_path / name
    shutil.copy(EXAMPLES / "1001_DFA_SAD_XX.avi", p)
    arg = f"./{name}" if name.startswith("-") else str(p)
    r = runner.invoke(app, ["predict", "--model", str(tiny_bundle), "--json", "--", str(p)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "ok"
    assert arg  # a leading dash also works as ./-dash.avi


def test_non_seekable_pipe(tiny_bundle):
    data = (EXAMPLES / "1001_DFA_FEA_XX.avi").read_bytes()
    r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--json"], input=data)
    assert r.exit_code == 0
    obj = json.loads(r.stdout)
    assert obj["status"] == "ok" and obj["modalities"] == ["face", "voice"]


# --- the same bad files inside a corpus: extract and evaluate go on and account for them --

@pytest.fixture
def corpus_with_bad_files(tmp_path):
    root = tmp_path / "afew"
    for split, folder, src in (("Val", "Happy", "HAP"), ("Val", "Sad", "SAD")):
        (root / split / folder).mkdir(parents=True)
        shutil.copy(EXAMPLES / f"1001_DFA_{src}_XX.avi", root / split / folder / f"{src}.avi")
    (root / "Val" / "Sad" / "empty.avi").write_bytes(b"")
    (root / "Val" / "Happy" / "text.avi").write_text("not a video\n")
    return root


def test_extract_records_bad_items_and_finishes_the_rest(tiny_bundle, corpus_with_bad_files, tmp_path):
    out = tmp_path / "feats"
    r = runner.invoke(app, ["extract", str(corpus_with_bad_files), "--out", str(out), "--model", str(tiny_bundle)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["done"] == 2 and summary["failed"] == 2
    assert summary["failed_by_reason"] == {"MediaError": 2}
    index = (out / "index.csv").read_text()
    assert "empty.avi" in index and "text.avi" in index and index.count(",ok,") == 2
    # resume does not redo failed items unless asked to
    r2 = runner.invoke(app, ["extract", str(corpus_with_bad_files), "--out", str(out), "--model", str(tiny_bundle), "--resume"])
    assert r2.exit_code == 0 and json.loads(r2.stdout.strip().splitlines()[-1])["skipped"] == 4


def test_extract_refuses_to_mix_runs(tiny_bundle, corpus_with_bad_files, tmp_path):
    out = tmp_path / "feats"
    runner.invoke(app, ["extract", str(corpus_with_bad_files), "--out", str(out), "--model", str(tiny_bundle)])
    r = runner.invoke(app, ["extract", str(corpus_with_bad_files), "--out", str(out), "--model", str(tiny_bundle)])
    assert r.exit_code == 1 and "--resume" in r.output
    r = runner.invoke(app, ["extract", str(corpus_with_bad_files), "--out", str(out), "--model", str(tiny_bundle),
                            "--resume", "--fps", "2"])
    assert r.exit_code == 1 and "other settings" in r.output


def test_evaluate_counts_and_lists_failed_items(tiny_bundle, corpus_with_bad_files):
    r = runner.invoke(app, ["evaluate", str(corpus_with_bad_files), "--split", "Val", "--model", str(tiny_bundle), "--json"])
    assert r.exit_code == 1
    rep = json.loads(r.stdout)
    assert rep["n_items"] == 4 and rep["n_failed"] == 2
    assert sorted(Path(f["file"]).name for f in rep["failed"]) == ["empty.avi", "text.avi"]
    for m in ("face", "voice", "fused"):
        assert rep[m]["n"] == 2
        assert sum(map(sum, rep[m]["confusion"])) == rep[m]["n"]


def test_evaluate_missing_corpus_is_one_line(tiny_bundle, tmp_path):
    r = runner.invoke(app, ["evaluate", str(tmp_path / "nowhere"), "--model", str(tiny_bundle)])
    assert r.exit_code == 1 and "nowhere" in r.output and "Traceback" not in r.output
