"""Benchmark emo on video: speed, peak memory and bulk throughput, against ffmpeg and fer.

    python bench/run.py              # full run (~20 min on 2 cores), writes docs/benchmarks.md
    python bench/run.py --quick      # ~2 min smoke run, prints the tables only

Run it with the interpreter emo is installed in (it imports ``emocli.media.ffmpeg`` for the ffmpeg
binary). Every measurement runs in a fresh wrapper process that starts the measured command
and reads ``getrusage(RUSAGE_CHILDREN)`` afterwards: wall time, CPU time and the peak RSS of
the largest single process the command started (ffmpeg children included). Wall times
include start-up (Python, TensorFlow, model loading): that is what a user waits for.

What is measured, per clip (the six real ``examples/*.avi`` and 10 s / 60 s / 600 s loops of
them, generated into a temporary folder):
  (a)  ffmpeg decoding alone at emo's sampling rate (5 fps) into /dev/null: the floor;
  (a') ffmpeg decoding every frame: the floor for (c);
  (b)  ``emo predict CLIP --json`` with defaults;
  (b') the same with ``--modality face``: face only, like fer;
  (c)  emo with the thesis's settings, ``--detector haar --fps 0`` (every frame);
  (d)  fer's ``Video.analyze`` (Haar + its TFLite model) on every 6th frame (~5 fps) and
  (d') on every frame, run by ``bench/fer_runner.py`` in ``bench/.venv`` (see bench/README.md).
Then (e) bulk: N short clips through one ``emo predict`` call versus separate calls, and
(f) ``emo --help`` start-up time and peak RSS of a 600 s versus a 10 s clip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"
FER_PYTHON = REPO / "bench" / ".venv" / "bin" / "python"
FER_RUNNER = REPO / "bench" / "fer_runner.py"

EMO_FPS = 5.0  # frames per second emo scores by default (`emo predict --fps`)
MIB = 1024  # ru_maxrss is in KiB on Linux

# Settings of a full run and of --quick; every one is also a command-line option.
PRESETS = {
    "full": dict(lengths=[10, 60, 600], examples=6, full_rate_max=60.0, repeat=1, bulk=100,
                 bulk_seconds=2.0, bulk_single=10, workers=[1, 2], help_runs=5),
    "quick": dict(lengths=[10, 30], examples=1, full_rate_max=10.0, repeat=1, bulk=10,
                  bulk_seconds=2.0, bulk_single=3, workers=[1, 2], help_runs=3),
}

# The wrapper that runs one measured command. A fresh process per measurement, because
# RUSAGE_CHILDREN's ru_maxrss is the largest child the caller has ever waited for.
_MEASURE = r"""
import json, resource, subprocess, sys, time
spec = json.loads(sys.argv[1])
with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(spec["cmd"], stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=spec["cwd"])
    except OSError as exc:
        err.write(f"cannot start {spec['cmd'][0]}: {exc}".encode())
        rc = 127
    wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss}))
