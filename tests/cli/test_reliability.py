"""Reliability of bulk runs: every input gets its line, every failure its one-line error."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from conftest import ffmpeg, make_clip
from emocli.cli.app import app

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
    from emocli.media import ffmpeg as media

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


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    return Pipeline(tiny_bundle, Options())


ENDED_EARLY = "video stream ended early"


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_truncated_video_says_it_ended_early(pipe, tmp_path, share):
    clip = make_clip(tmp_path / "clip.avi")
    cut = tmp_path / "cut.avi"
    data = clip.read_bytes()
    cut.write_bytes(data[: int(len(data) * share)])
    res = pipe.run(cut)
    assert any(ENDED_EARLY in n for n in res.notes) or ENDED_EARLY in (res.error or "")


def test_truncated_mp4_with_its_index_first_says_it_ended_early(pipe, tmp_path):
    full = tmp_path / "full.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-c:v", "mpeg4",
           "-movflags", "+faststart", str(full))
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert any(ENDED_EARLY in n for n in pipe.run(cut).notes)
    assert not any(ENDED_EARLY in n for n in pipe.run(full).notes)


def test_whole_videos_do_not_say_they_ended_early(tiny_bundle, tmp_path):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    clip = make_clip(tmp_path / "clip.avi", seconds=2.0)
    mkv = make_clip(tmp_path / "clip.mkv", seconds=1.3, rate=30)
    for opts in (Options(), Options(max_seconds=1.0), Options(fps=None)):
        for path in (clip, mkv):
            assert not any(ENDED_EARLY in n for n in Pipeline(tiny_bundle, opts).run(path).notes), (path, opts)


def test_jpeg_corrupt_from_halfway_is_noted_and_stderr_stays_clean(pipe, tmp_path, capfd):
    import cv2
    import numpy as np

    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (96, 96, 3)).astype(np.uint8))
    data = bytearray(good.read_bytes())
    zeros = bytearray(data)
    zeros[len(data) // 2:-2] = bytes(len(data) - 2 - len(data) // 2)  # the end marker survives
    cut = data[: len(data) // 2] + bytes(np.random.default_rng(1).integers(0, 255, len(data) // 2, dtype=np.uint8))
    for name, blob in (("zeros.jpg", zeros), ("junk.jpg", cut)):
        (tmp_path / name).write_bytes(bytes(blob.replace(b"\xff\xd9", b"\xff\x00")) if name == "junk.jpg" else blob)
        res = pipe.run(tmp_path / name)
        said = res.notes if res.status == "ok" else [res.error]
        assert any("damaged" in n for n in said), (name, said)
    capfd.readouterr()
    res = pipe.run(tmp_path / "zeros.jpg")
    assert "Corrupt JPEG" not in capfd.readouterr().err
    assert not any("damaged" in n for n in pipe.run(good).notes)


def write_grey_png(path, width, height):
    """A valid, uniformly grey 8-bit PNG of any size, written in a fraction of a second (it
    compresses to ~100 kB; encoding a 10000x10000 frame with ffmpeg costs seconds of CPU)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + b"\x80" * width  # filter type 0, then the row's grey pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_huge_image_is_refused_from_its_header(pipe, tmp_path):
    big = write_grey_png(tmp_path / "big.png", 10000, 10000)
    res = pipe.run(big)
    assert res.status == "error" and "big.png" in res.error and "10000x10000" in res.error
    assert "downscale" in res.error
    assert res.seconds < 2.0  # ffmpeg -i would decode all 300 MB to describe it (7 s)


