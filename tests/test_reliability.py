"""Issue 13, reliability round 2: every input gets its line, every failure its one-line error."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from conftest import ffmpeg, make_clip
from emocli.cli import app

runner = CliRunner()


def predict(bundle, *args, input=None):
    r = runner.invoke(app, ["predict", *map(str, args), "--model", str(bundle), "--json"], input=input)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, [json.loads(x) for x in r.stdout.splitlines() if x.strip()], r


def test_non_utf8_file_name_is_read_and_printed_escaped(tiny_bundle, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    clip = make_clip(folder / "z.avi", seconds=1.0)
    bad = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.avi")  # surrogate escape, as argv holds it
    shutil.copy(clip, bad)
    code, out, r = predict(tiny_bundle, folder)
    assert code == 0, r.output
    assert [o["status"] for o in out] == ["ok", "ok"]
    assert out[0]["file"].endswith("caf\\xe9.avi")
    r.stdout_bytes.decode("utf-8")  # valid UTF-8 throughout
    code, out, r = predict(tiny_bundle, bad, bad[:-4] + "-missing.avi")
    assert code == 1 and [o["status"] for o in out] == ["ok", "error"]
    assert "caf\\xe9-missing.avi" in out[1]["error"]


def test_two_audio_tracks_use_the_default_one(tiny_bundle, tmp_path):
    video = make_clip(tmp_path / "v.avi", seconds=1.0, audio=False)
    two = tmp_path / "two.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=500:sample_rate=16000:duration=1", "-i", str(video), "-map", "2:v", "-map", "0:a",
           "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", "-disposition:a:0", "0", "-disposition:a:1", "default",
           str(two))
    from emocli import media

    info = media.probe(two)
    assert (info.audio_streams, info.audio_stream) == (2, 1)
    assert len(media.load_audio(two, info=info)) == pytest.approx(16000, abs=400)
    code, out, r = predict(tiny_bundle, two)
    assert code == 0 and out[0]["status"] == "ok" and "voice" in out[0]["modalities"], r.output
    assert "voice from audio stream 2 of 2" in out[0]["notes"]


def test_mp3_cover_art_is_not_a_video(tiny_bundle, tmp_path):
    pic = tmp_path / "pic.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04", "-frames:v", "1", str(pic))
    mp3 = tmp_path / "song.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=1.5", "-i", str(pic),
           "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame", "-c:v", "copy", "-disposition:v", "attached_pic",
           "-id3v2_version", "3", str(mp3))
    code, out, r = predict(tiny_bundle, mp3)
    assert code == 0, r.output
    assert out[0]["modalities"] == ["voice"] and out[0]["face_scores"] is None and out[0]["frames_seen"] == 0
