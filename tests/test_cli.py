"""The command line as users and scripts see it: output formats, exit codes, stdin."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, make_clip
from emocli.cli import app
from emocli.labels import LABELS

runner = CliRunner()
REQUIRED = {"file", "status", "label", "scores", "face_scores", "voice_scores", "frames_used"}


def lines(output: str) -> list[dict]:
    return [json.loads(ln) for ln in output.splitlines() if ln.strip()]


HEAVY = ("tensorflow", "keras", "sklearn", "cv2", "mediapipe", "ai_edge_litert", "h5py", "matplotlib")


def test_help_lists_commands_without_heavy_imports():
    """`emo --help` stays instant because it imports no ML library: checked in the process that printed the help."""
    code = ("import runpy, sys\n"
            "for argv in (['--help'], ['predict', '--help'], ['train-video', '--help']):\n"
            "    sys.argv = ['emo', *argv]\n"
            "    try:\n        runpy.run_module('emocli', run_name='__main__')\n"
            "    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
            "    print('END OF HELP', flush=True)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    top, predict, train, heavy = out.split("END OF HELP\n")
    assert heavy.strip() == "[]"
    for cmd in ("predict", "train-video"):
        assert cmd in top
    assert "Usage: emo predict" in predict and "--model" in predict
    assert "Usage: emo train-video" in train and "--weights" in train


def test_predict_json_lines(face_only_bundle, monkeypatch):
    from emocli.quiet_imports import gpu_available

    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", str(face_only_bundle), "--json"])
    assert r.exit_code == 0, r.output
    (obj,) = lines(r.stdout)
    assert REQUIRED <= set(obj)
    assert obj["status"] == "ok" and obj["label"] in LABELS
    assert obj["gpu"] is gpu_available()  # True on a machine whose TensorFlow sees a GPU
    monkeypatch.setenv("EMO_NO_GPU", "1")
    assert gpu_available() is False  # the switch that keeps such a machine on the CPU
    assert list(obj["scores"]) == list(LABELS) and sum(obj["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_table(face_only_bundle):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", str(face_only_bundle), "--table"])
    assert r.exit_code == 0, r.output
    for word in ("emotion", "face", "voice", "fused", *LABELS):
        assert word in r.stdout


def test_bulk_run_goes_on_past_failures_and_exits_1(face_only_bundle, tmp_path):
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video")
    args = ["predict", str(tmp_path / "missing.avi"), str(bad), str(EXAMPLES / "1001_DFA_SAD_XX.avi"),
            "--model", str(face_only_bundle), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    out = lines(r.stdout)
    assert [o["status"] for o in out] == ["error", "error", "ok"]
    assert "missing.avi" in out[0]["error"] and "not found" in out[0]["error"]
    assert "notes.avi" in out[1]["error"]
    assert out[0]["scores"] is None


def test_fail_fast_stops_at_first_failure(face_only_bundle, tmp_path):
    r = runner.invoke(app, ["predict", str(tmp_path / "nope.avi"), str(EXAMPLES / "1001_DFA_SAD_XX.avi"),
                            "--model", str(face_only_bundle), "--json", "--fail-fast"])
    assert r.exit_code == 1 and len(lines(r.stdout)) == 1


def test_paths_on_stdin(face_only_bundle):
    listing = "\n".join(str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "NEU")) + "\n"
    r = runner.invoke(app, ["predict", "-", "--model", str(face_only_bundle), "--json"], input=listing)
    assert r.exit_code == 0, r.output
    assert [o["file"].rsplit("/", 1)[-1] for o in lines(r.stdout)] == ["1001_DFA_ANG_XX.avi", "1001_DFA_NEU_XX.avi"]


def test_media_bytes_on_stdin(face_only_bundle):
    data = (EXAMPLES / "1001_DFA_FEA_XX.avi").read_bytes()
    r = runner.invoke(app, ["predict", "-", "--model", str(face_only_bundle), "--json"], input=data)
    assert r.exit_code == 0, r.output
    (obj,) = lines(r.stdout)
    assert obj["file"] == "<stdin>" and obj["status"] == "ok" and obj["frames_used"] > 5


def test_folder_input(face_only_bundle, tmp_path):
    make_clip(tmp_path / "a.avi", seconds=0.5)
    (tmp_path / "readme.txt").write_text("ignored")
    r = runner.invoke(app, ["predict", str(tmp_path), "--model", str(face_only_bundle), "--json"])
    out = lines(r.stdout)
    assert len(out) == 1 and out[0]["file"].endswith("a.avi")


def test_bad_usage_exits_2():
    r = runner.invoke(app, ["predict", "x.avi", "--fps", "-3"])
    assert r.exit_code == 2


def test_missing_bundle_is_one_line_error(tmp_path):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_SAD_XX.avi"), "--model", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert "nope" in r.output and "Traceback" not in r.output


def test_workers_give_the_same_results_in_order(tiny_bundle, tmp_path):
    clips = [str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "DIS", "FEA", "HAP")]
    args = ["predict", *clips, str(tmp_path / "missing.avi"), "--model", str(tiny_bundle), "--json"]
    one = lines(runner.invoke(app, args).stdout)
    two = lines(runner.invoke(app, [*args, "--workers", "2"]).stdout)
    assert [o["file"] for o in two] == [o["file"] for o in one] == [*clips, str(tmp_path / "missing.avi")]
    for a, b in zip(one, two):
        assert a["status"] == b["status"] and a["label"] == b["label"] and a["frames_used"] == b["frames_used"]
        if a["scores"]:
            assert all(abs(a["scores"][k] - b["scores"][k]) < 1e-4 for k in LABELS)


def test_window_emits_segments_then_the_clip(tiny_bundle, tmp_path):
    long_clip = tmp_path / "long.avi"
    from conftest import ffmpeg

    src = str(EXAMPLES / "1001_DFA_HAP_XX.avi")
    ffmpeg("-i", src, "-i", src, "-i", src, "-filter_complex", "[0:v][0:a][1:v][1:a][2:v][2:a]concat=n=3:v=1:a=1",
           "-c:v", "mpeg4", "-c:a", "pcm_s16le", str(long_clip))
    r = runner.invoke(app, ["predict", str(long_clip), "--model", str(tiny_bundle), "--json", "--window", "2"])
    assert r.exit_code == 0, r.output
    out = lines(r.stdout)
    segs, clip = [o["segment"] for o in out[:-1]], out[-1]
    assert clip["status"] == "ok" and len(segs) == 3
    assert [s["start"] for s in segs] == [0.0, 2.0, 4.0]
    for s in segs:
        assert s["end"] > s["start"] and s["label"] in LABELS
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert s["face_scores"] is not None and s["voice_scores"] is not None
    assert sum(s["frames_used"] for s in segs) == clip["frames_used"]


def test_emotiw_submission_layout(tiny_bundle, tmp_path):
    clips = [str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "SAD")]
    sub = tmp_path / "submission"
    r = runner.invoke(app, ["predict", *clips, str(tmp_path / "gone.avi"), "--model", str(tiny_bundle),
                            "--json", "--submission", str(sub)])
    assert r.exit_code == 1  # the missing clip
    out = {o["file"]: o for o in lines(r.stdout)}
    files = sorted(p.name for p in sub.iterdir())
    assert files == ["1001_DFA_ANG_XX.txt", "1001_DFA_SAD_XX.txt"]
    for c in clips:
        text = (sub / (c.rsplit("/", 1)[-1][:-4] + ".txt")).read_text().strip()
        assert text.lower().startswith(out[c]["label"][:3])
        assert text in ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


def test_submission_never_overwrites_a_clip_of_the_same_name(tiny_bundle, tmp_path):
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        shutil.copy(EXAMPLES / "1001_DFA_ANG_XX.avi", tmp_path / d / "clip.avi")
    sub = tmp_path / "submission"
    r = runner.invoke(app, ["predict", str(tmp_path / "a" / "clip.avi"), str(tmp_path / "b" / "clip.avi"),
                            "--model", str(tiny_bundle), "--json", "--submission", str(sub)])
    assert r.exit_code == 1
    assert [o["status"] for o in lines(r.stdout)] == ["ok", "ok"]  # both results are still printed
    assert sorted(p.name for p in sub.iterdir()) == ["clip.txt"]
    err = " ".join(r.stderr.split())
    assert "clip.txt was already written for" in err and str(tmp_path / "a" / "clip.avi") in err


def test_every_shipped_model_file_is_package_data():
    """A non-editable install copies only files that match pyproject's package-data globs."""
    import fnmatch
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from pathlib import Path

    root = Path(__file__).parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["emocli.models"]
    shipped = [p.relative_to(root / "models").as_posix() for p in (root / "models").rglob("*")
               if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]
    missing = [f for f in shipped if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert shipped and not missing, f"not packaged: {missing}"


def test_every_command_help_shows_examples():
    from typer.testing import CliRunner

    for cmd in ("predict", "evaluate", "extract", "train-video", "train-audio", "fuse"):
        out = CliRunner().invoke(app, [cmd, "--help"], terminal_width=200).output
        assert "Examples:" in out and f"emo {cmd} " in out, cmd
