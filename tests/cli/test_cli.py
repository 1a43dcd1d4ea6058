"""The command line as users and scripts see it: output formats, exit codes, stdin."""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO, make_clip
from emocli.cli.app import app
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
    # 6 s of audio and 31 frames at 5 fps: three windows, then the last frame's 0.2 s, as a stream of the
    # same file closes them
    assert clip["status"] == "ok" and len(segs) == 4
    assert [s["start"] for s in segs] == [0.0, 2.0, 4.0, 6.0] and segs[-1]["end"] == pytest.approx(6.2)
    for s in segs:
        assert s["end"] > s["start"] and s["label"] in LABELS
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert s["face_scores"] is not None and (s["voice_scores"] is not None) == (s is not segs[-1])
    assert segs[-1]["notes"] == ["no audio: face alone"]
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

    root = REPO
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


def emo_on_terminal(*args, stdout_too: bool = False) -> tuple[str, str, int]:
    """Run `emo ARGS` with stderr (and with ``stdout_too`` stdout) on a pseudo-terminal: (stdout, what the
    terminal showed, exit code)."""
    import pty
    import threading

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "emocli", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_too else subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    shown: list[bytes] = []

    def read_terminal() -> None:  # drained as it comes: a full pty buffer would block emo
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the last writer closed it
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    out = "" if stdout_too else proc.stdout.read().decode()
    rc = proc.wait(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return out, b"".join(shown).decode("utf-8", "replace"), rc


def test_one_clip_shows_seconds_done_on_a_terminal_stderr(face_only_bundle):
    out, term, rc = emo_on_terminal("predict", EXAMPLES / "1001_DFA_HAP_XX.avi", "--model", face_only_bundle,
                                    "--json")
    assert rc == 0 and lines(out)[0]["status"] == "ok"  # stdout: the result alone
    assert "faces" in term and " s of 2.0 s" in term


def test_progress_shows_when_stdout_is_the_terminal_too(face_only_bundle):
    """The bar belongs on stderr whenever stderr is a terminal: with the table on the same terminal it steps
    aside while each result is written."""
    clips = [EXAMPLES / f"1001_DFA_{e}_XX.avi" for e in ("ANG", "SAD")]
    _, term, rc = emo_on_terminal("predict", *clips, "--model", face_only_bundle, stdout_too=True)
    assert rc == 0
    assert re.search(r"\d s of 2\.\d s", term) and "1/2" in term  # a clip's seconds and the inputs done
    assert "fused" in term and "2 inputs" in term  # the tables and the summary


def test_no_progress_when_stderr_is_not_a_terminal(face_only_bundle):
    r = subprocess.run([sys.executable, "-m", "emocli", "predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"),
                        "--model", str(face_only_bundle), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and lines(r.stdout)[0]["status"] == "ok"
    assert r.stderr == ""


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """A 1-s clip of two example clips side by side (happy on the left, sad on the right; the left one's audio)
    and its first frame as a PNG."""
    from conftest import ffmpeg

    d = tmp_path_factory.mktemp("two_faces")
    clip, still = d / "two.avi", d / "two.png"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-i", str(EXAMPLES / "1001_DFA_SAD_XX.avi"),
           "-filter_complex", "[0:v][1:v]hstack=inputs=2,trim=duration=1[v]", "-map", "[v]", "-map", "0:a",
           "-t", "1", "-c:v", "mpeg4", "-q:v", "3", "-c:a", "pcm_s16le", str(clip))
    ffmpeg("-i", str(clip), "-frames:v", "1", str(still))
    return clip, still


@pytest.mark.parametrize("which", ["clip", "still"])
def test_faces_all_scores_each_face_as_a_track(face_only_bundle, two_faces, which):
    path = two_faces[0] if which == "clip" else two_faces[1]
    args = ["predict", str(path), "--model", str(face_only_bundle), "--json"]
    main = lines(runner.invoke(app, args).stdout)[-1]
    assert "faces" not in main and main["frames_used"] == (1 if which == "still" else main["frames_seen"])
    assert "1 other face(s) seen and ignored; --faces all scores them" in main["notes"]

    r = runner.invoke(app, [*args, "--faces", "all", "--frames"])
    assert r.exit_code == 0, r.output
    *frames, res = lines(r.stdout)
    tracks = res["faces"]
    assert [t["track"] for t in tracks] == [0, 1] and sum(t["main"] for t in tracks) == 1
    half = 480  # the frame is two 480x360 clips side by side
    left, right = sorted(tracks, key=lambda t: t["box"][0])
    assert left["box"][0] + left["box"][2] < half < right["box"][0]
    for t in tracks:
        assert t["frames_used"] == main["frames_used"] and t["label"] in LABELS
        assert sum(t["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert t["first"] == 0.0 and t["last"] == (0.0 if which == "still" else pytest.approx(0.8, abs=0.21))
    # the fused result stays the main face's, the same as without --faces all
    assert res["scores"] == main["scores"] and res["frames_used"] == main["frames_used"]
    assert next(t for t in tracks if t["main"])["scores"] == res["face_scores"]
    assert not any("other face" in n for n in res["notes"])
    assert {f["frame"]["track"] for f in frames} == {0, 1}
    assert sum(f["frame"]["main"] for f in frames) == main["frames_used"]


def test_faces_all_table_has_a_column_per_track(face_only_bundle, two_faces):
    r = runner.invoke(app, ["predict", str(two_faces[1]), "--model", str(face_only_bundle), "--faces", "all",
                            "--table"], terminal_width=160)
    assert r.exit_code == 0, r.output
    assert "2 face track(s)" in r.stdout and "face 0 (main)" in r.stdout and "face 1" in r.stdout


def test_faces_all_in_worker_processes(face_only_bundle, two_faces):
    args = ["predict", *map(str, two_faces), "--model", str(face_only_bundle), "--json", "--faces", "all"]
    one, two = (lines(runner.invoke(app, [*args, "--workers", n]).stdout) for n in ("1", "2"))
    assert [[(t["track"], t["main"], t["frames_used"], t["box"]) for t in o["faces"]] for o in two] == \
        [[(t["track"], t["main"], t["frames_used"], t["box"]) for t in o["faces"]] for o in one]


def _edge_change(src, out, box) -> tuple[float, float]:
    """Mean absolute change (grey levels) along a face box's top edge, and inside the box away from its edges
    and its label."""
    import numpy as np

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    a, b = src.astype(np.int16), out.astype(np.int16)
    edge = np.abs(a[y0 - 1:y0 + 2, x0:x1] - b[y0 - 1:y0 + 2, x0:x1]).mean()
    inner = np.abs(a[(y0 + y1) // 2:y1 - 6, x0 + 6:x1 - 6] - b[(y0 + y1) // 2:y1 - 6, x0 + 6:x1 - 6]).mean()
    return float(edge), float(inner)


def _frames(path):
    import numpy as np

    from emocli.media import ffmpeg as media

    info = media.probe(path)
    frames = np.concatenate([f for _, f in media.iter_frames(path, fps=None, info=info,
                                                             max_side=max(info.width, info.height))])
    return info, frames


@pytest.mark.parametrize("clip", sorted(EXAMPLES.glob("*.avi")), ids=lambda p: p.stem)
def test_annotate_redraws_the_clip_with_its_boxes_and_sound(face_only_bundle, tmp_path, clip):
    from emocli.face import detect as faces

    out = tmp_path / "annotated.mp4"
    r = runner.invoke(app, ["predict", str(clip), "--model", str(face_only_bundle), "--json", "--annotate", str(out)])
    assert r.exit_code == 0, r.output
    assert len(lines(r.stdout)) == 1 and lines(r.stdout)[0]["status"] == "ok"  # no frame lines unasked
    assert f"wrote {out}" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]  # no temporary file left
    src_info, src = _frames(clip)
    info, frames = _frames(out)
    assert (info.width, info.height) == (src_info.width, src_info.height) and info.has_video and info.has_audio
    assert info.duration == pytest.approx(src_info.duration, abs=1 / src_info.fps)
    assert abs(len(frames) - len(src)) <= 1 and info.fps == pytest.approx(src_info.fps, abs=0.01)
    # frame 0 was scored (5 fps from t = 0): its face box is drawn, the face itself is the same picture
    box = faces.get_detector()(src[0])[0]
    edge, inner = _edge_change(src[0], frames[0], (box.x0, box.y0, box.x1, box.y1))
    assert edge > 40 and inner < 12, (edge, inner)


def test_annotate_every_face_of_a_two_face_clip_and_an_image(face_only_bundle, tmp_path, two_faces):
    for path, name in ((two_faces[0], "two.mkv"), (two_faces[1], "two.png")):
        out = tmp_path / name
        r = runner.invoke(app, ["predict", str(path), "--model", str(face_only_bundle), "--json", "--faces", "all",
                                "--window", "0.5", "--annotate", str(out)])
        assert r.exit_code == 0, r.output
        res = lines(r.stdout)[-1]
        (_, src), (info, drawn) = _frames(path), _frames(out)
        assert (info.width, info.height) == (960, 360) and info.has_audio == (name == "two.mkv")
        for track in res["faces"]:
            x, y, w, h = track["box"]
            edge, _ = _edge_change(src[0], drawn[0], (x, y, x + w, y + h))
            assert edge > 30, (track, edge)  # both boxes drawn, near their median place


@pytest.mark.parametrize("inputs, named", [
    (["1001_DFA_HAP_XX.avi", "1001_DFA_SAD_XX.avi"], "2 inputs were given"),
    (["-"], "<stdin>: --annotate draws on one video"),
    ([""], ": --annotate draws on one video"),  # the examples folder
])
def test_annotate_refuses_anything_but_one_file_before_running(face_only_bundle, tmp_path, inputs, named):
    args = [str(EXAMPLES / a) if a != "-" else a for a in inputs]
    out = tmp_path / "out.mp4"
    r = runner.invoke(app, ["predict", *args, "--model", str(face_only_bundle), "--json", "--annotate", str(out)],
                      input=b"")
    assert r.exit_code == 1 and r.stdout == "" and not out.exists()
    err = " ".join(r.stderr.split())
    assert err.startswith("error:") and named in err and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("target, says, before", [
    ("out.avi", "name the file .mp4, .mov or .mkv", False),
    # refused before any work (issue 32): nothing is computed, nothing printed
    ("folder", "(--annotate) is a folder; name a file", True),
    ("input", "(--annotate) is the input", True),
    ("file.txt/out.mp4", "is a file, not a folder", True),
])
def test_annotate_bad_output_is_one_line_and_keeps_the_result(face_only_bundle, tmp_path, target, says, before):
    import shutil

    clip = tmp_path / "clip.avi"
    shutil.copy(EXAMPLES / "1001_DFA_NEU_XX.avi", clip)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("a file, not a folder")
    out = clip if target == "input" else tmp_path / target
    r = runner.invoke(app, ["predict", str(clip), "--model", str(face_only_bundle), "--json", "--annotate", str(out)],
                      terminal_width=400)
    assert r.exit_code == 1
    if before:
        assert lines(r.stdout) == []
    else:
        assert lines(r.stdout)[0]["status"] == "ok"  # what was computed is still printed
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {out}") and says in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "file.txt", "folder"]  # nothing left behind
    assert (tmp_path / "clip.avi").read_bytes() == (EXAMPLES / "1001_DFA_NEU_XX.avi").read_bytes()


def test_annotate_an_audio_file_is_one_line(tiny_bundle, tmp_path):
    from conftest import make_clip

    wav = make_clip(tmp_path / "tone.wav", seconds=1.0, video=False)
    r = runner.invoke(app, ["predict", str(wav), "--model", str(tiny_bundle), "--json", "--annotate",
                            str(tmp_path / "out.mp4")], terminal_width=400)
    assert r.exit_code == 1 and not (tmp_path / "out.mp4").exists()
    assert "has no picture to draw on (audio only)" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["predict", "x.avi"], ["evaluate", "corpus"], ["extract", "corpus", "--out", "o"]])
def test_scoring_options_reach_the_pipeline(command, monkeypatch, tmp_path):
    """predict, evaluate and extract declare the shared scoring options once (`scoring_options`): each command
    lists them in its help, in one place, and hands every value given on the command line to the pipeline."""
    from emocli.cli import corpus, options, predict

    got = {}

    def capture(**kwargs):
        got.update(kwargs)
        raise SystemExit(7)

    for module in (predict, corpus):  # where the commands call it
        monkeypatch.setattr(module, "pipeline_options", capture)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus" / "anger").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "corpus" / "anger" / "a.png"), np.zeros((48, 48), np.uint8))
    help_text = runner.invoke(app, [command[0], "--help"], env={"COLUMNS": "200"}).stdout
    names = [re.search(rf"--{n.replace('_', '-')}\b", help_text) for n in options.SCORING]
    assert all(names) and [m.start() for m in names] == sorted(m.start() for m in names)
    r = runner.invoke(app, [*command, "--fps", "2", "--batch-size", "8", "--detector", "haar", "--no-detect",
                            "--tta", "none", "--face-experts", "emo-cnn", "--pooling", "expressive"])
    assert r.exit_code == 7, r.output
    assert {k: getattr(v, "value", v) for k, v in got.items() if k in options.SCORING} == {
        "fps": 2.0, "batch_size": 8, "detector": "haar", "detect": False, "tta": "none",
        "face_experts": "emo-cnn", "pooling": "expressive"}


def test_one_layout_option_with_the_former_spelling_hidden(tmp_path):
    """evaluate, extract and train-audio all take --layout; train-audio's former --corpus still works, unlisted."""
    help_text = runner.invoke(app, ["train-audio", "--help"], terminal_width=200).stdout
    assert "--layout <afew|images|ravdess|cremad|tess|savee|emodb|manifest>" in help_text and "--corpus" not in help_text
    for option in ("--layout", "--corpus"):
        r = runner.invoke(app, ["train-audio", str(tmp_path), "--out", str(tmp_path / "b"), option, "nonesuch"])
        assert r.exit_code == 2 and "nonesuch" in r.output


def test_usage_lines_and_command_list_read_as_unix_tools_write_them():
    r = runner.invoke(app, ["predict", "--help"], terminal_width=100)
    assert r.stdout.startswith("Usage: emo predict [OPTIONS] INPUTS...\n")
    assert "<list[str]>" not in r.stdout and "{" not in r.stdout.splitlines()[0]
    listing = runner.invoke(app, ["--help"], terminal_width=80).stdout
    commands = listing.split("Commands:")[1].strip().splitlines()
    assert commands[0].split()[0] == "predict" and not any(line.endswith("...") for line in commands)
