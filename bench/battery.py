"""Battery of bad and unusual inputs against the installed ``emo``: README's "What happens when" rows
plus the cases of issue 13 (reliability, round 2).

    python bench/battery.py            # about 2-4 minutes; prints one line per case and the summary
    python bench/battery.py -k stdin   # only the cases whose name contains "stdin"
    python bench/battery.py --model DIR

Media are generated with ffmpeg's lavfi sources (and cut from ``examples/``) in a temporary
folder. Every case runs ``emo`` in a fresh process and is checked for: its documented outcome
(passed), a Python traceback on stderr (tracebacks), fewer JSON result lines than inputs
(results lost), and a change to the inputs and devices it names (issue 32: an output must never
replace an input, /dev/null or /dev/full). The last line reads ``cases N / passed P / tracebacks T /
results lost L / inputs or devices modified M``.

Not run here (too slow or not reproducible as root; the test suite covers them): an ffmpeg
stall (60 s), more than 4 h of audio, a FIFO nobody writes to (60 s), an unreadable folder
(root reads everything), ``extract`` killed mid-write, crafted model files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "1001_DFA_HAP_XX.avi"


def emo_cmd() -> list[str]:
    exe = shutil.which("emo")
    return [exe] if exe else [sys.executable, "-m", "emocli"]


def ffmpeg(*args: str) -> None:
    from emocli.media.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@dataclass
class Run:
    rc: int
    lines: list[dict]
    bad_lines: int  # stdout lines that are not JSON (or not UTF-8)
    stderr: str
    seconds: float
    stdout: str = ""


@dataclass
class Case:
    name: str
    args: Callable[[Path], list[str]]  # emo arguments, given the work folder
    expect_lines: int  # JSON result lines the case must produce (0: not a JSON-lines case)
    check: Callable[[Run], bool]
    stdin: Callable[[Path], bytes] | None = None
    stdout_file: str | None = None  # e.g. /dev/full
    close_stdout: bool = False  # the reader goes away at once (| head -0)
    interrupt_after_first: bool = False  # a signal after the first result line: Ctrl-C ...
    stop_signal: int = signal.SIGINT  # ... or this one (SIGTERM: kill, timeout, a batch scheduler)
    # inputs and devices the run must leave as they were (issue 32): paths, given the work folder
    guard: Callable[[Path], list[Path]] | None = None


def run_case(case: Case, work: Path, model: list[str], timeout: float) -> Run:
    cmd = emo_cmd() + case.args(work)
    if cmd[len(emo_cmd())] == "predict":
        cmd += model
    t0 = time.monotonic()
    stdin = case.stdin(work) if case.stdin else None
    if case.stdout_file:
        with open(case.stdout_file, "wb") as out:
            p = subprocess.run(cmd, input=stdin, stdout=out, stderr=subprocess.PIPE, timeout=timeout,
                               stdin=None if stdin is not None else subprocess.DEVNULL)
        return Run(p.returncode, [], 0, p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
    if case.close_stdout or case.interrupt_after_first:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = b""
        if case.close_stdout:
            p.stdout.close()
        else:
            first = p.stdout.readline()
            p.send_signal(case.stop_signal)
            first += p.stdout.read()
        err = p.stderr.read()
        rc = p.wait(timeout=timeout)
        return Run(rc, *_parse(first), err.decode("utf-8", "replace"), time.monotonic() - t0)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout,
                       stdin=None if stdin is not None else subprocess.DEVNULL, env={**os.environ, "COLUMNS": "300"})
    return Run(p.returncode, *_parse(p.stdout), p.stderr.decode("utf-8", "replace"), time.monotonic() - t0,
               p.stdout.decode("utf-8", "replace"))


def _parse(out: bytes) -> tuple[list[dict], int]:
    lines, bad = [], 0
    for raw in out.splitlines():
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            bad += 1
    return lines, bad


# -- media ----------------------------------------------------------------------------------

def make_media(work: Path) -> None:
    """Everything the cases read, generated once."""
    w = work
    # The voice of the cases is the example clip's speech (0.45-1.4 s): the voice-activity gate
    # takes a tone for no speech
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-i", str(EXAMPLE), "-map", "0:v",
           "-map", "1:a", "-t", "2", "-c:v", "mpeg4", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-ar", "16000",
           "-ac", "1", str(w / "pattern.avi"))
    ffmpeg("-i", str(EXAMPLE), "-vn", "-t", "1.5", "-ar", "16000", "-ac", "1", str(w / "speech.wav"))
    shutil.copy(EXAMPLE, w / "face.avi")
    data = EXAMPLE.read_bytes()
    for share in (10, 50, 90):
        (w / f"cut{share}.avi").write_bytes(data[: len(data) * share // 100])
    ffmpeg("-i", str(EXAMPLE), "-an", "-c:v", "copy", str(w / "silent_video.avi"))
    ffmpeg("-i", str(EXAMPLE), "-frames:v", "1", "-an", str(w / "one_frame.avi"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=0.01", str(w / "blip.wav"))
    ffmpeg("-i", str(EXAMPLE), "-frames:v", "1", str(w / "face.png"))
    ffmpeg("-i", str(EXAMPLE), "-t", "0.5", "-vf", "scale=3840:2160", "-c:v", "mpeg4", "-q:v", "8", "-an",
           str(w / "4k.mkv"))
    ffmpeg("-i", str(EXAMPLE), "-vf", "select='not(mod(n\\,3))+eq(n\\,10)'", "-fps_mode", "vfr", "-c:v", "mpeg4",
           "-an", str(w / "vfr.mkv"))
    ffmpeg("-display_rotation", "90", "-i", str(EXAMPLE), "-t", "0.5", "-c:v", "copy", "-an", str(w / "rot.mp4"))
    for name in ("with space.avi", "ünïcødé.avi", "-dash.avi"):
        shutil.copy(w / "pattern.avi", w / name)
    (w / "empty.avi").write_bytes(b"")
    (w / "text.avi").write_text("not a video\n" * 50)
    (w / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (w / "no_media").mkdir()
    (w / "no_media" / "notes.txt").write_text("x")
    # issue 13
    (w / "utf8").mkdir()
    shutil.copy(w / "speech.wav", os.fsencode(w / "utf8") + b"/caf\xe9.wav")
    shutil.copy(w / "speech.wav", w / "utf8" / "z.wav")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=2", "-i", str(EXAMPLE),
           "-map", "1:v", "-map", "0:a", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", "-disposition:a:0", "0",
           "-disposition:a:1", "default", str(w / "two_audio.mkv"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04", "-frames:v", "1", str(w / "cover.png"))
    ffmpeg("-i", str(w / "speech.wav"), "-i", str(w / "cover.png"), "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame",
           "-c:v", "copy", "-disposition:v", "attached_pic", "-id3v2_version", "3", str(w / "cover.mp3"))
    jpg = w / "whole.jpg"
    ffmpeg("-i", str(EXAMPLE), "-frames:v", "1", "-q:v", "3", str(jpg))
    blob = bytearray(jpg.read_bytes())
    blob[len(blob) // 2:-2] = bytes(len(blob) - 2 - len(blob) // 2)
    (w / "half_corrupt.jpg").write_bytes(bytes(blob))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=10000x10000:duration=0.04", "-frames:v", "1", str(w / "huge.png"))
    ffmpeg("-i", str(EXAMPLE), "-ss", "0.45", "-t", "0.8", "-i", str(EXAMPLE), "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "pcm_s16le", str(w / "short_audio.avi"))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "7", str(w / "silence.wav"))
    for name, src in (("noise_face.avi", "anoisesrc=color=pink:amplitude=0.3:sample_rate=16000:duration=2"),
                      ("music_face.avi", "aevalsrc=0.1*sin(2*PI*261.6*t)+0.1*sin(2*PI*329.6*t)+0.1*sin(2*PI*392*t)"
                                         "+0.05*sin(2*PI*523.2*t)+0.05*sin(2*PI*784.8*t):s=16000:d=2")):
        ffmpeg("-i", str(EXAMPLE), "-f", "lavfi", "-i", src, "-map", "0:v", "-map", "1:a", "-c:v", "copy",
               "-c:a", "pcm_s16le", "-shortest", str(w / name))
    os.symlink(w / "loop.avi", w / "loop.avi")
    bundle = w / "bundle"
    from emocli.bundle import DEFAULT_BUNDLE, write_manifest

    shutil.copytree(DEFAULT_BUNDLE, w / "tampered")
    with open(w / "tampered" / "voice.json", "a") as fh:
        fh.write(" ")
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    (bundle / "face.json").write_text("{not json")
    labels = json.loads((bundle / "manifest.json").read_text())["labels"]
    write_manifest(bundle, labels=labels)


    # issue 32
    (w / "afile").write_text("a file, not a folder")
    (w / "manifest.csv").write_text(f"path,label\n{w / 'speech.wav'},happy\n")
    x = np.frombuffer(subprocess.run([_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(EXAMPLE), "-f", "f32le",
                                      "-ac", "1", "-ar", "16000", "-"], capture_output=True, check=True).stdout,
                      np.float32).copy()
    x[::7] = np.nan
    x[5::11] = np.inf
    x.tofile(w / "nan.raw")
    # an extraction whose one item file is then truncated: `extract --resume` must redo it
    subprocess.run(emo_cmd() + ["extract", str(w / "manifest.csv"), "--out", str(w / "feats")], check=True,
                   capture_output=True)
    item = next((w / "feats" / "items").glob("*.npz"))
    item.write_bytes(item.read_bytes()[:100])
    import cv2

    for k, lab in enumerate(("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")):
        (w / "faces" / lab).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(w / "faces" / lab / f"{i}.png"), np.random.default_rng(10 * k + i).integers(
                0, 255, (48, 48), np.uint8))
    ffmpeg("-f", "f32le", "-ar", "16000", "-ac", "1", "-i", str(w / "nan.raw"), "-c:a", "pcm_f32le", str(w / "nan.wav"))


def _ffmpeg() -> str:
    from emocli.media.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def fingerprint(path: Path) -> tuple:
    """What must not change: the kind of file (a device stays a device) and a regular file's bytes."""
    import hashlib
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    if not stat.S_ISREG(st.st_mode):
        return ("special", stat.S_IFMT(st.st_mode), st.st_rdev)
    return ("file", hashlib.sha256(Path(path).read_bytes()).hexdigest())


