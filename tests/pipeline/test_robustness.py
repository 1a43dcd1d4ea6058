"""Faults and untrusted files: timeouts, closed pipes, Ctrl-C, tampered and malicious bundles."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES
from emocli.media import ffmpeg as media
from emocli.bundle import verify_bundle, write_manifest
from emocli.errors import MediaError, ModelError
from emocli.labels import LABELS

EMO = [sys.executable, "-m", "emocli"]


def test_endless_stream_is_stopped_by_the_watchdog(tmp_path):
    fifo = tmp_path / "endless.avi"
    os.mkfifo(fifo)
    info = media.MediaInfo(fifo, None, True, False, 320, 240, 25.0)
    t = time.monotonic()
    with pytest.raises(MediaError, match="endless.avi.*no video for 1 s"):
        list(media.iter_frames(fifo, info=info, stall_timeout=1.0))
    assert time.monotonic() - t < 10


def test_huge_frames_are_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.mkv"
    p.write_bytes(b"x")
    info = media.MediaInfo(p, 1.0, True, False, 40000, 40000, 25.0)
    with pytest.raises(MediaError, match="huge.mkv.*larger than emo accepts.*downscale"):
        next(media.iter_frames(p, info=info))


# --- bulk-run process semantics ---------------------------------------------------------

def _clips(n):
    return [str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")][:n]


def test_closed_stdout_ends_quietly(tiny_bundle):
    proc = subprocess.Popen([*EMO, "predict", *_clips(6) * 3, "--model", str(tiny_bundle), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert json.loads(first)["status"] == "ok"
    assert rc == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_ctrl_c_exits_130_after_flushing_finished_results(tiny_bundle):
    proc = subprocess.Popen([*EMO, "predict", *_clips(6) * 5, "--model", str(tiny_bundle), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert json.loads(first)["status"] == "ok"
    for line in rest.decode().splitlines():  # whatever else came out is whole lines
        json.loads(line)
    assert "Traceback" not in err.decode()


def test_sigterm_writes_the_finished_results_to_the_output_file_and_exits_143(tiny_bundle, tmp_path):
    # `timeout`, `kill`, `docker stop` and batch schedulers stop a run with SIGTERM: what is done must
    # land in -o FILE (renamed into place), not stay in its hidden temporary file
    out = tmp_path / "results.jsonl"
    proc = subprocess.Popen([*EMO, "predict", *_clips(6) * 5, "--model", str(tiny_bundle), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".results.jsonl.*")):  # a first result line
        assert proc.poll() is None and time.monotonic() < deadline, "no result was written before the signal"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    assert "terminated" in err.decode() and "Traceback" not in err.decode()
    lines = out.read_text().splitlines()
    assert 1 <= len(lines) < 30
    assert all(json.loads(line)["status"] == "ok" for line in lines)
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


# --- untrusted bundles -----------------------------------------------------------------

@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_tampered_file_is_refused(bundle_copy):
    with open(bundle_copy / "fusion.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(ModelError, match="fusion.json.*does not match the manifest"):
        verify_bundle(bundle_copy)


def test_unlisted_file_is_refused(bundle_copy):
    (bundle_copy / "fusion_feat.skops").write_bytes(b"x")
    with pytest.raises(ModelError, match="not listed in the manifest"):
        verify_bundle(bundle_copy)


def test_cli_refuses_tampered_bundle_with_one_line(bundle_copy):
    from typer.testing import CliRunner

    from emocli.cli.app import app

    (bundle_copy / "face.json").write_text("{}")
    r = CliRunner().invoke(app, ["predict", str(EXAMPLES / "1001_DFA_SAD_XX.avi"), "--model", str(bundle_copy)])
    assert r.exit_code == 1 and "face.json" in r.output and "Traceback" not in r.output


def test_bundle_from_other_library_versions_loads_with_a_warning_naming_both(bundle_copy):
    import warnings

    from emocli.bundle import library_versions
    from emocli.errors import VersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the versions installed here: no warning
        verify_bundle(bundle_copy)
    here = library_versions()
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    tf = "tensorflow" if "tensorflow" in here else "tensorflow-cpu"
    # a bundle written on a GPU machine names tensorflow, here tensorflow-cpu may be installed: the same library
    manifest["versions"] = {**{k: v for k, v in here.items() if not k.startswith("tensorflow")},
                            "numpy": "1.0.0", "tensorflow": here.get(tf, "?")}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(VersionWarning, match=rf"written with numpy 1\.0\.0; installed here: numpy {here['numpy']}\."):
        verify_bundle(bundle_copy)
    # the command line says it in one yellow line and goes on
    r = subprocess.run([*EMO, "fuse", str(bundle_copy), "--method", "equal"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "numpy 1.0.0" in ln]
    assert line.startswith("warning: ") and f"installed here: numpy {here['numpy']}" in line


class Evil:
    """If this were unpickled, it would run code; skops must refuse to even build it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).write_text("pwned")
        self.__dict__.update(state)


def test_crafted_skops_file_does_not_run_code(bundle_copy, tmp_path):
    import skops.io as sio

    from emocli.voice.model import VoiceModel
    from emocli.fusion import load_skops

    marker = tmp_path / "marker"
    evil = bundle_copy / "voice.skops"
    (bundle_copy / "voice.npz").unlink(missing_ok=True)  # a bundle of before 2026-12: the .skops is read
    sio.dump({"model": Evil(marker)}, str(evil))
    write_manifest(bundle_copy, labels=list(LABELS))  # the attacker also rewrites the manifest
    with pytest.raises(ModelError, match="voice.skops"):
        VoiceModel.load(bundle_copy)
    with pytest.raises(ModelError, match="allow-list"):
        load_skops(evil)
    assert not marker.exists()


