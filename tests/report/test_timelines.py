"""Timelines people open (predict --format srt|vtt|tsv) and a file per input (--output-dir)."""

import json
import re

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from emocli.cli.app import app
from emocli.labels import LABELS

runner = CliRunner()
CLIP = str(EXAMPLES / "1001_DFA_HAP_XX.avi")


def _segments(*extra):
    r = runner.invoke(app, ["predict", CLIP, "--json", "--window", "1", *extra])
    assert r.exit_code == 0, r.output
    return [json.loads(ln)["segment"] for ln in r.stdout.splitlines() if '"segment"' in ln]


def _seconds(stamp: str) -> float:
    h, m, s = re.split(r":", stamp.replace(",", "."))
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_srt_parses_back_to_the_segments():
    segs = _segments()
    r = runner.invoke(app, ["predict", CLIP, "--window", "1", "--format", "srt"])
    assert r.exit_code == 0, r.output
    cues = [c.split("\n") for c in r.stdout.strip().split("\n\n")]
    assert len(cues) == len(segs)
    for k, (cue, seg) in enumerate(zip(cues, segs), 1):
        number, span, text = cue
        start, end = span.split(" --> ")
        assert int(number) == k and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3}", start)
        assert _seconds(start) == pytest.approx(seg["start"], abs=1e-3)
        assert _seconds(end) == pytest.approx(seg["end"], abs=1e-3)
        label, score, used = re.fullmatch(r"(\w+) (\d\.\d\d) \((.+)\)", text).groups()
        assert label == seg["label"] and float(score) == pytest.approx(seg["scores"][label], abs=0.005)
        assert used.split(" + ") == [m for m in ("face", "voice") if seg[f"{m}_scores"] is not None]


def test_vtt_and_tsv():
    segs = _segments()
    vtt = runner.invoke(app, ["predict", CLIP, "--window", "1", "--format", "vtt"]).stdout
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(segs)
    assert re.search(r"^00:00:01\.000 --> 00:00:02\.000$", vtt, re.M)
    tsv = runner.invoke(app, ["predict", CLIP, "--window", "1", "--format", "tsv"]).stdout.splitlines()
    assert tsv[0].split("\t") == ["start", "end", "label", "score", "modalities"]
    rows = [r.split("\t") for r in tsv[1:]]
    assert [(int(a), int(b), lab) for a, b, lab, *_ in rows] == [
        (round(s["start"] * 1000), round(s["end"] * 1000), s["label"]) for s in segs]


def test_output_file_takes_its_format_from_the_extension(tmp_path):
    out = tmp_path / "clip.srt"
    r = runner.invoke(app, ["predict", CLIP, "--window", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("1\n00:00:00,000 --> 00:00:01,000\n")


def test_output_dir_writes_a_file_per_input(tmp_path):
    clips = [str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "SAD")]
    twin = tmp_path / "other" / "1001_DFA_ANG_XX.avi"  # the same name in another folder
    twin.parent.mkdir()
    twin.write_bytes((EXAMPLES / "1001_DFA_ANG_XX.avi").read_bytes())
    out = tmp_path / "results"
    r = runner.invoke(app, ["predict", *clips, str(twin), "--window", "1", "--frames", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and "wrote 3 file(s)" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1001_DFA_ANG_XX-2.json", "1001_DFA_ANG_XX.json",
                                                      "1001_DFA_SAD_XX.json"]
    doc = json.loads((out / "1001_DFA_SAD_XX.json").read_text())
    assert doc["file"] == clips[1] and doc["status"] == "ok" and doc["label"] in LABELS
    assert len(doc["segments"]) == 3 and len(doc["frames"]) == doc["frames_used"]
    r = runner.invoke(app, ["predict", *clips, "--window", "1", "--format", "srt", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "1001_DFA_ANG_XX.srt").read_text().startswith("1\n00:00:00,000 --> ")


@pytest.mark.parametrize("args, message", [
    (["--format", "srt"], "add --window"),
    (["--window", "1", "--format", "vtt", str(EXAMPLES)], "--output-dir DIR for a file per input"),
    (["--window", "1", "-o", "x.json", "--output-dir", "d"], "not both"),
    (["--output-dir", "d", "--format", "table"], "a table is for the terminal"),
])
def test_timeline_usage_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["predict", CLIP, *args])
    assert r.exit_code == 2 and message in r.output
    assert not any(tmp_path.iterdir())


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    r = runner.invoke(app, ["predict", CLIP, "--output-dir", str(f)])
    assert r.exit_code == 1 and "--output-dir" in r.output and f.read_text() == "x"


def test_output_dir_annotates_every_input(tmp_path):
    """--annotate mp4 --output-dir DIR: each input drawn on into DIR/<name>.annotated.mp4, beside its results."""
    import subprocess

    from emocli.media.ffmpeg import ffmpeg_exe, probe

    clips = [str(EXAMPLES / f"1001_DFA_{e}_XX.avi") for e in ("ANG", "SAD")]
    out = tmp_path / "out"
    r = runner.invoke(app, ["predict", *clips, "--window", "1", "--format", "vtt", "--annotate", "mp4",
                            "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["1001_DFA_ANG_XX.annotated.mp4", "1001_DFA_ANG_XX.vtt", "1001_DFA_SAD_XX.annotated.mp4",
                     "1001_DFA_SAD_XX.vtt"]
    for clip in clips:
        src, drawn = probe(clip), probe(out / (clip.rsplit("/", 1)[1][:-4] + ".annotated.mp4"))
        assert drawn.has_video and drawn.has_audio and (drawn.width, drawn.height) == (src.width, src.height)
    assert subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out / "1001_DFA_ANG_XX.annotated.mp4"), "-f",
                           "null", "-"], capture_output=True).returncode == 0
    r = runner.invoke(app, ["predict", clips[0], "--annotate", "gif", "--output-dir", str(tmp_path / "x")])
    assert r.exit_code == 2 and "mp4, mov or mkv" in r.output


def test_output_dir_file_that_cannot_be_written_is_one_line(tmp_path):
    """A results file of --output-dir that cannot be written (a folder is in its place) is one line naming it,
    exit 1, no temporary file left (it used to read 'cannot write the results to stdout')."""
    out = tmp_path / "out"
    (out / "1001_DFA_ANG_XX.json").mkdir(parents=True)
    import subprocess
    import sys
    from pathlib import Path

    emo = Path(sys.executable).parent / "emo"  # through main(), which turns the failure into its line
    r = subprocess.run([str(emo), "predict", CLIP.replace("HAP", "ANG"), "--output-dir", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "1001_DFA_ANG_XX.json" in r.stderr and "stdout" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and [p.name for p in out.iterdir()] == ["1001_DFA_ANG_XX.json"]
