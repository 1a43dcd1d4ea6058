"""Outputs never destroy anything, and every number a user can give is checked.

Each test is a class of cases: an output that is an input, a device, two outputs on one file,
an output path that cannot be written, numbers out of range, conflicting output flags, damaged
samples in the input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO, make_clip, write_wav
from emocli.cli.app import app

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input, terminal_width=400)


def one_line_error(r, *needles):
    err = r.stderr.strip()
    assert r.exit_code == 1, (r.exit_code, r.output)
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in r.output
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def wav(tmp_path):
    return make_clip(tmp_path / "clip.wav", seconds=1.0, video=False)


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dotted"])
def test_predict_output_that_is_an_input_is_refused_and_the_input_kept(tiny_bundle, wav, tmp_path, how):
    before = wav.read_bytes()
    target = {"same": wav, "dotted": tmp_path / "." / "clip.wav", "symlink": tmp_path / "link.wav",
              "hardlink": tmp_path / "hard.wav"}[how]
    if how == "symlink":
        target.symlink_to(wav)
    if how == "hardlink":
        os.link(wav, target)
    for opt in ("-o", "--plot"):
        extra = ["--window", "1"] if opt == "--plot" else []
        r = invoke("predict", wav, "--model", tiny_bundle, "--json", opt, target, *extra)
        one_line_error(r, "is the input", "choose another file")
        assert r.stdout == ""  # refused before any work
    assert wav.read_bytes() == before


def test_predict_output_that_is_a_media_file_of_an_input_folder_is_refused(tiny_bundle, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = make_clip(folder / "a.wav", seconds=1.0, video=False)
    before = clip.read_bytes()
    r = invoke("predict", folder, "--model", tiny_bundle, "-o", clip, "--format", "json")
    one_line_error(r, "is an input", str(folder))
    assert clip.read_bytes() == before
    ok = invoke("predict", folder, "--model", tiny_bundle, "-o", folder / "results.jsonl")
    assert ok.exit_code == 0 and (folder / "results.jsonl").is_file()


def test_evaluate_predictions_naming_the_manifest_is_refused(tiny_bundle, tmp_path):
    wav = make_clip(tmp_path / "a.wav", seconds=1.0, video=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{wav},happy\n")
    before = manifest.read_bytes()
    for opt in ("--predictions", "--report", "--plot"):
        r = invoke("evaluate", manifest, "--model", tiny_bundle, opt, manifest)
        one_line_error(r, "is the input", "choose another file")
    r = invoke("evaluate", manifest, "--model", tiny_bundle, "--predictions", wav)  # an item of the corpus
    one_line_error(r, "is the input")
    assert manifest.read_bytes() == before and wav.stat().st_size > 1000


def test_devices_are_written_directly_never_replaced(tiny_bundle, wav):
    """-o /dev/null keeps the device; -o /dev/full (no space left) is one line naming it, exit 1."""
    r = invoke("predict", wav, "--model", tiny_bundle, "-o", "/dev/null", "--format", "json")
    assert r.exit_code == 0, r.output
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    r = invoke("predict", wav, "--model", tiny_bundle, "-o", "/dev/full", "--format", "json")
    one_line_error(r, "/dev/full", "free some disk space")
    assert not os.path.isfile("/dev/full")
    r = invoke("predict", wav, "--model", tiny_bundle, "--json", "--window", "1", "--plot", "/dev/full")
    one_line_error(r, "/dev/full")
    assert json.loads(r.stdout.splitlines()[-1])["status"] == "ok"  # the result still reached stdout


def test_evaluate_outputs_on_a_full_device_keep_the_report(tiny_bundle, tmp_path):
    wav = make_clip(tmp_path / "a.wav", seconds=1.0, video=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{wav},happy\n")
    for opt in ("--plot", "--report", "--predictions"):
        r = invoke("evaluate", manifest, "--model", tiny_bundle, "--json", opt, "/dev/full")
        one_line_error(r, "/dev/full")
        assert json.loads(r.stdout)["n_items"] == 1
        assert not os.path.isfile("/dev/full")
    r = invoke("evaluate", manifest, "--model", tiny_bundle, "--json", "--plot", "/dev/null")
    assert r.exit_code == 0 and not os.path.isfile("/dev/null")


@pytest.mark.parametrize("cmd, a, b", [
    ("predict", "-o", "--plot"), ("predict", "-o", "--annotate"), ("evaluate", "--report", "--predictions"),
    ("evaluate", "--plot", "--report")])
def test_two_outputs_on_one_file_are_refused_before_any_work(tiny_bundle, tmp_path, cmd, a, b):
    clip = make_clip(tmp_path / "clip.avi", seconds=1.0)
    src = clip
    if cmd == "evaluate":
        src = tmp_path / "m.csv"
        src.write_text(f"path,label\n{clip},happy\n")
    same = tmp_path / "same.out"
    extra = ["--window", "1"] if "--plot" in (a, b) and cmd == "predict" else []
    r = invoke(cmd, src, "--model", tiny_bundle, a, same, b, same, *extra)
    one_line_error(r, "named by both", a, b)
    assert not same.exists() and r.stdout == ""


@pytest.mark.parametrize("case, says", [
    ("folder", "is a folder"), ("through-file", "is a file, not a folder"), ("long-name", "longer than"),
])
def test_unwritable_output_paths_are_one_line_before_any_work(tiny_bundle, wav, tmp_path, case, says):
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    target = {"folder": tmp_path / "folder", "through-file": tmp_path / "afile" / "out.jsonl",
              "long-name": tmp_path / ("n" * 300 + ".jsonl")}[case]
    for opt in ("-o", "--plot", "--submission"):
        if opt == "--submission" and case == "folder":
            continue  # a folder is what --submission wants
        extra = ["--window", "1"] if opt == "--plot" else []
        r = invoke("predict", wav, "--model", tiny_bundle, "--json", opt, target, *extra)
        one_line_error(r, says)
        assert r.stdout == ""


def test_a_long_name_that_fits_gets_a_temporary_name_that_fits_too(tiny_bundle, wav, tmp_path):
    target = tmp_path / ("n" * 240 + ".jsonl")  # 246 bytes: fine, but ".NAME.XXXXXXXX.tmp" would not be
    r = invoke("predict", wav, "--model", tiny_bundle, "-o", target)
    assert r.exit_code == 0, r.output
    assert json.loads(target.read_text().splitlines()[-1])["status"] == "ok"


@pytest.mark.parametrize("cmd", ["extract", "train-audio", "train-video"])
def test_out_folder_naming_a_file_is_one_line(tiny_bundle, tmp_path, cmd):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    r = invoke(cmd, tmp_path, "--out", afile)
    one_line_error(r, str(afile), "is a file, not a folder")
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("cmd", [["train-audio", "--out"], ["calibrate-experts", "--cache"],
                                 ["train-head", "--cache"]])
def test_folder_options_naming_a_file_or_a_device_are_one_line(tiny_bundle, tmp_path, cmd):
    """A cache or bundle folder that is an input file or /dev/null: refused before any work (it was a
    FileExistsError traceback for --cache), the file untouched, the device still a device."""
    afile = tmp_path / "afile.wav"
    afile.write_bytes(b"RIFF keep me")
    name, option = cmd
    for target, why in ((afile, "is a file, not a folder"), (Path("/dev/null"), "is a device, not a folder")):
        r = invoke(name, tmp_path, option, target)
        one_line_error(r, str(target), why)
    assert afile.read_bytes() == b"RIFF keep me" and not os.path.isfile("/dev/null")


@pytest.mark.parametrize("args", [
    ["--window", "inf"], ["--window", "1e308"], ["--window", "nan"], ["--fps", "inf"], ["--fps", "1e9"],
    ["--max-seconds", "inf"], ["--max-seconds", "1e308"], ["--window", "-1"]])
def test_numbers_out_of_range_are_bad_usage_with_the_range(tiny_bundle, wav, args):
    r = invoke("predict", wav, "--model", tiny_bundle, *args)
    assert r.exit_code == 2 and "finite number" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args", [["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--limit", "-5"],
                                  ["--rotation", "nan"]])
def test_training_numbers_out_of_range_are_bad_usage(tmp_path, args):
    r = invoke("train-video", tmp_path, "--out", tmp_path / "b", *args)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_options_refuse_non_finite_numbers():
    from emocli.errors import ParameterError
    from emocli.pipeline.options import Options

    for kw in ({"fps": float("inf")}, {"window": 1e308}, {"max_seconds": float("nan")}, {"batch_size": 0}):
        with pytest.raises(ParameterError, match="finite number"):
            Options(**kw)
    Options(fps=None, window=2.0, max_seconds=10.0)


def test_a_network_with_non_finite_weights_is_not_saved(tmp_path):
    from emocli.errors import ModelError
    from emocli.face.model import FaceModel

    model = FaceModel.load(REPO / "models" / "default")
    w = model.network_.weights[0]
    w.assign(np.full(w.shape, np.nan, np.float32))
    with pytest.raises(ModelError, match="non-finite weights"):
        model.save(tmp_path / "diverged")
    assert not any((tmp_path / "diverged" / name).exists() for name in ("face.keras", "face.tflite"))


def test_conflicting_output_flags_are_refused(tiny_bundle, wav):
    for args in (["--format", "csv", "--json"], ["--format", "json", "--table"], ["--format", "table", "--json"]):
        r = invoke("predict", wav, "--model", tiny_bundle, *args)
        assert r.exit_code == 2 and "contradicts" in r.output
    assert invoke("predict", wav, "--model", tiny_bundle, "--format", "json", "--json").exit_code == 0


def test_evaluate_face_only_reports_no_voice_block(face_only_bundle, tmp_path):
    import cv2

    from conftest import EXAMPLES as EX
    from emocli.media import ffmpeg as media

    _, frames = next(media.iter_frames(EX / "1001_DFA_HAP_XX.avi", fps=5))
    (tmp_path / "happy").mkdir()
    cv2.imwrite(str(tmp_path / "happy" / "a.png"), frames[0][:, :, ::-1])
    r = invoke("evaluate", tmp_path, "--model", face_only_bundle, "--modality", "face", "--json")
    rep = json.loads(r.stdout)
    assert "voice" not in rep and rep["modalities"] == ["face", "fused"] and rep["face"]["n"] == 1
    table = invoke("evaluate", tmp_path, "--model", face_only_bundle, "--modality", "face", "--table")
    assert "voice" not in table.stdout


def test_non_finite_samples_are_named_and_the_finite_part_scored(tmp_path):
    """A float WAV with NaN and infinite samples: no numpy warning, a note naming the problem, the voice scored."""
    from emocli.media.ffmpeg import ffmpeg_exe, load_audio

    x = load_audio(EXAMPLES / "1001_DFA_HAP_XX.avi", sr=16000)
    x[::7] = np.nan
    x[5::11] = np.inf
    raw = tmp_path / "x.raw"
    x.astype("<f4").tofile(raw)
    wav = tmp_path / "nan.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", "16000", "-ac", "1", "-i", str(raw),
                    "-c:a", "pcm_f32le", str(wav)], check=True)
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "emocli", "predict", str(wav), "--json"],
                         capture_output=True, text=True, cwd=REPO)
    res = json.loads(out.stdout.splitlines()[-1])
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr
    assert res["voice_scores"] is not None
    assert any("NaN or infinite" in n for n in res["notes"])
    bad = write_wav(tmp_path / "mostly_bad.wav", np.zeros(16000))
    x[:] = np.nan
    x.astype("<f4").tofile(raw)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", "16000", "-ac", "1", "-i", str(raw),
                    "-c:a", "pcm_f32le", str(bad)], check=True)
    out = subprocess.run([sys.executable, "-m", "emocli", "predict", str(bad), "--json"], capture_output=True,
                         text=True, cwd=REPO)
    res = json.loads(out.stdout.splitlines()[-1])
    assert out.returncode == 1 and "NaN or infinite" in res["error"]
    shutil.rmtree(tmp_path, ignore_errors=True)