"""


# --------------------------------------------------------------------------------------
@dataclass
class Run:
    """One measured command."""

    cmd: list[str]
    rc: int
    wall: float  # seconds
    cpu: float  # user + system seconds of all the command's processes
    rss_mib: float  # peak RSS of the largest single process
    stdout: str
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def error(self) -> str:
        lines = [ln for ln in self.stderr_tail.splitlines() if ln.strip()]
        return f"exit {self.rc}: {lines[-1][:160] if lines else 'no message'}"


@dataclass
class Row:
    """One line of the single-clip table (the median of ``repeat`` runs)."""

    clip: str
    seconds: float  # clip length
    key: str  # a, a', b, c, d, d'
    runs: list[Run] = field(default_factory=list)
    frames: int | None = None  # frames decoded / sampled
    faces: int | None = None  # frames scored with a face
    label: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs) and not self.note

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def rss_mib(self) -> float:
        return max(r.rss_mib for r in self.runs)


RUN_NAMES = {
    "a": "(a) ffmpeg decode, 5 fps",
    "a'": "(a') ffmpeg decode, every frame",
    "b": "(b) emo predict (defaults: BlazeFace, 5 fps)",
    "b'": "(b') emo predict --modality face (face only, as fer)",
    "c": "(c) emo --detector haar --fps 0",
    "d": "(d) fer Video.analyze, ~5 fps",
    "d'": "(d') fer Video.analyze, every frame",
}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.nice = ["nice", "-n", str(args.nice)] if args.nice else []
        self.emo = args.emo
        self.model = ["--model", str(args.model)] if args.model else []
        self.fer_problem: str | None = None if args.fer else "left out with --no-fer"
        self.fer_ran = False  # once fer has run, a later failure is that clip's, not the setup's
        self.n = 0
        self.loads: list[float] = []  # 1-minute load average after each measurement

    # -- measuring ---------------------------------------------------------------------
    def measure(self, cmd: list[str], *, stdout_null: bool = False) -> Run:
        self.n += 1
        out = Path(os.devnull) if stdout_null else self.work / f"out{self.n}.txt"
        err = self.work / f"err{self.n}.txt"
        spec = {"cmd": self.nice + cmd, "stdout": str(out), "stderr": str(err), "cwd": str(self.work)}
        res = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(spec)], capture_output=True, text=True,
                             check=True)
        m = json.loads(res.stdout)
        text = "" if stdout_null else out.read_text(errors="replace")
        tail = _tail(err, 4000)
        for p in (err,) if stdout_null else (err, out):
            p.unlink()
        self.loads.append(_float(_loadavg()))
        return Run(cmd, m["rc"], m["wall"], m["cpu"], m["maxrss_kib"] / MIB, text, tail)

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # -- the runs ----------------------------------------------------------------------
    def ffmpeg_decode(self, clip: Path, seconds: float, fps: float | None) -> Row:
        key = "a" if fps else "a'"
        vf = ["-vf", f"fps={fps:g}"] if fps else []
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(clip), *vf,
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        row = Row(clip.name, seconds, key)
        for _ in range(self.args.repeat):
            run = self.measure(cmd, stdout_null=True)
            row.runs.append(run)
            frames = re.findall(r"frame=\s*(\d+)", run.stderr_tail)
            row.frames = int(frames[-1]) if frames else None
        if not row.runs[-1].ok:
            row.note = row.runs[-1].error()
        return row

    def emo_predict(self, clip: Path, seconds: float, key: str) -> Row:
        extra = {"c": ["--detector", "haar", "--fps", "0"], "b'": ["--modality", "face"]}.get(key, [])
        cmd = [self.emo, "predict", str(clip), "--json", *self.model, *extra]
        row = Row(clip.name, seconds, key)
        for _ in range(self.args.repeat):
            run = self.measure(cmd)
            row.runs.append(run)
            res = _json_lines(run.stdout)
            if not run.ok or not res or res[-1].get("status") != "ok":
                row.note = (res[-1].get("error") if res and res[-1].get("error") else run.error())[:200]
                break
            row.frames, row.faces, row.label = res[-1]["frames_seen"], res[-1]["frames_used"], res[-1]["label"]
        return row

    def fer_analyze(self, clip: Path, seconds: float, key: str) -> Row | None:
        if self.fer_problem:
            return None
        # fer samples by frame count: every round(fps / 5)-th frame (the 6th at 29.97 fps: 4.995 fps)
        every = max(1, round((_probe(clip).fps or 25.0) / EMO_FPS)) if key == "d" else 1
        row = Row(clip.name, seconds, key)
        for _ in range(self.args.repeat):
            run = self.measure([str(self.args.fer_python), str(FER_RUNNER), str(clip), "--every", str(every)])
            row.runs.append(run)
            res = _json_lines(run.stdout)
            if not run.ok or not res:
                row.note = run.error()
                if not self.fer_ran:
                    self.fer_problem = f"fer could not run: {run.error()}"
                    self.log(self.fer_problem + " (further fer runs skipped)")
                break
            self.fer_ran = True
            row.frames, row.faces, row.label = res[-1]["frames_analysed"], res[-1]["frames_with_face"], res[-1]["label"]
        return row

    def single_clip(self, clip: Path, seconds: float) -> list[Row]:
        full_rate = seconds <= self.args.full_rate_max + 0.5
        rows = [self.ffmpeg_decode(clip, seconds, EMO_FPS), self.ffmpeg_decode(clip, seconds, None),
                self.emo_predict(clip, seconds, "b"), self.emo_predict(clip, seconds, "b'")]
        if full_rate:
            rows.append(self.emo_predict(clip, seconds, "c"))
        rows.append(self.fer_analyze(clip, seconds, "d"))
        if full_rate:
            rows.append(self.fer_analyze(clip, seconds, "d'"))
        rows = [r for r in rows if r is not None]
        for r in rows:
            self.log(f"{clip.name} {r.key}: {r.wall:.2f} s, {r.frames} frames, {r.rss_mib:.0f} MiB"
                     + (f"  [{r.note}]" if r.note else ""))
        return rows

    def bulk(self, folder: Path, n: int) -> dict:
        """One `emo predict FOLDER` call per worker count, and a sample of separate calls."""
        out: dict = {"n": n, "one_call": {}, "separate": None}
        for w in self.args.workers:
            run = self.measure([self.emo, "predict", str(folder), "--json", "--workers", str(w), *self.model])
            ok = sum(1 for r in _json_lines(run.stdout) if r.get("status") == "ok" and "segment" not in r)
            out["one_call"][w] = {"run": run, "ok": ok}
            self.log(f"bulk one call --workers {w}: {run.wall:.1f} s, {ok}/{n} ok, {run.rss_mib:.0f} MiB")
        clips = sorted(folder.glob("*.avi"))
        k = min(self.args.bulk_single, n)
        # spread the timed sample over the list, so that it covers the variants
        sample = [clips[round(i * (len(clips) - 1) / max(1, k - 1))] for i in range(k)] if k else []
        runs = [self.measure([self.emo, "predict", str(c), "--json", *self.model]) for c in sample]
        if runs:
            ok = sum(1 for r in runs for j in _json_lines(r.stdout) if j.get("status") == "ok")
            out["separate"] = {"runs": runs, "ok": ok, "timed": k}
            self.log(f"bulk separate calls: {k} timed, {sum(r.wall for r in runs) / k:.2f} s each")
        return out

    def warm_up(self, clip: Path) -> None:
        """One unmeasured emo and fer run, so that no measurement pays for a cold disk cache."""
        self.log("warming up (unmeasured)")
        self.measure([self.emo, "predict", str(clip), "--json", *self.model])
        if not self.fer_problem:
            self.measure([str(self.args.fer_python), str(FER_RUNNER), str(clip), "--every", "6"])

    def help_time(self) -> list[Run]:
        runs = [self.measure([self.emo, "--help"]) for _ in range(self.args.help_runs)]
        self.log(f"emo --help: median {statistics.median(r.wall for r in runs):.2f} s")
        return runs


# --------------------------------------------------------------------------------------
def ffmpeg_exe() -> str:
    from emocli.media.ffmpeg import ffmpeg_exe as exe

    return exe()


def ffmpeg(*args: str, nice: list[str]) -> None:
    subprocess.run([*nice, ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


ENCODE = ["-c:v", "mpeg4", "-q:v", "4", "-c:a", "libmp3lame", "-b:a", "64k", "-ar", "16000", "-ac", "1"]  # as examples/


def make_clips(work: Path, lengths: list[float], bulk: int, bulk_seconds: float, nice: list[str]) -> dict:
    """Long clips looped from the six examples, and ``bulk`` short variants of them.

    Returns {"long": [(path, seconds)], "bulk": folder}.
    """
    from emocli.media.ffmpeg import probe

    examples = sorted(EXAMPLES.glob("*.avi"))
    clips: dict = {"long": [], "bulk": None}
    if lengths:
        base = work / "base.avi"  # the six examples back to back (~13.5 s)
        if not base.exists():
            ins = [a for ex in examples for a in ("-i", str(ex))]
            chain = "".join(f"[{i}:v][{i}:a]" for i in range(len(examples)))
            ffmpeg(*ins, "-filter_complex", f"{chain}concat=n={len(examples)}:v=1:a=1[v][a]",
                   "-map", "[v]", "-map", "[a]", *ENCODE, str(base), nice=nice)
        for sec in lengths:
            path = work / f"loop_{sec:g}s.avi"
            if not path.exists():
                # stream copy: looping needs no re-encoding, so a 10-minute clip takes a second
                ffmpeg("-stream_loop", "-1", "-i", str(base), "-t", f"{sec:g}", "-c", "copy", str(path), nice=nice)
            dur = probe(path).duration or 0.0
            if abs(dur - sec) > 1.0:
                raise SystemExit(f"bench: generated {path} is {dur:.1f} s long, expected {sec:g} s")
            clips["long"].append((path, float(sec)))
    if bulk:
        folder = work / f"bulk_{bulk}x{bulk_seconds:g}s"
        folder.mkdir(exist_ok=True)
        variants = []
        for ex in examples:  # 12 distinct encodes: each example cut to length, as is and mirrored
            for name, vf in (("plain", "null"), ("mirror", "hflip")):
                v = work / f"variant_{ex.stem}_{name}_{bulk_seconds:g}s.avi"
                if not v.exists():
                    ffmpeg("-i", str(ex), "-t", f"{bulk_seconds:g}", "-vf", vf, *ENCODE, str(v), nice=nice)
                variants.append(v)
        for i in range(bulk):
            dst = folder / f"{i:03d}_{variants[i % len(variants)].stem}.avi"
            if not dst.exists():
                shutil.copyfile(variants[i % len(variants)], dst)
        clips["bulk"] = folder
    return clips


# --------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(*dists: str) -> str:
        for d in dists:
            try:
                return f"{d} {version(d)}"
            except PackageNotFoundError:
                continue
        return "not installed"

    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = platform.platform()
    try:
        rel = dict(ln.rstrip().split("=", 1) for ln in open("/etc/os-release") if "=" in ln)
        os_name = f"{rel.get('PRETTY_NAME', '').strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    ff = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.splitlines()
    cores = len(os.sched_getaffinity(0))
    return {
        "CPU": f"{cpu}, {cores} cores available ({os.cpu_count()} logical CPUs)",
        "RAM": f"{mem_kib / 1024 ** 2:.1f} GiB",
        "OS": os_name,
        "Python": platform.python_version(),
        "emo side": f"{ver('emocli')}, {ver('tensorflow-cpu', 'tensorflow')}, {ver('keras')}, "
                    f"{ver('opencv-python-headless', 'opencv-python')}",
        "ffmpeg": " ".join(ff[0].split()[:3]) if ff else "?",
    }


def fer_versions(python: Path) -> str:
    if not python.exists():
        return f"{python} missing"
    code = ("from importlib.metadata import version as v; "
            "print(', '.join(f'{d} {v(d)}' for d in ('fer', 'tensorflow-cpu', 'opencv-contrib-python')))")
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return res.stdout.strip() or res.stderr.strip().splitlines()[-1]


def bundle_desc(model: Path | None) -> str:
    from emocli.bundle import DEFAULT_BUNDLE

    path = Path(model) if model else DEFAULT_BUNDLE
    try:
        man = json.loads((path / "manifest.json").read_text())
        face = json.loads((path / "face.json").read_text()) if (path / "face.json").exists() else {}
        voice = json.loads((path / "voice.json").read_text()) if (path / "voice.json").exists() else {}
    except (OSError, ValueError) as exc:
        return f"`{path}` (unreadable: {exc})"
    files = ", ".join(f"{k} {str(v)[:10]}" for k, v in sorted(man.get("files", {}).items()))
    pre = face.get("preprocessing", {})
    feats = voice.get("features", voice.get("settings", {}))
    return (f"`{_rel(path)}` (face: {face.get('backbone', '?')}, {pre.get('size', '?')} px {pre.get('color', '')}, "
            f"flip TTA {pre.get('flip_tta', '?')}, zoom TTA {pre.get('tta_zoom', 0)}; voice feature set "
            f"{feats.get('feature_set', voice.get('feature_set', '?')) if voice else 'none'}; sha256: {files})")


# --------------------------------------------------------------------------------------
def render(meta: dict, rows: list[Row], bulk: dict | None, helps: list[Run], args) -> str:
    cores = len(os.sched_getaffinity(0))
    out = ["# Benchmarks", "",
           "Measured by `bench/run.py` (see `bench/README.md`). Wall times include start-up "
           "(Python, TensorFlow and model loading): what a user waits for. CPU s is user + system time of all "
           "the command's processes; it moves much less than wall time when something else uses the machine. "
           "Peak RSS is that of the largest single process a command started (`getrusage(RUSAGE_CHILDREN)` "
           "in a fresh wrapper process).", "",
           f"- Date: {meta['date']}",
           f"- Command: `{meta['command']}`",
           f"- Commit: {meta['commit']}" + ("" if meta["commit_end"] == meta["commit"] else
                                             f" at the start, {meta['commit_end']} at the end (commits landed "
                                             "during the run)"),
           f"- Model bundle: {meta['bundle']}"]
    out += [f"- {k}: {v}" for k, v in meta["machine"].items()]
    out += [f"- fer side (`bench/.venv`): {meta['fer']}",
            f"- Load average (1 min) at start / end: {meta['load_start']} / {meta['load_end']}; after each "
            f"measurement: median {meta['load_median']:.2f}, max {meta['load_max']:.2f} ({cores} cores)"]
    if args.nice:
        out.append(f"- Every measured command ran under `nice -n {args.nice}`.")
    for note in args.note or []:
        out.append(f"- Note: {note}")
    out.append(f"- Total benchmark time: {meta['elapsed'] / 60:.1f} min")
    busy = meta["load_median"]
    if busy > cores:
        out += ["", f"**The machine was busy** (median load average {busy:.2f} on {cores} cores): wall times are "
                "inflated by waiting for the CPU, unevenly from run to run. Compare the CPU-time columns and ratios; "
                "rerun on an idle machine for wall times."]

    out += ["", "## Single clips", "",
            "Frames = frames decoded (ffmpeg) or sampled and looked at (emo, fer); faces = frames scored with a face. "
            f"Clips longer than {args.full_rate_max:g} s skip the every-frame runs (c) and (d') to keep the run short "
            "(`--full-rate-max`). (d) analyses every round(fps / 5)-th frame: the 6th of these 29.97 fps clips.", "",
            "| clip | length s | run | wall s | CPU s | frames | faces | frames/s (wall) | clips/s (wall) "
            "| peak RSS MiB | label |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if not r.runs:
            continue
        if r.note:
            out.append(f"| {r.clip} | {r.seconds:.1f} | {RUN_NAMES[r.key]} | {r.wall:.2f} | {r.cpu:.1f} | "
                       f"failed: {_md(r.note)} | | | | {r.rss_mib:.0f} | |")
            continue
        fps = f"{r.frames / r.wall:.1f}" if r.frames else "?"
        out.append(f"| {r.clip} | {r.seconds:.1f} | {RUN_NAMES[r.key]} | {r.wall:.2f} | {r.cpu:.1f} | "
                   f"{r.frames if r.frames is not None else '?'} | {'' if r.faces is None else r.faces} | {fps} | "
                   f"{1 / r.wall:.3f} | {r.rss_mib:.0f} | {r.label or ''} |")

    out += ["", "## emo against the floor and against fer (same run)", "",
            "Ratios emo / other, of wall time and (in brackets) of CPU time: 1.0 = as fast, 2.0 = emo takes twice "
            "as long, 0.5 = half as long. emo also decodes the audio and scores the voice; ffmpeg and fer do not.", "",
            "| clip | length s | (b) / (a) ffmpeg 5 fps | (c) / (a') ffmpeg all frames | (b) / (d) fer ~5 fps "
            "| (b') / (d) fer ~5 fps, both face only | (c) / (d') fer all frames |", "|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r.clip, r.key): r for r in rows}
    for clip, sec in dict.fromkeys((r.clip, r.seconds) for r in rows):
        cells = [_ratio(by.get((clip, e)), by.get((clip, o))) for e, o in (("b", "a"), ("c", "a'"), ("b", "d"), ("b'", "d"),
                                                                 ("c", "d'"))]
        out.append(f"| {clip} | {sec:.1f} | " + " | ".join(cells) + " |")

    steady = _steady(rows)
    if steady:
        wall_fps, cpu_fps, lo, hi = steady
        out += ["", f"Start-up aside (the difference between the {lo} and {hi} runs of (b), where start-up "
                f"cancels out), emo's defaults process {wall_fps:.1f} sampled frames per wall second "
                f"({wall_fps / EMO_FPS:.1f} s of video per second) and {cpu_fps:.1f} frames per CPU second."]

    checks = []
    if bulk:
        n = bulk["n"]
        out += ["", f"## Bulk: {n} clips of {args.bulk_seconds:g} s", "",
                "| run | clips ok | wall s | CPU s | clips/s (wall) | peak RSS MiB (largest process) |",
                "|---|---:|---:|---:|---:|---:|"]
        sep = bulk["separate"]
        for w, b in bulk["one_call"].items():
            r = b["run"]
            out.append(f"| one `emo predict FOLDER --workers {w}` | {b['ok']}/{n} | {r.wall:.1f} | {r.cpu:.1f} | "
                       f"{n / r.wall:.2f} | {r.rss_mib:.0f} |")
        if sep:
            k = sep["timed"]
            wall, cpu = sum(r.wall for r in sep["runs"]) * n / k, sum(r.cpu for r in sep["runs"]) * n / k
            out.append(f"| {n} separate `emo predict CLIP` calls ({k} timed, x{n / k:.3g}) | "
                       f"{sep['ok']}/{k} | {wall:.1f} (extrapolated) | {cpu:.1f} (extrapolated) | {n / wall:.2f} | "
                       f"{max(r.rss_mib for r in sep['runs']):.0f} |")
            best_w, best = min(bulk["one_call"].items(), key=lambda kv: kv[1]["run"].wall)
            ratio, cpu_ratio = wall / best["run"].wall, cpu / best["run"].cpu
            out += ["", f"One call (best: `--workers {best_w}`) has **{ratio:.1f}x** the throughput of separate calls "
                    f"by wall time, {cpu_ratio:.1f}x by CPU time (target: at least 3x). With `--workers` > 1 the "
                    "peak RSS column is the largest single process (the main process or one worker), not their sum."]
            # on a busy machine wall time measures the queue for the CPU: judge by CPU time then
            checks.append(("bulk: one call vs separate calls, clips/s", f"{ratio:.1f}x wall, {cpu_ratio:.1f}x CPU",
                           f">= 3x ({'CPU' if busy > cores else 'wall'})", (cpu_ratio if busy > cores else ratio) >= 3))
    if helps:
        med = statistics.median(r.wall for r in helps)
        checks.append((f"`emo --help` wall time, median of {len(helps)}", f"{med:.2f} s (CPU "
                       f"{statistics.median(r.cpu for r in helps):.2f} s, peak RSS {max(r.rss_mib for r in helps):.0f} MiB)",
                       "instant (no TensorFlow import)", None))
    rss = _rss_ratio(rows)
    if rss:
        checks.append((f"peak RSS, {rss[1]} / {rss[2]} (emo defaults)", f"{rss[0]:.2f}x "
                       f"({rss[3]:.0f} / {rss[4]:.0f} MiB)", "<= 1.5x", rss[0] <= 1.5))
    for key, what in (("b", "emo defaults (face + voice)"), ("b'", "emo face only")):
        pairs = [(by[(c, key)], by[(c, "d")]) for c, _ in dict.fromkeys((r.clip, r.seconds) for r in rows)
                 if (c, key) in by and (c, "d") in by and by[(c, key)].ok and by[(c, "d")].ok
                 and not by[(c, key)].note and not by[(c, "d")].note]
        if pairs:
            ratios = [e.wall / f.wall for e, f in pairs]
            faster = sum(r < 1 for r in ratios)
            checks.append((f"{what} vs fer ~5 fps: wall-time ratio per clip", f"{min(ratios):.2f}-{max(ratios):.2f} "
                           f"(geometric mean {statistics.geometric_mean(ratios):.2f}); faster on {faster} of "
                           f"{len(ratios)} clips", "< 1 on every clip", faster == len(ratios)))
    if checks:
        out += ["", "## Checks: start-up, memory, against fer", "", "| check | measured | target | met |",
                "|---|---|---|---|"]
        for name, val, target, met in checks:
            out.append(f"| {name} | {val} | {target} | {'' if met is None else ('yes' if met else '**no**')} |")
    if meta.get("fer_problem"):
        out += ["", f"fer: {meta['fer_problem']}"]
    return "\n".join(out) + "\n"


def _ratio(emo: Row | None, other: Row | None) -> str:
    if not emo or not other or not emo.runs or not other.runs or emo.note or other.note:
        return "-"
    cpu = f" ({emo.cpu / other.cpu:.2f})" if other.cpu > 0.05 else ""
    return f"{emo.wall / other.wall:.2f}{cpu}"


def _steady(rows: list[Row]):
    """Marginal frames per wall and per CPU second of emo's defaults between the two longest clips."""
    b = sorted((r for r in rows if r.key == "b" and r.ok and r.frames), key=lambda r: r.seconds)
    if len(b) < 2 or b[-1].seconds <= b[-2].seconds or b[-1].wall <= b[-2].wall or b[-1].cpu <= b[-2].cpu:
        return None
    lo, hi = b[-2], b[-1]
    d = hi.frames - lo.frames
    return d / (hi.wall - lo.wall), d / (hi.cpu - lo.cpu), lo.clip, hi.clip


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _rss_ratio(rows: list[Row]):
    b = [r for r in rows if r.key == "b" and r.ok and r.clip.startswith("loop_")]
    if len(b) < 2:
        return None
    lo, hi = min(b, key=lambda r: r.seconds), max(b, key=lambda r: r.seconds)
    return hi.rss_mib / lo.rss_mib, hi.clip, lo.clip, hi.rss_mib, lo.rss_mib


