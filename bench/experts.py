"""What the second face expert costs: `emo predict` with both experts beside emo-cnn alone, same run.

    python bench/experts.py                    # the six examples, 3 rounds, prints a Markdown table
    python bench/experts.py --rounds 5 --extra "--pooling expressive"
    python bench/experts.py --before /tmp/before   # + a bundle with the earlier voice model, emo-cnn alone
    python bench/experts.py --before-tree /tmp/old  # + an older checkout of emo (code and its models)

``--before``: the shipped bundle with ``voice.json``, ``voice.npz`` and ``voice.skops`` taken from
commit 8ef9888 (the 289-statistics SVM) and the manifest rewritten: what `emo predict` ran before
the face experts and the speech encoder. ``--before-tree``: another checkout of the repository
(``git worktree add /tmp/old COMMIT``), run with its own code and shipped models.

Each command runs in a fresh process (start-up included, as a user sees it); the two variants
alternate clip by clip so that load from anything else hits both alike. Wall and CPU seconds
(user + system of the child) are medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from trees import use_own_models  # bench/ is this script's folder, first on sys.path

REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str], tree: Path | None = None) -> tuple[float, float]:
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   cwd=tree or REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extra", default="", help="more emo predict options for every variant")
    ap.add_argument("--before", type=Path, help="also time this bundle with emo-cnn alone: the models as they "
                                                "were before the experts and the speech encoder (see --help)")
    ap.add_argument("--before-tree", type=Path, help="also time this other checkout of emo (its code and models), "
                                                     "all experts as it ships them")
    args = ap.parse_args()
    clips = sorted((REPO / "examples").glob("*.avi"))
    emo = [sys.executable, "-m", "emocli", "predict", "--json", *shlex.split(args.extra)]
    variants = {"emo-cnn alone": ["--face-experts", "emo-cnn"], "emo-cnn + rafdb (default)": []}
    if args.before is not None:
        variants = {"before: emo-cnn, 289-statistics voice": ["--model", str(args.before), "--face-experts",
                                                               "emo-cnn"], **variants}
    trees = {name: None for name in variants}
    if args.before_tree is not None:
        name = f"before-tree {args.before_tree.name}"
        tree = args.before_tree.resolve()
        use_own_models(tree)  # its speech encoder and detectors too, not only its bundle
        variants = {name: ["--model", str(tree / "models" / "default")], **variants}
        trees = {name: tree, **trees}
    run(emo + [str(clips[0])])  # warm the file cache
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for clip in clips:
            for name, extra in variants.items():
                times[name].append(run(emo + extra + [str(clip)], trees[name]))
    load1 = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average "
          f"{load0:.2f} at start, {load1:.2f} at end; {len(clips)} clips x {args.rounds} rounds")
    print(f"command: {' '.join(shlex.quote(c) for c in emo[1:])} [variant options] CLIP\n")
    print("| variant | wall s (median) | CPU s (median) |")
    print("|---|---|---|")
    base = None
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        ratio = "" if base is None else f" ({wall / base[0]:.2f}x wall, {cpu / base[1]:.2f}x CPU)"
        base = base or (wall, cpu)
        print(f"| {name} | {wall:.2f} | {cpu:.2f}{ratio} |")


if __name__ == "__main__":
    main()