def test_image_header_sizes():
    import cv2
    import numpy as np

    from emocli.media.ffmpeg import image_header_size

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("jpg", "png", "bmp"):
            path = os.path.join(tmp, f"a.{ext}")
            cv2.imwrite(path, np.zeros((123, 456, 3), np.uint8))
            assert image_header_size(path) == (456, 123), ext
        cv2.imwrite(os.path.join(tmp, "p.jpg"), np.zeros((50, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
        assert image_header_size(os.path.join(tmp, "p.jpg")) == (70, 50)


def test_stdin_and_devices_are_named_as_given_not_by_their_temporary_copy(tiny_bundle):
    import numpy as np

    junk = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes().replace(b"\0", b"\1")
    code, out, r = predict(tiny_bundle, "-", input=b"\0" + junk)
    assert code == 1 and out[0]["file"] == "<stdin>"
    assert out[0]["error"].startswith("<stdin>: ") and "emo-stdin-" not in r.output
    code, out, r = predict(tiny_bundle, "/dev/null")
    assert code == 1 and out[0]["error"].startswith("/dev/null: ") and "emo-stdin-" not in r.output


def emo_cmd(*args):
    import sys

    return [sys.executable, "-m", "emocli", *map(str, args)]


def test_full_disk_on_stdout_is_one_line_exit_1(tiny_bundle, tmp_path):
    import subprocess

    wav = make_clip(tmp_path / "tone.wav", video=False, seconds=1.0)
    for mode in ("--json", "--table"):
        with open("/dev/full", "w") as full:
            r = subprocess.run(emo_cmd("predict", wav, "--model", tiny_bundle, mode), stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=300)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
        assert r.stderr.count("\n") == 1 and "No space left on device" in r.stderr


def test_closed_stdout_in_table_mode_ends_quietly(tiny_bundle, tmp_path):
    import subprocess

    wav = make_clip(tmp_path / "tone.wav", video=False, seconds=1.0)
    for mode in ("--table", "--json"):
        p = subprocess.Popen(emo_cmd("predict", wav, wav, "--model", tiny_bundle, mode), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdout.close()  # the reader has gone (`| head -0`)
        err = p.stderr.read()
        assert p.wait(timeout=300) == 0, err
        assert err == ""


def test_long_errors_stay_on_one_line(tiny_bundle, tmp_path):
    import subprocess

    name = tmp_path / ("x" * 150 + ".avi")
    r = subprocess.run(emo_cmd("predict", name, "--model", tiny_bundle, "--json"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"backbone": "emo-cnn"}'])
def test_bundle_face_json_that_is_not_a_face_description_is_one_line(tiny_bundle, tmp_path, text):
    from emocli.bundle import write_manifest
    from emocli.labels import LABELS

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "face.json").write_text(text)
    write_manifest(bundle, labels=list(LABELS))  # re-hashed: only the content is wrong
    wav = make_clip(tmp_path / "tone.wav", video=False, seconds=1.0)
    r = runner.invoke(app, ["predict", str(wav), "--model", str(bundle), "--json"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert "face.json" in r.output and ("restore" in r.output or "retrain" in r.output)
    r = runner.invoke(app, ["fuse", str(bundle), "--method", "equal"])
    assert r.exit_code in (0, 1) and isinstance(r.exception, (SystemExit, type(None))), r.exception


def test_unreadable_subfolder_gets_an_error_line(tiny_bundle, tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    (folder / "locked").mkdir(parents=True)
    (folder / "open").mkdir()
    make_clip(folder / "open" / "tone.wav", video=False, seconds=1.0)
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):  # root reads mode-000 folders: fake the refusal
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, r = predict(tiny_bundle, folder)
    assert code == 1
    assert [o["status"] for o in out] == ["error", "ok"]
    assert out[0]["file"].endswith("locked") and "permission denied" in out[0]["error"]


def test_paths_on_stdin_are_handled_line_by_line(tiny_bundle, tmp_path):
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    a = make_clip(tmp_path / "a.wav", video=False, seconds=1.0)
    b = make_clip(tmp_path / "b.wav", video=False, seconds=1.0, freq=600)
    p = subprocess.Popen(emo_cmd("predict", "-", "--model", tiny_bundle, "--json"), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        p.stdin.write(f"{a}\n".encode())
        p.stdin.flush()  # stdin stays open: the first result must not wait for the end of the list
        with ThreadPoolExecutor(1) as ex:
            first = ex.submit(p.stdout.readline).result(timeout=240)
        assert json.loads(first)["file"] == str(a)
        p.stdin.write(os.fsencode(b) + b"\n")
        p.stdin.close()
        assert json.loads(p.stdout.readline())["file"] == str(b)
        assert p.wait(timeout=120) == 0
    finally:
        p.kill()
        p.wait()


def test_stdin_path_list_with_non_utf8_name_and_no_final_newline(tiny_bundle, tmp_path):
    a = make_clip(tmp_path / "a.wav", video=False, seconds=1.0)
    code, out, r = predict(tiny_bundle, "-", input=b"# a comment\n" + os.fsencode(a) + b"\n" +
                           os.fsencode(tmp_path) + b"/caf\xe9.wav")
    assert code == 1 and [o["status"] for o in out] == ["ok", "error"]
    assert "caf\\xe9.wav" in out[1]["file"]


def test_extract_temporary_files_never_count_and_are_removed_on_resume(tiny_bundle, tmp_path):
    from emocli.runners import extract
    from emocli.files import atomic_path

    corpus = tmp_path / "afew" / "Val"
    for folder, freq in (("Happy", 300), ("Sad", 500)):
        (corpus / folder).mkdir(parents=True)
        make_clip(corpus / folder / f"{folder}.avi", seconds=0.6, freq=freq)
    out = tmp_path / "feats"
    args = ["extract", str(tmp_path / "afew"), "--out", str(out), "--model", str(tiny_bundle)]
    assert runner.invoke(app, args).exit_code == 0
    items = out / extract.ITEMS
    done = extract.item_files(out, ".npz")
    assert len(done) == 2
    # a run killed during fsync: one item's file never got its name, its temporary file stays
    with atomic_path(done[1], suffix=extract.TEMP_SUFFIX) as tmp:
        assert not tmp.match("*.npz") and tmp.name.startswith(".")
    (items / f".{done[1].name}.x1y2.part").write_bytes(b"half")
    (items / f".{done[1].name}.old9.npz").write_bytes(b"half")  # an earlier emo's temporary name
    done[1].unlink()
    assert len(extract.item_files(out, ".npz")) == 1
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert (summary["items"], summary["done"], summary["skipped"]) == (2, 1, 1)
    assert not any(p.name.startswith(".") for p in items.iterdir())


def test_window_with_audio_shorter_than_video_and_with_max_seconds(tiny_bundle, tmp_path):
    from conftest import EXAMPLES
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    short = tmp_path / "short_audio.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-f", "lavfi", "-i",
           "sine=frequency=300:sample_rate=16000:duration=0.8", "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "pcm_s16le", str(short))
    res = Pipeline(tiny_bundle, Options(window=0.5)).run(short)
    assert res.status == "ok", res.error
    assert res.segments[0]["voice_scores"] is not None and res.segments[-1]["voice_scores"] is None
    assert res.segments[-1]["notes"] == ["no audio: face alone"]
    res = Pipeline(tiny_bundle, Options(window=1.0, max_seconds=1.0)).run(EXAMPLES / "1001_DFA_HAP_XX.avi")
    assert res.status == "ok", res.error
    assert res.segments and res.segments[-1]["end"] <= 1.0 + 1e-3


@pytest.mark.parametrize("command", ["predict", "evaluate", "extract"])
def test_help_keeps_square_brackets_and_every_default(command):
    import re

    r = runner.invoke(app, [command, "--help"], terminal_width=300)
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    if command != "evaluate":
        assert "pip install 'emocli[ray]'" in text
    for option in ("--bundle", "--fps", "--batch-size", "--detector", "--views"):
        part = text.split(option, 1)[1]
        nxt = re.search(r" --?[a-z]", part[20:])
        assert "[default:" in part[: 20 + (nxt.start() if nxt else len(part))], (option, part[:300])


def test_symlink_loop_and_dangling_link_say_so(pipe, tmp_path):
    loop = tmp_path / "loop.avi"
    loop.symlink_to(loop)
    res = pipe.run(loop)
    assert res.status == "error" and "symlink loop" in res.error
    dangling = tmp_path / "gone.avi"
    dangling.symlink_to(tmp_path / "nowhere.avi")
    res = pipe.run(dangling)
    assert res.status == "error" and "symlink to a missing file" in res.error


def test_ffmpeg_internals_are_cut_from_messages():
    from emocli.media.ffmpeg import last_error_line

    text = ("[vost#0:0/rawvideo @ 0x55d1c0] Error while opening encoder - maybe incorrect parameters\n"
            "[af#0:0 @ 0x55a19fc5f500] Terminating thread with return code -22 (Invalid argument)\n")
    assert last_error_line(text) == "Error while opening encoder - maybe incorrect parameters"
    assert last_error_line(text.splitlines()[1]) == "Terminating thread with return code -22 (Invalid argument)"


def test_bad_layout_is_bad_usage(tmp_path):
    for cmd in (["evaluate", str(tmp_path)], ["extract", str(tmp_path), "--out", str(tmp_path / "o")]):
        r = runner.invoke(app, [*cmd, "--layout", "bogus"])
        assert r.exit_code == 2 and "unknown layout" in r.output


def test_workers_are_capped_at_the_cpu_count_and_default_by_input_count(monkeypatch):
    from emocli.runners import pool as bulk

    cpus = len(os.sched_getaffinity(0))
    assert bulk.worker_count(10_000, 3) == cpus and bulk.worker_count(1, 100) == 1
    monkeypatch.setattr(bulk, "available_cpus", lambda: 4)
    assert [bulk.worker_count(None, n) for n in (None, 1, 3, 4, 1000)] == [1, 1, 1, 4, 4]
    monkeypatch.setattr(bulk, "available_cpus", lambda: 1)
    assert bulk.worker_count(None, 1000) == 1


def test_digital_silence_is_no_speech(pipe, tmp_path):
    from conftest import EXAMPLES
    from emocli.voice.levels import SILENCE_DBFS, loudest_window_dbfs
    import numpy as np

    silent = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "7", str(silent))
    res = pipe.run(silent)
    assert res.status == "error" and "no speech detected" in res.error
    hushed = tmp_path / "hushed.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", "-shortest", str(hushed))
    res = pipe.run(hushed)
    assert res.status == "ok" and res.modalities == ["face"]
    assert any(n.startswith("no speech detected") for n in res.notes)
    # a quiet voice is still a voice; a hiss is not
    t = np.arange(16000) / 16000
    assert loudest_window_dbfs(0.01 * np.sin(2 * np.pi * 200 * t), 16000) > SILENCE_DBFS
    assert loudest_window_dbfs(1e-4 * np.random.default_rng(0).normal(size=16000), 16000) < SILENCE_DBFS


def test_fifo_nobody_writes_to_is_given_up(tiny_bundle, tmp_path, monkeypatch):
    import glob
    import tempfile
    import threading
    import time

    from emocli.media import ffmpeg as media, live

    monkeypatch.setattr(media, "STALL_TIMEOUT", 1.0)
    monkeypatch.setattr(live, "STALL_TIMEOUT", 1.0)
    fifo = tmp_path / "never.avi"
    os.mkfifo(fifo)
    wav = make_clip(tmp_path / "tone.wav", video=False, seconds=1.0)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-stdin-*")))
    t0 = time.monotonic()
    code, out, r = predict(tiny_bundle, fifo, wav)
    assert time.monotonic() - t0 < 60
    assert code == 1 and [o["status"] for o in out] == ["error", "ok"]
    assert "never.avi: nothing arrived for 1 s" in out[0]["error"]
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-stdin-*"))) == before
    # a FIFO that is written to is read as before
    fed = tmp_path / "fed.wav"
    os.mkfifo(fed)
    feeder = threading.Thread(target=lambda: fed.write_bytes(wav.read_bytes()))
    feeder.start()
    code, out, r = predict(tiny_bundle, fed)
    feeder.join(timeout=30)
    assert code == 0 and out[0]["file"] == str(fed) and out[0]["modalities"] == ["voice"], r.output


def test_media_bytes_on_a_stalled_stdin_pipe_are_given_up(tiny_bundle, monkeypatch):
    import time

    from emocli.media import ffmpeg as media, live
    from emocli.media.inputs import expand_inputs
    from emocli.pipeline.core import Pipeline

    monkeypatch.setattr(media, "STALL_TIMEOUT", 1.0)
    monkeypatch.setattr(live, "STALL_TIMEOUT", 1.0)
    r, w = os.pipe()
    os.write(w, b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(600))  # media bytes, then the writer stalls
    t0 = time.monotonic()
    with os.fdopen(r, "rb") as stdin:
        (display, src, problem), = list(expand_inputs(["-"], stdin=stdin))
        assert display == "<stdin>" and isinstance(src, live.LiveSource) and problem is None
        res = Pipeline(tiny_bundle).run_stream(src)
    os.close(w)
    assert time.monotonic() - t0 < 30
    assert res.status == "error" and res.error.startswith("<stdin>: nothing arrived for 1 s")