def test_crafted_keras_lambda_does_not_run_code(bundle_copy, tmp_path):
    import keras

    from emocli.face.model import FaceModel

    marker = tmp_path / "marker"
    inp = keras.Input((48, 48, 1))
    m = str(marker)  # a plain string in the closure, so Keras can serialise the lambda
    x = keras.layers.Lambda(lambda t: (open(m, "w").write("pwned"), t)[1])(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, name="fc2")(x)
    out = keras.layers.Dense(7, activation="softmax", name="scores")(x)
    marker.unlink(missing_ok=True)  # building the model above called the lambda once
    keras.Model(inp, out).save(bundle_copy / "face.keras")
    marker.unlink(missing_ok=True)
    write_manifest(bundle_copy, labels=list(LABELS))
    with pytest.raises(ModelError, match="face.keras"):
        FaceModel.load(bundle_copy)
    assert not marker.exists()


# --- SIGKILL during a bulk extract -------------------------------------------------------

@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("afew")
    for i, e in enumerate(("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")):
        folder = {"ANG": "Angry", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad"}[e]
        split = "Train" if i % 2 else "Val"
        (root / split / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"1001_DFA_{e}_XX.avi", root / split / folder / f"{e.lower()}.avi")
    return root


def _extract(corpus, out, bundle, *extra):
    return subprocess.run([*EMO, "extract", str(corpus), "--out", str(out), "--model", str(bundle), *extra],
                          capture_output=True, text=True, timeout=300)


def _finished(out):
    """Finished items on disk (not atomic_path's hidden temporary files, which end in .npz too)."""
    items = out / "items"
    return sum(not p.name.startswith(".") for p in items.glob("*.npz")) if items.exists() else 0


def _contents(out):
    from emocli.runners.extract import load_extracted

    return {d["id"]: d for d in load_extracted(out)}


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_results(small_corpus, tiny_bundle, tmp_path):
    from emocli.corpus.layouts import load_corpus
    from emocli.runners.extract import check_out_dir, run_extraction, settings_for
    from emocli.pipeline.options import Options

    # the uninterrupted run, in this process (what `emo extract` does, without another interpreter's start-up)
    ref = tmp_path / "ref"
    opts = Options(keep_frames=True)
    check_out_dir(ref, settings_for(small_corpus, None, None, tiny_bundle, verify_bundle(tiny_bundle), opts),
                  resume=False)
    assert run_extraction(load_corpus(small_corpus), root=small_corpus, out=ref, bundle=tiny_bundle,
                          options=opts)["done"] == 6
    want = _contents(ref)
    assert len(want) == 6
    # killed during start-up, after the first finished item, and half-way: by progress on disk, not by
    # fixed delays (which on a slow or busy machine all land in start-up)
    for done in (0, 1, 3):
        out = tmp_path / f"killed_after_{done}"
        proc = subprocess.Popen([*EMO, "extract", str(small_corpus), "--out", str(out), "--model", str(tiny_bundle)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        deadline = time.monotonic() + 120
        while done and proc.poll() is None and time.monotonic() < deadline and _finished(out) < done:
            time.sleep(0.02)
        assert proc.poll() is None, "extract finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # whatever is on disk is either whole or absent: every .npz present loads
        for p in (out / "items").glob("*.npz") if (out / "items").exists() else []:
            np.load(p, allow_pickle=False).files
        r = _extract(small_corpus, out, tiny_bundle, "--resume")
        assert r.returncode == 0, r.stderr
        got = _contents(out)
        assert got.keys() == want.keys()
        for k in want:
            for name in ("face_scores", "voice_scores", "face_features", "voice_stats68", "frame_times"):
                assert np.array_equal(got[k][name], want[k][name]), (k, name)
        assert (out / "index.csv").read_text() == (ref / "index.csv").read_text().replace(str(ref), str(out))


def test_a_torn_temporary_file_left_by_a_kill_is_not_an_item(tmp_path):
    from emocli.runners.extract import ITEMS, SETTINGS, load_extracted, write_index

    (tmp_path / SETTINGS).write_text("{}")
    (tmp_path / ITEMS).mkdir()
    (tmp_path / ITEMS / ".clip-0123456789.npz.k3x9q1.npz").write_bytes(b"PK\x03\x04 torn")  # killed mid-write
    assert load_extracted(tmp_path) == []
    write_index(tmp_path)


def test_two_extracts_into_one_folder_take_a_lock(small_corpus, tiny_bundle, tmp_path):
    from emocli.runners.extract import lock_out_dir

    out = tmp_path / "feats"
    held = lock_out_dir(out)  # another run is writing here
    try:
        r = _extract(small_corpus, out, tiny_bundle, "--resume", "--split", "Train")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "another emo extract" in " ".join(r.stderr.split()) and str(os.getpid()) in r.stderr
        assert not (out / "items").exists()  # it touched nothing
    finally:
        held.close()
    r = _extract(small_corpus, out, tiny_bundle, "--split", "Train")  # the lock is free again
    assert r.returncode == 0, r.stderr
    assert _finished(out) == 3
