"""Live-stream latency and memory: a real-time stream piped into `emo predict - --window W --json`.

The stream is `ffmpeg -re -readrate_initial_burst 0 -stream_loop -1 -i CLIP -t SECONDS -f mpegts -`:
it reads its input in real time from the moment it starts (stream second t at about wall second t
after its start). A relay thread copies it into emo's stdin. Each segment line's latency is the
wall time it arrived on emo's stdout minus (the sender's start + the segment's end in stream
time): it includes the sender's own muxing and 32 KiB output buffering, emo's start-up (the two
start together) and ffmpeg's probing of the stream, so it is an upper bound on emo's share. emo's RSS (its own process; ffmpeg children are
listed apart) is sampled every second, and so is the total size of the regular files that emo and
its children hold open (a spool file shows there).

    python bench/live.py                                     # this checkout, 60 s
    python bench/live.py --old /tmp/emo-main                 # the same stream through another checkout too
    python bench/live.py --seconds 600 --variants new        # memory over a long stream

`--old DIR`: a checkout of the code to compare (e.g. `git archive main | tar -x -C DIR`), run with
`PYTHONPATH=DIR`. Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ffmpeg() -> str:
    sys.path.insert(0, str(REPO))
    from emocli.media.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def tree(pid: int) -> list[int]:
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def open_file_bytes(pids: list[int]) -> int:
    """Total size of the regular files (not libraries) these processes hold open."""
    seen, total = set(), 0
    for p in pids:
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{p}/fd/{fd}")
                st = os.stat(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/") and not target.startswith(("/dev", "/proc")) and target not in seen \
                    and not target.endswith((".so", ".tflite", ".onnx", ".npz", ".keras")) and os.path.isfile(target) \
                    or target.endswith("(deleted)"):
                import stat as st_mod

                if st_mod.S_ISREG(st.st_mode):
                    seen.add(target)
                    total += st.st_size
    return total


def run(label: str, pythonpath: str | None, args) -> dict:
    ff = ffmpeg()
    started = time.time()  # stream time 0: the sender reads its input in real time from here
    # -readrate_initial_burst 0: ffmpeg's default sends the first 0.5 s at once, which would make stream
    # time t arrive at first byte + t - 0.5 and every latency look 0.5 s shorter than it is
    src = subprocess.Popen([ff, "-hide_banner", "-loglevel", "error", "-re", "-readrate_initial_burst", "0",
                            "-stream_loop", "-1", "-i", args.clip,
                            "-t", str(args.seconds), *(["-flush_packets", "1"] if args.flush else []),
                            "-f", "mpegts", "-"], stdout=subprocess.PIPE)
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    emo = subprocess.Popen([sys.executable, "-m", "emocli", "predict", "-", "--window", str(args.window), "--json",
                            *(["--model", args.model] if args.model else [])],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           cwd="/tmp")
    first = {}

    def relay():
        try:
            while True:
                b = src.stdout.read1(1 << 16)
                if not b:
                    break
                first.setdefault("t", time.time())
                emo.stdin.write(b)
                emo.stdin.flush()
        except BrokenPipeError:
            pass
        finally:
            try:
                emo.stdin.close()
            except BrokenPipeError:
                pass

    samples = []  # (wall since first byte, emo RSS MiB, children RSS MiB, open file bytes)
    done = threading.Event()

    def sample():
        while not done.wait(1.0):
            if "t" not in first:
                continue
            pids = tree(emo.pid)
            if emo.poll() is not None:
                break
            samples.append((time.time() - first["t"], rss_mib(emo.pid), sum(rss_mib(p) for p in pids[1:]),
                            open_file_bytes(pids)))

    threads = [threading.Thread(target=relay, daemon=True), threading.Thread(target=sample, daemon=True)]
    for t in threads:
        t.start()
    lines = []
    for raw in emo.stdout:
        lines.append((time.time(), json.loads(raw)))
    emo.wait()
    done.set()
    src.wait()
    err = emo.stderr.read().decode()
    t0 = started
    lat = [(wall - (t0 + obj["segment"]["end"]), obj["segment"]["end"]) for wall, obj in lines if "segment" in obj]
    result = [obj for _, obj in lines if "segment" not in obj]
    delays = sorted(d for d, _ in lat)

    def pct(q):
        return delays[min(len(delays) - 1, int(round(q * (len(delays) - 1))))] if delays else float("nan")

    def rss_at(sec):
        before = [s for s in samples if s[0] <= sec]
        return before[-1][1] if before else float("nan")

    return {"label": label, "rc": emo.returncode, "segments": len(lat), "p50": statistics.median(delays) if delays else
            float("nan"), "p95": pct(0.95), "max": delays[-1] if delays else float("nan"),
            "first": min((d for d, e in lat if e <= args.window + 1e-6), default=float("nan")),
            "result_after": (lines[-1][0] - t0) if lines else float("nan"), "rss_1min": rss_at(60),
            # the last sample before the result line: later ones can catch the process while it exits
            "rss_end": next((smp[1] for smp in reversed(samples) if lines and smp[0] < lines[-1][0] - first["t"] - 1),
                            float("nan")), "rss_max": max((s[1] for s in samples), default=0),
            "children_rss_max": max((s[2] for s in samples), default=0),
            "files_max_mib": max((s[3] for s in samples), default=0) / 2 ** 20,
            "first_byte": first["t"] - started,
            "status": result[-1].get("status") if result else None, "stderr": err.strip()[-300:],
            "latencies": [round(d, 3) for d, _ in lat],
            "rss_samples": [(round(smp[0], 1), round(smp[1], 1)) for smp in samples]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(REPO / "examples" / "1001_DFA_HAP_XX.avi"))
    ap.add_argument("--seconds", type=float, default=60.0, help="stream length")
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--old", default=None, help="checkout of the code to compare (PYTHONPATH)")
    ap.add_argument("--variants", default="new,old")
    ap.add_argument("--flush", action="store_true", help="the sender writes every packet at once "
                    "(-flush_packets 1) instead of in 32 KiB blocks")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the figures here")
    args = ap.parse_args()
    rows = []
    for v in args.variants.split(","):
        if v == "old" and not args.old:
            continue
        rows.append(run(v, str(REPO) if v == "new" else args.old, args))
        r = rows[-1]
        print(f"{v}: rc {r['rc']}, {r['segments']} segments, p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s, "
              f"max {r['max']:.2f} s, RSS 1 min {r['rss_1min']:.0f} MiB, end {r['rss_end']:.0f} MiB, "
              f"open files max {r['files_max_mib']:.1f} MiB", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"- Machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
          f"Python {platform.python_version()}; load average (1 min) at the end {load:.2f}")
    flush = " -flush_packets 1" if args.flush else ""
    print(f"- Stream: `ffmpeg -re -readrate_initial_burst 0 -stream_loop -1 -i {Path(args.clip).name} -t {args.seconds:g}{flush} -f mpegts -` into "
          f"`emo predict - --window {args.window:g} --json`\n")
    print("| code | segments | latency p50 s | p95 s | max s | first segment s | result line after s | "
          "emo RSS at 1 min MiB | at end MiB | max MiB | open files max MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['segments']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['max']:.2f} | {r['first']:.2f} | "
              f"{r['result_after']:.1f} | {r['rss_1min']:.0f} | {r['rss_end']:.0f} | {r['rss_max']:.0f} | "
              f"{r['files_max_mib']:.1f} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
