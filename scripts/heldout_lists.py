"""Write the colour corpora's held-out halves as CSV manifests, and one exclude list of all of them.

The halves are exactly those of ``emo calibrate-experts`` and ``scripts/face_head.py``
(:func:`emocli.train.calibration.face_sets` and ``rafdb_halves``:
15 % of affectnet/train, 30 % of sfew/Train, 15 % of rafdb/train, stratified with seed 0, each
split into a calib and a test half with seed 1). A network trained on these corpora with
``emo train-video --exclude OUT/exclude.csv`` never sees them, in training or in the held-out part
that picks its epoch, so the face head's choices (calib halves) and its report (test halves)
stay on unseen faces.

    python scripts/heldout_lists.py ../shared/data --out runs/heldout
    # -> runs/heldout/{affectnet,sfew,rafdb}-{calib,test}.csv (path,label) and exclude.csv (path,label,set)

Paths are written absolute, so the manifests can move.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from emocli.train.calibration import face_sets, rafdb_halves
from emocli.labels import LABELS

HALVES = [f"{c}-{h}" for c in ("affectnet", "sfew", "rafdb") for h in ("calib", "test")]


def heldout_halves(data: Path) -> dict[str, tuple[list[Path], list[int]]]:
    """{"<corpus>-calib"|"<corpus>-test": (paths, integer labels)} for affectnet, sfew and rafdb."""
    sets = face_sets(data)
    rafdb_halves(sets, {"rafdb-heldout": {}})  # no features: only the paths and labels are split
    return {name: sets[name] for name in HALVES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the shared data folder (affectnet/, sfew/, rafdb/)")
    ap.add_argument("--out", type=Path, default=Path("runs/heldout"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    halves = heldout_halves(args.data)
    with open(args.out / "exclude.csv", "w", newline="") as ex:
        exw = csv.writer(ex)
        exw.writerow(["path", "label", "set"])
        for name, (paths, y) in halves.items():
            with open(args.out / f"{name}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "label"])
                for p, k in zip(paths, y):
                    row = [str(Path(p).resolve()), LABELS[int(k)]]
                    w.writerow(row)
                    exw.writerow(row + [name])
            print(f"{name}: {len(paths)} faces", file=sys.stderr)
    print(f"wrote {args.out}/exclude.csv ({sum(len(p) for p, _ in halves.values())} faces) and one CSV per half",
          file=sys.stderr)


if __name__ == "__main__":
    main()
