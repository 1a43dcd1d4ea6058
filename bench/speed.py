"""Issue 33's three speed targets, each side by side with a reference in the same run.

    python bench/speed.py --before-tree /tmp/old            # all three parts; /tmp/old: an older checkout
    python bench/speed.py --parts clip,bulk --rounds 5
    python bench/speed.py --parts evaluate --evaluate-csv runs/r200.csv

Parts (``--parts``):

- ``clip``: one 2-s example clip (``examples/1001_DFA_HAP_XX.avi``), ``emo predict CLIP --json`` in
  a fresh process per round: wall seconds (start-up included, as a user sees it) and the
  ``seconds`` the JSON reports (the run itself). Target: at most 0.6 s inside the run, 1.2 s wall.
- ``bulk``: 15 real audio-video clips in one ``emo predict FOLDER --json`` call (default
  ``--workers``) against the ``fer`` package's face-only ``Video.analyze`` on the same clips, one
  ``bench/fer_runner.py`` process per clip (``--fer-every 6``: every 6th frame, ~5 fps, the frames
  emo looks at). The clips: the six CREMA-D examples (2.0-2.5 s), the same six mirrored
  (re-encoded, so decoding and detection see other pixels) and three pairs of them back to back
  (4.3-4.8 s). Target: emo at most 0.15x fer's time.
- ``evaluate``: ``emo evaluate CSV --json`` over held-out RAVDESS speech clips (``--evaluate-csv``;
  ``python scripts/heldout_lists.py`` does not write it: it is actors 02, 03, 15 and 16 of
  ``../shared/data/ravdess``, 208 clips, see ``--write-csv``; ``--write-csv-n 800`` writes 800 clips of
  any actor, for timing), this checkout with ``--workers 1`` and ``2`` against ``--before-tree`` with
  one process (it had no ``--workers``). Target: 800 clips at least 3x faster with ``--workers 2``.

``--before-tree DIR`` (``git worktree add DIR COMMIT``) runs that checkout's own code and models
in the same run (``python -m emocli`` with DIR as the working directory), alternating with this
one round by round so that load from anything else hits both alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trees import use_own_models  # bench/ is this script's folder, first on sys.path

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "examples" / "1001_DFA_HAP_XX.avi"
FER_PYTHON = REPO / "bench" / ".venv" / "bin" / "python"
PAIRS = (("ANG", "DIS"), ("FEA", "HAP"), ("NEU", "SAD"))


def timed(cmd: list[str], *, cwd: Path, stdout=subprocess.PIPE) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system of the child and its children) and stdout of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=stdout, stderr=subprocess.DEVNULL, cwd=cwd, text=True)
    out = res.stdout
    if res.returncode != 0 and not out:  # exit 1 with output: some items failed (evaluate, bulk predict)
        raise SystemExit(f"{' '.join(cmd)}: exit {res.returncode} and no output")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out or ""


def emo(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "emocli", *args]


def make_clips(folder: Path) -> list[Path]:
    """The 15 clips of the bulk part (see the module's docstring)."""
    from emocli.media.ffmpeg import ffmpeg_exe

    ff = ffmpeg_exe()
    examples = sorted((REPO / "examples").glob("*.avi"))
    clips = []
    for src in examples:
        dst = folder / src.name
        dst.write_bytes(src.read_bytes())
        clips.append(dst)
        flip = folder / f"{src.stem}_mirrored.avi"
        subprocess.run([ff, "-v", "error", "-y", "-i", str(src), "-vf", "hflip", "-c:v", "mjpeg", "-q:v", "3",
                        "-c:a", "pcm_s16le", str(flip)], check=True)
        clips.append(flip)
    for a, b in PAIRS:
        first, second = (next(p for p in examples if f"_{tag}_" in p.name) for tag in (a, b))
        dst = folder / f"pair_{a}_{b}.avi"
        subprocess.run([ff, "-v", "error", "-y", "-i", str(first), "-i", str(second), "-filter_complex",
                        "[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]",
                        "-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le", str(dst)], check=True)
        clips.append(dst)
    return clips


def part_clip(trees: dict[str, Path], rounds: int) -> list[str]:
    rows = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            wall, cpu, out = timed(emo(tree, "predict", str(CLIP), "--json"), cwd=tree)
            rows[name].append((wall, cpu, json.loads(out.splitlines()[-1]).get("seconds")))
    lines = ["| checkout | wall s (median) | CPU s (median) | inside the run s (JSON `seconds`, median) |",
             "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {statistics.median(x[0] for x in r):.2f} | {statistics.median(x[1] for x in r):.2f} "
                     f"| {statistics.median(x[2] for x in r):.3f} |")
    return lines


def part_bulk(trees: dict[str, Path], rounds: int, fer_every: int) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(prefix="emo-speed-") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        clips = make_clips(folder)
        rows = {name: [] for name in trees}
        fer = []
        for _ in range(rounds):
            for name, tree in trees.items():
                wall, cpu, out = timed(emo(tree, "predict", str(folder), "--json"), cwd=tree)
                n_ok = sum(json.loads(line).get("status") == "ok" for line in out.splitlines() if '"status"' in line)
                rows[name].append((wall, cpu, n_ok))
            if FER_PYTHON.exists():
                t = [timed([str(FER_PYTHON), str(REPO / "bench" / "fer_runner.py"), str(c), "--every",
                            str(fer_every)], cwd=REPO) for c in clips]
                fer.append((sum(x[0] for x in t), sum(x[1] for x in t)))
        fer_wall = statistics.median(x[0] for x in fer) if fer else None
        lines += [f"{len(clips)} clips, {sum(_seconds(c) for c in clips):.1f} s of video in all.", "",
                  "| run | wall s (median) | CPU s (median) | clips scored | wall / fer |", "|---|---|---|---|---|"]
        for name, r in rows.items():
            wall = statistics.median(x[0] for x in r)
            ratio = f"{wall / fer_wall:.3f}x" if fer_wall else "n/a"
            lines.append(f"| {name}: one `emo predict FOLDER --json` | {wall:.2f} | "
                         f"{statistics.median(x[1] for x in r):.2f} | {r[0][2]} | {ratio} |")
        if fer:
            lines.append(f"| fer `Video.analyze` (every {fer_every}th frame), one process per clip | {fer_wall:.2f} | "
                         f"{statistics.median(x[1] for x in fer):.2f} | {len(clips)} | 1 |")
    return lines


def _seconds(path: Path) -> float:
    from emocli.media.ffmpeg import probe

    return float(probe(path).duration or 0.0)


def part_evaluate(trees: dict[str, Path], csv_path: Path, rounds: int) -> list[str]:
    lines = ["| checkout | --workers | wall s (median) | CPU s (median) | voice accuracy | items failed |",
             "|---|---|---|---|---|---|"]
    runs = []
    for name, tree in trees.items():
        for workers in ((1, 2) if name == "this checkout" else (None,)):
            runs.append((name, tree, workers))
    rows = {r[:1] + r[2:]: [] for r in runs}
    for _ in range(rounds):
        for name, tree, workers in runs:
            cmd = emo(tree, "evaluate", str(csv_path), "--json") + ([] if workers is None else ["--workers", str(workers)])
            wall, cpu, out = timed(cmd, cwd=tree)
            rep = json.loads(out)
            rows[(name, workers)].append((wall, cpu, (rep.get("voice") or {}).get("accuracy"), rep.get("n_failed")))
    for (name, workers), r in rows.items():
        acc = r[0][2]
        lines.append(f"| {name} | {workers or '(none: one process)'} | {statistics.median(x[0] for x in r):.2f} | "
                     f"{statistics.median(x[1] for x in r):.2f} | {acc if acc is None else f'{acc:.3f}'} | {r[0][3]} |")
    return lines


HELD_OUT_ACTORS = ("02", "03", "15", "16")  # the shipped voice model's held-out RAVDESS actors


def write_csv(path: Path, n: int | None = None) -> None:
    """Actors 02, 03, 15 and 16 of ../shared/data/ravdess (the shipped voice model's held-out actors,
    208 clips); with ``n``, the first ``n`` clips of every actor in ../shared (for timing only: most
    of them trained the shipped model)."""
    from emocli.corpus.layouts import ravdess

    items = ravdess(REPO.parent / "shared" / "data" / "ravdess")
    items = items[:n] if n else [i for i in items if str(i.speaker).split("_")[-1] in HELD_OUT_ACTORS]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "speaker"])
        for i in items:
            w.writerow([i.path, i.label, "", i.speaker])
    print(f"wrote {path}: {len(items)} clips")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="clip,bulk,evaluate")
    ap.add_argument("--before-tree", type=Path, help="an older checkout to run beside this one")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the clip part (the others: --bulk-rounds, 1)")
    ap.add_argument("--bulk-rounds", type=int, default=1)
    ap.add_argument("--fer-every", type=int, default=6)
    ap.add_argument("--evaluate-csv", type=Path, default=REPO / "runs" / "r200.csv")
    ap.add_argument("--write-csv", action="store_true", help="write --evaluate-csv first (the 208 held-out clips)")
    ap.add_argument("--write-csv-n", type=int, help="write --evaluate-csv first with this many clips of any actor")
    args = ap.parse_args()
    if args.write_csv or args.write_csv_n:
        write_csv(args.evaluate_csv, args.write_csv_n)
    trees = {"this checkout": REPO}
    if args.before_tree:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.before_tree, capture_output=True,
                             text=True).stdout.strip()
        trees[f"before ({rev})"] = args.before_tree.resolve()
        use_own_models(args.before_tree)
    load0 = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average at start {load0:.2f}\n")
    parts = args.parts.split(",")
    if "clip" in parts:
        print(f"### One 2-s clip ({CLIP.name}), {args.rounds} rounds\n")
        print("\n".join(part_clip(trees, args.rounds)) + "\n")
    if "bulk" in parts:
        print("### 15 clips in one call against fer\n")
        print("\n".join(part_bulk(trees, args.bulk_rounds, args.fer_every)) + "\n")
    if "evaluate" in parts:
        print(f"### emo evaluate {args.evaluate_csv.name}\n")
        print("\n".join(part_evaluate(trees, args.evaluate_csv.resolve(), 1)) + "\n")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