def _json_lines(text: str) -> list[dict]:
    res = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                res.append(json.loads(line))
            except ValueError:
                pass
    return res


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - n))
        return fh.read().decode("utf-8", "replace")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _commit() -> str:
    res = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return res.stdout.strip() or "?"


def _loadavg() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def _numbers(kind):
    return lambda s: [kind(x) for x in s.split(",") if x.strip()]


# --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Options left out take the values of the full run, or of --quick.")
    ap.add_argument("--quick", action="store_true", help="~2 minute smoke run (prints only, unless --out)")
    ap.add_argument("--model", type=Path, help="model bundle passed to emo as --model [default: emo's own]")
    ap.add_argument("--lengths", type=_numbers(float), help="generated clip lengths, seconds (full: 10,60,600)")
    ap.add_argument("--examples", type=int, help="how many of the six examples/*.avi to run as they are (full: 6)")
    ap.add_argument("--full-rate-max", type=float,
                    help="run the every-frame runs (c) and (d') only on clips up to this many seconds (full: 60)")
    ap.add_argument("--repeat", type=int, help="runs per single-clip measurement; the median is reported (full: 1)")
    ap.add_argument("--bulk", type=int, help="clips in the bulk test, 0 to skip (full: 100)")
    ap.add_argument("--bulk-seconds", type=float, help="length of each bulk clip (full: 2)")
    ap.add_argument("--bulk-single", type=int, help="separate emo calls timed and extrapolated (full: 10)")
    ap.add_argument("--workers", type=_numbers(int), help="--workers values for the one-call bulk run (full: 1,2)")
    ap.add_argument("--help-runs", type=int, help="`emo --help` runs, median reported (full: 5)")
    ap.add_argument("--no-fer", dest="fer", action="store_false", help="leave out the fer runs (d)")
    ap.add_argument("--fer-python", type=Path, default=FER_PYTHON, help="interpreter that has fer installed")
    ap.add_argument("--emo", default=None, help="emo executable [default: the one next to this Python]")
    ap.add_argument("--nice", type=int, default=0, help="run every measured command under nice -n N")
    ap.add_argument("--workdir", type=Path, help="keep generated clips here and reuse them [default: a temp folder]")
    ap.add_argument("--out", help=f"Markdown file to write, '-' for none [default: {_rel(DEFAULT_DOC)}; none with --quick]")
    ap.add_argument("--note", action="append", help="a line for the report (e.g. what else ran on the machine)")
    args = ap.parse_args(argv)
    for k, v in PRESETS["quick" if args.quick else "full"].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.emo is None:
        cand = Path(sys.executable).with_name("emo")
        args.emo = str(cand) if cand.exists() else (shutil.which("emo") or "emo")
    if args.model is not None:
        args.model = args.model.resolve()
    if args.out is None:
        args.out = "-" if args.quick else str(DEFAULT_DOC)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(shlex.quote(a) for a in [_rel(Path(sys.executable)), _rel(Path(sys.argv[0])),
                                                        *sys.argv[1:]]),
            "load_start": _loadavg()}
    meta["commit"] = _commit()
    meta["machine"] = machine()
    meta["bundle"] = bundle_desc(args.model)
    meta["fer"] = fer_versions(args.fer_python) if args.fer else "not run (--no-fer)"

    tmp = None
    if args.workdir:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="emo-bench-")
        work = Path(tmp.name)
    bench = Bench(args, work)
    try:
        bench.log(f"generating clips in {work}")
        clips = make_clips(work, args.lengths, args.bulk, args.bulk_seconds, bench.nice)
        singles = [(p, _duration(p)) for p in sorted(EXAMPLES.glob("*.avi"))[:args.examples]] + clips["long"]
        rows: list[Row] = []
        bench.warm_up(sorted(EXAMPLES.glob("*.avi"))[0])
        helps = bench.help_time() if args.help_runs else []
        for path, sec in singles:
            rows += bench.single_clip(path, sec)
        bulk = bench.bulk(clips["bulk"], args.bulk) if clips["bulk"] else None
    finally:
        if tmp is not None:
            tmp.cleanup()
    meta["load_end"] = _loadavg()
    meta["commit_end"] = _commit()
    meta["load_median"] = statistics.median(bench.loads) if bench.loads else _float(meta["load_end"])
    meta["load_max"] = max(bench.loads, default=meta["load_median"])
    meta["elapsed"] = time.perf_counter() - t0
    meta["fer_problem"] = bench.fer_problem if args.fer else None
    text = render(meta, rows, bulk, helps, args)
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        bench.log(f"wrote {out}")
    return 0


def _probe(path: Path):
    from emocli.media.ffmpeg import probe

    return probe(path)


def _duration(path: Path) -> float:
    return _probe(path).duration or 0.0


if __name__ == "__main__":
    sys.exit(main())