# -- checks ---------------------------------------------------------------------------------

def ok(run: Run, i: int = 0) -> dict:
    return run.lines[i] if len(run.lines) > i and run.lines[i]["status"] == "ok" else {}


def error_names(run: Run, name: str, i: int = 0) -> bool:
    line = run.lines[i] if len(run.lines) > i else {}
    return (run.rc == 1 and line.get("status") == "error" and name in line.get("error", "")
            and "\n" not in line.get("error", ""))


def has_note(run: Run, text: str, i: int = 0) -> bool:
    line = run.lines[i] if len(run.lines) > i else {}
    return any(text in n for n in line.get("notes", [])) or text in (line.get("error") or "")


def one_error_line(run: Run) -> bool:
    return run.rc == 1 and run.stderr.count("\n") == 1 and run.stderr.startswith("error:")


def _damaged(w: Path, member: str) -> Path:
    """The shipped bundle (linked) with ``member`` damaged and the manifest re-hashed, made once."""
    from emocli.bundle import DEFAULT_BUNDLE, write_manifest

    d = w / f"damaged_{member}"
    if d.exists():
        return d
    d.mkdir()
    for f in DEFAULT_BUNDLE.iterdir():
        if f.name == member:
            shutil.copy(f, d / f.name)
        elif f.name != "manifest.json":
            (d / f.name).symlink_to(f)
    shutil.copy(DEFAULT_BUNDLE / "manifest.json", d / "manifest.json")
    target = d / member
    if member.endswith(".json"):
        target.write_text(target.read_text().replace('"n_features": 1057', '"n_features": 1e309'))
    else:
        target.write_bytes(target.read_bytes()[:len(target.read_bytes()) // 2])
    write_manifest(d, labels=json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["labels"])
    return d


def _link(w: Path, target: str, name: str) -> Path:
    link = w / name
    if not link.is_symlink():
        link.symlink_to(w / target)
    return link


def cases() -> list[Case]:
    p = lambda *names: (lambda w: ["predict", "--json", *[str(w / n) for n in names]])  # noqa: E731
    return [
        # README "What happens when"
        Case("missing path", p("nope.avi"), 1, lambda r: error_names(r, "nope.avi")),
        Case("folder with no media", p("no_media"), 1, lambda r: error_names(r, "no_media")),
        Case("zero-byte file", p("empty.avi"), 1, lambda r: error_names(r, "empty.avi")),
        Case("text file named .avi", p("text.avi"), 1, lambda r: error_names(r, "text.avi")),
        Case("corrupt image", p("garbage.jpg"), 1, lambda r: error_names(r, "garbage.jpg")),
        Case("video truncated halfway", p("cut50.avi"), 1,
             lambda r: ok(r) and has_note(r, "video stream ended early")),
        Case("video without audio", p("silent_video.avi"), 1,
             lambda r: ok(r).get("voice_scores", 0) is None and has_note(r, "no audio track")),
        Case("audio-only file", p("speech.wav"), 1, lambda r: ok(r).get("face_scores", 0) is None),
        Case("video with no face", p("pattern.avi"), 1,
             lambda r: ok(r) and has_note(r, "no face found") and has_note(r, "voice only")),
        Case("one-frame video", p("one_frame.avi"), 1, lambda r: ok(r).get("frames_seen") == 1),
        Case("audio shorter than one window", p("blip.wav"), 1, lambda r: error_names(r, "blip.wav")),
        Case("still image", p("face.png"), 1,
             lambda r: (ok(r).get("modalities") == ["face"]) or error_names(r, "face.png")),
        Case("still image --no-detect", lambda w: ["predict", "--json", "--no-detect", str(w / "face.png")], 1,
             lambda r: ok(r).get("modalities") == ["face"]),
        Case("4K video", p("4k.mkv"), 1, lambda r: bool(ok(r))),
        Case("variable frame rate", p("vfr.mkv"), 1, lambda r: 8 <= ok(r).get("frames_seen", 0) <= 12),
        Case("rotation metadata", p("rot.mp4"), 1, lambda r: bool(ok(r))),
        Case("awkward names", lambda w: ["predict", "--json", "--", str(w / "with space.avi"), str(w / "ünïcødé.avi"),
                                         str(w / "-dash.avi")], 3, lambda r: r.rc == 0),
        Case("media bytes on stdin", lambda w: ["predict", "--json", "-"], 1, lambda r: bool(ok(r)),
             stdin=lambda w: (w / "face.avi").read_bytes()),
        Case("paths on stdin", lambda w: ["predict", "--json", "-"], 2, lambda r: r.rc == 0,
             stdin=lambda w: f"{w / 'speech.wav'}\n{w / 'pattern.avi'}\n".encode()),
        Case("one bad file in a bulk run", p("empty.avi", "speech.wav"), 2,
             lambda r: r.rc == 1 and [x["status"] for x in r.lines] == ["error", "ok"]),
        Case("--fail-fast", lambda w: ["predict", "--json", "--fail-fast", str(w / "empty.avi"), str(w / "speech.wav")],
             1, lambda r: r.rc == 1 and len(r.lines) == 1),
        Case("Ctrl-C", p("speech.wav", "face.avi", "face.avi", "face.avi"), 1, lambda r: r.rc == 130,
             interrupt_after_first=True),
        Case("SIGTERM (kill, timeout)", p("speech.wav", "face.avi", "face.avi", "face.avi"), 1,
             lambda r: r.rc == 143 and "terminated" in r.stderr, interrupt_after_first=True, stop_signal=signal.SIGTERM),
        Case("| head -0 (JSON)", p("speech.wav", "speech.wav"), 0, lambda r: r.rc == 0 and not r.stderr, close_stdout=True),
        Case("bundle with a modified file", lambda w: ["predict", "--json", "--model", str(w / "tampered"),
                                                       str(w / "speech.wav")], 0,
             lambda r: one_error_line(r) and "voice.json" in r.stderr),
        # issue 13
        Case("non-UTF-8 name in a folder", p("utf8"), 2,
             lambda r: r.rc == 0 and r.bad_lines == 0 and "caf\\xe9" in r.lines[0]["file"]),
        Case("missing non-UTF-8 name", lambda w: ["predict", "--json", os.fsdecode(os.fsencode(w) + b"/x\xe9.avi")], 1,
             lambda r: r.bad_lines == 0 and error_names(r, "x\\xe9.avi")),
        Case("two audio tracks", p("two_audio.mkv"), 1,
             lambda r: "voice" in ok(r).get("modalities", []) and has_note(r, "audio stream 2 of 2")),
        Case("MP3 with cover art", p("cover.mp3"), 1, lambda r: ok(r).get("modalities") == ["voice"]),
        *[Case(f"video truncated at {s}%", p(f"cut{s}.avi"), 1, lambda r: has_note(r, "video stream ended early"))
          for s in (10, 90)],
        Case("JPEG corrupt from halfway", p("half_corrupt.jpg"), 1,
             lambda r: has_note(r, "damaged") and "Corrupt JPEG" not in r.stderr),
        Case("10000x10000 PNG", p("huge.png"), 1, lambda r: error_names(r, "10000x10000")),
        Case("/dev/null", lambda w: ["predict", "--json", "/dev/null"], 1,
             lambda r: error_names(r, "/dev/null") and "emo-stdin-" not in r.stderr),
        # issue 12: live inputs
        Case("URL that cannot be opened", lambda w: ["predict", "--json", "http://127.0.0.1:9/clip.mp4"], 1,
             lambda r: error_names(r, "http://127.0.0.1:9/clip.mp4")),
        Case("capture device that is not there", lambda w: ["predict", "--json", "/dev/video97"], 1,
             lambda r: error_names(r, "/dev/video97")),
        Case("binary junk on stdin", lambda w: ["predict", "--json", "-"], 1,
             lambda r: error_names(r, "<stdin>") and "emo-stdin-" not in r.stderr,
             stdin=lambda w: b"\0" + os.urandom(100_000)),
        Case("stdout on a full disk", p("speech.wav"), 0, one_error_line, stdout_file="/dev/full"),
        Case("face.json not JSON", lambda w: ["predict", "--json", "--model", str(w / "bundle"), str(w / "speech.wav")],
             0, lambda r: one_error_line(r) and "face.json" in r.stderr),
        Case("| head -0 (table)", lambda w: ["predict", "--table", str(w / "speech.wav"), str(w / "speech.wav")], 0,
             lambda r: r.rc == 0 and not r.stderr, close_stdout=True),
        Case("--window, audio shorter than video", lambda w: ["predict", "--json", "--window", "0.5",
                                                              str(w / "short_audio.avi")], 3,
             lambda r: r.rc == 0 and "no audio: face alone" in (r.lines[-2].get("segment", {}).get("notes") or [""])[0]),
        Case("--window with --max-seconds", lambda w: ["predict", "--json", "--window", "1", "--max-seconds", "1",
                                                       str(w / "face.avi")], 2, lambda r: r.rc == 0),
        Case("help keeps square brackets", lambda w: ["predict", "--help"], 0,
             lambda r: r.rc == 0 and "'emocli[ray]'" in " ".join(r.stdout.split())
             and "[default: the shipped models/default]" in " ".join(r.stdout.split())),
        Case("--workers above the CPU count", lambda w: ["predict", "--json", "--workers", "64", str(w / "speech.wav"),
                                                         str(w / "pattern.avi")], 2, lambda r: r.rc == 0),
        Case("symlink loop", p("loop.avi"), 1, lambda r: error_names(r, "symlink loop")),
        Case("bad --layout", lambda w: ["evaluate", str(w), "--layout", "bogus"], 0, lambda r: r.rc == 2),
        Case("digital silence", p("silence.wav"), 1, lambda r: error_names(r, "no speech detected")),
        # issue 32: outputs never destroy anything, every number and file gets one line
        Case("-o naming the input", lambda w: ["predict", "--json", str(w / "speech.wav"), "-o", str(w / "speech.wav")],
             0, lambda r: one_error_line(r) and "is the input" in r.stderr, guard=lambda w: [w / "speech.wav"]),
        Case("-o through a symlink to the input", lambda w: ["predict", str(w / "speech.wav"), "-o",
                                                             str(_link(w, "speech.wav", "speech_link.wav"))],
             0, lambda r: one_error_line(r) and "is the input" in r.stderr, guard=lambda w: [w / "speech.wav"]),
        Case("evaluate --predictions naming its manifest", lambda w: ["evaluate", str(w / "manifest.csv"),
                                                                      "--predictions", str(w / "manifest.csv")],
             0, lambda r: one_error_line(r) and "is the input" in r.stderr, guard=lambda w: [w / "manifest.csv"]),
        Case("-o /dev/null", lambda w: ["predict", str(w / "speech.wav"), "-o", "/dev/null", "--format", "json"], 0,
             lambda r: r.rc == 0, guard=lambda w: [Path("/dev/null")]),
        Case("--plot /dev/null", lambda w: ["predict", "--json", "--window", "1", str(w / "speech.wav"), "--plot",
                                            "/dev/null"], 2, lambda r: r.rc == 0, guard=lambda w: [Path("/dev/null")]),
        Case("-o /dev/full", lambda w: ["predict", str(w / "speech.wav"), "-o", "/dev/full", "--format", "json"], 0,
             lambda r: one_error_line(r) and "/dev/full" in r.stderr, guard=lambda w: [Path("/dev/full")]),
        Case("evaluate --plot /dev/full", lambda w: ["evaluate", "--json", str(w / "manifest.csv"), "--plot",
                                                     "/dev/full"], 0,
             lambda r: r.rc == 1 and "/dev/full" in r.stderr and '"n_items"' in r.stdout,
             guard=lambda w: [Path("/dev/full")]),
        Case("-o and --plot on one file", lambda w: ["predict", "--window", "1", str(w / "speech.wav"), "-o",
                                                     str(w / "same.out"), "--plot", str(w / "same.out")], 0,
             lambda r: one_error_line(r) and "named by both" in r.stderr),
        Case("evaluate --report and --predictions on one file",
             lambda w: ["evaluate", str(w / "manifest.csv"), "--report", str(w / "same2.out"), "--predictions",
                        str(w / "same2.out")], 0, lambda r: one_error_line(r) and "named by both" in r.stderr),
        Case("-o a folder", lambda w: ["predict", str(w / "speech.wav"), "-o", str(w / "no_media")], 0,
             lambda r: one_error_line(r) and "is a folder" in r.stderr),
        Case("-o under a file", lambda w: ["predict", str(w / "speech.wav"), "-o", str(w / "afile" / "x.jsonl")], 0,
             lambda r: one_error_line(r) and "is a file, not a folder" in r.stderr, guard=lambda w: [w / "afile"]),
        Case("-o name too long", lambda w: ["predict", str(w / "speech.wav"), "-o", str(w / ("n" * 300))], 0,
             lambda r: one_error_line(r) and "longer than" in r.stderr),
        Case("--submission a file", lambda w: ["predict", "--json", str(w / "speech.wav"), "--submission",
                                               str(w / "afile")], 0,
             lambda r: one_error_line(r) and "is a file" in r.stderr, guard=lambda w: [w / "afile"]),
        Case("extract --out a file", lambda w: ["extract", str(w / "manifest.csv"), "--out", str(w / "afile")], 0,
             lambda r: one_error_line(r) and "is a file" in r.stderr, guard=lambda w: [w / "afile"]),
        Case("train-audio --out a file", lambda w: ["train-audio", str(w / "manifest.csv"), "--out",
                                                    str(w / "afile")], 0,
             lambda r: one_error_line(r) and "is a file" in r.stderr, guard=lambda w: [w / "afile"]),
        *[Case(f"predict {opt} {v}", lambda w, opt=opt, v=v: ["predict", str(w / "speech.wav"), opt, v], 0,
               lambda r: r.rc == 2 and "finite number" in r.stderr)
          for opt, v in (("--window", "inf"), ("--window", "1e308"), ("--fps", "inf"), ("--fps", "1e9"),
                         ("--max-seconds", "inf"), ("--max-seconds", "1e308"))],
        *[Case(f"train-video {opt} {v}", lambda w, opt=opt, v=v: ["train-video", str(w), "--out", str(w / "tv"), opt, v],
               0, lambda r: r.rc == 2) for opt, v in (("--lr", "nan"), ("--limit", "-5"))],
        Case("--format csv --json", lambda w: ["predict", str(w / "speech.wav"), "--format", "csv", "--json"], 0,
             lambda r: r.rc == 2 and "contradicts" in r.stderr),
        Case("stdin list with a BOM", lambda w: ["predict", "--json", "-"], 2, lambda r: r.rc == 0,
             stdin=lambda w: f"\ufeff{w / 'speech.wav'}\n{w / 'pattern.avi'}\n".encode()),
        Case("stdin list from ls --color=always", lambda w: ["predict", "--json", "-"], 2, lambda r: r.rc == 0,
             stdin=lambda w: f"\x1b[0m\x1b[01;35m{w / 'speech.wav'}\x1b[0m\n\x1b[01;35m{w / 'pattern.avi'}\x1b[0m\n".encode()),
        Case("stdin list from find -print0", lambda w: ["predict", "--json", "-"], 2, lambda r: r.rc == 0,
             stdin=lambda w: f"{w / 'speech.wav'}\0{w / 'pattern.avi'}\0".encode()),
        Case("stdin list with a 70 KiB line", lambda w: ["predict", "--json", "-"], 3,
             lambda r: r.rc == 1 and [x["status"] for x in r.lines] == ["ok", "error", "ok"],
             stdin=lambda w: f"{w / 'speech.wav'}\n".encode() + b"a" * 70_000 + f"\n{w / 'pattern.avi'}\n".encode()),
        Case("stdin list with spaces kept", lambda w: ["predict", "--json", "-"], 1,
             lambda r: r.rc == 0 and r.lines[0]["file"].endswith("with space.avi"),
             stdin=lambda w: f"{w / 'with space.avi'}\n".encode()),
        Case("bundle: truncated ONNX expert, manifest re-hashed",
             lambda w: ["predict", "--json", "--model", str(_damaged(w, "face_expert_rafdb.onnx")), str(w / "speech.wav")],
             0, lambda r: one_error_line(r) and "face_expert_rafdb.onnx" in r.stderr),
        Case("bundle: voice.json n_features 1e309, manifest re-hashed",
             lambda w: ["predict", "--json", "--model", str(_damaged(w, "voice.json")), str(w / "speech.wav")],
             0, lambda r: one_error_line(r) and "n_features" in r.stderr),
        Case("backbone that is a text file", lambda w: ["train-video", str(w / "faces"), "--out", str(w / "tv2"),
                                                        "--backbone", f"mini-xception:{w / 'afile'}", "--epochs", "1"],
             0, lambda r: r.rc == 1 and "backbone file refused" in r.stderr),
        Case("extract --resume over a truncated item", lambda w: ["extract", str(w / "manifest.csv"), "--out",
                                                                  str(w / "feats"), "--resume"], 0,
             lambda r: r.rc == 0 and '"done": 1' in r.stdout),
        Case("WAV with NaN and inf samples", p("nan.wav"), 1,
             lambda r: ok(r).get("voice_scores") is not None and has_note(r, "NaN or infinite")
             and "RuntimeWarning" not in r.stderr),
        *[Case(f"{what} under a face", p(f"{what}_face.avi"), 1,
               lambda r: ok(r).get("voice_scores", 0) is None and has_note(r, "no speech detected (voice activity"))
          for what in ("noise", "music")],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--model", help="model bundle passed to emo predict (default: the shipped one)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    args = ap.parse_args()
    model = ["--model", args.model] if args.model else []
    selected = [c for c in cases() if args.k in c.name]
    n = passed = tracebacks = lost = modified = 0
    with tempfile.TemporaryDirectory(prefix="emo-battery-") as tmp:
        work = Path(tmp)
        make_media(work)
        for case in selected:
            n += 1
            guarded = case.guard(work) if case.guard else []
            before = [fingerprint(g) for g in guarded]
            try:
                run = run_case(case, work, model, args.timeout)
            except subprocess.TimeoutExpired:
                print(f"FAIL  {case.name}: timed out after {args.timeout:.0f} s", flush=True)
                continue
            good = bool(case.check(run))
            tb = "Traceback" in run.stderr
            short = case.expect_lines and (len(run.lines) < case.expect_lines or run.bad_lines)
            changed = [str(g) for g, f in zip(guarded, before) if fingerprint(g) != f]
            passed += good and not tb and not short and not changed
            tracebacks += tb
            lost += bool(short)
            modified += bool(changed)
            status = "ok  " if good and not tb and not short and not changed else "FAIL"
            if changed:
                print(f"      modified: {', '.join(changed)}", flush=True)
            detail = "" if status == "ok  " else (f" (rc {run.rc}, {len(run.lines)} line(s), "
                                                  f"stderr: {run.stderr.strip()[-200:]!r})")
            print(f"{status}  {case.name} [{run.seconds:.1f} s]{detail}", flush=True)
    print(f"cases {n} / passed {passed} / tracebacks {tracebacks} / results lost {lost} / "
          f"inputs or devices modified {modified}")


if __name__ == "__main__":
    main()
