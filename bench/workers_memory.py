"""Memory of a bulk run (`emo predict --workers N`) on one long clip: this checkout against another.

With --workers, each worker decodes a clip and finds its faces (stage 1) and the main process
scores them (stage 2). A worker used to hold every prepared face of a clip in memory and send
them all at once, so memory grew with the clip's length; now the faces past
``emocli.pipeline.faces.SPOOL_AFTER_BYTES`` wait in files under the run's spool folder (issue 14, item 4).

The clip is an example looped to ``--seconds``; the process tree's RSS is sampled every 0.2 s:
the peak of its sum (main process and workers), of the main process and of the largest worker
(ffmpeg included), beside wall and CPU time and the label::

    git archive HEAD~1 | tar -x -C /tmp/emo-old            # the code to compare (models included)
    python bench/workers_memory.py --old /tmp/emo-old --seconds 300

Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live import REPO, ffmpeg, rss_mib, tree  # noqa: E402


def run(name: str, pythonpath: str, clip: Path, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    cmd = [sys.executable, "-m", "emocli", "predict", str(clip), "--workers", str(workers), "--json"]
    t0, c0 = time.monotonic(), os.times()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=pythonpath)
    peak = main_peak = worker_peak = 0.0
    while proc.poll() is None:
        pids = tree(proc.pid)
        rss = {p: rss_mib(p) for p in pids}
        peak = max(peak, sum(rss.values()))
        main_peak = max(main_peak, rss.get(proc.pid, 0.0))
        worker_peak = max([worker_peak] + [v for p, v in rss.items() if p != proc.pid])
        time.sleep(0.2)
    out, err = proc.communicate()
    c1 = os.times()
    res = (json.loads(out.decode().splitlines()[-1]) if out.strip()
           else {"status": "no output", "error": err.decode()[-300:]})
    return {"code": name, "peak_mib": peak, "main_mib": main_peak, "worker_mib": worker_peak,
            "wall": time.monotonic() - t0,
            "cpu": (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system),
            "status": res.get("status"), "label": res.get("label"), "frames_used": res.get("frames_used"),
            "error": res.get("error")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="checkout of the code to compare (run with PYTHONPATH)")
    ap.add_argument("--seconds", type=float, default=300.0, help="length of the looped clip")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clip", type=Path, default=REPO / "examples" / "1001_DFA_HAP_XX.avi")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="emo-bench-") as work:
        clip = Path(work) / f"long_{int(args.seconds)}s.mp4"
        subprocess.run([ffmpeg(), "-loglevel", "error", "-stream_loop", "-1", "-i", str(args.clip), "-t",
                        str(args.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip)],
                       check=True)
        rows = [run("this checkout", str(REPO), clip, args.workers), run("--old", args.old, clip, args.workers)]
    print(f"`python bench/workers_memory.py --old {args.old} --seconds {args.seconds:g} --workers {args.workers}`; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} "
          "at the end\n")
    print("| code | peak RSS, all processes (MiB) | main process | largest worker | wall (s) | CPU (s) | status | "
          "label | frames used |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    for r in rows:
        print(f"| {r['code']} | {r['peak_mib']:.0f} | {r['main_mib']:.0f} | {r['worker_mib']:.0f} | "
              f"{r['wall']:.1f} | {r['cpu']:.1f} | {r['status']} | {r['label']} | {r['frames_used']} |")
        if r["error"]:
            print(f"\n{r['code']}: {r['error']}")


if __name__ == "__main__":
    main()
