"""Turn Kaggle's ``fer2013.csv`` into the folder-per-class layout emo reads.

    python scripts/fer2013_csv_to_folders.py fer2013.csv data/fer2013

The CSV has one row per face: ``emotion`` (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad,
5 surprise, 6 neutral), ``pixels`` (2,304 grey values, 48 x 48, row by row) and ``Usage``
(Training, PublicTest, PrivateTest). Each row becomes ``OUT/<split>/<emotion>/<Usage>_<row>.png``
with split train (Training), val (PublicTest, the usual validation split) or test
(PrivateTest), so that ``emo train-video OUT/train`` and ``emo evaluate OUT/val`` work as they
are. Existing files are overwritten; rows that are not 48 x 48 are reported and skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

# Kaggle's label codes, in their order; folder names as the FER2013 image releases spell them.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
SIDE = 48  # pixels


def convert(csv_path: Path, out: Path) -> dict[str, int]:
    """Write every row of ``csv_path`` as a PNG under ``out``; return the count per split (and ``skipped``)."""
    import cv2

    counts: dict[str, int] = {"skipped": 0}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{csv_path}: not FER2013's CSV (no column {', '.join(sorted(missing))}); "
                             "expected the header emotion,pixels,Usage")
        for row_no, row in enumerate(reader):
            try:
                label = FER2013_CLASSES[int(row["emotion"])]
                pixels = np.array(row["pixels"].split(), dtype=np.uint8)
                split = SPLITS[row["Usage"].strip().lower()]
            except (ValueError, IndexError, KeyError) as exc:
                print(f"{csv_path} row {row_no + 2}: skipped ({exc!r})", file=sys.stderr)
                counts["skipped"] += 1
                continue
            if pixels.size != SIDE * SIDE:
                print(f"{csv_path} row {row_no + 2}: skipped ({pixels.size} pixels, not {SIDE}x{SIDE})",
                      file=sys.stderr)
                counts["skipped"] += 1
                continue
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(folder / f"{row['Usage'].strip()}_{row_no:05d}.png"), pixels.reshape(SIDE, SIDE)):
                raise SystemExit(f"{folder}: could not write an image there")
            counts[split] = counts.get(split, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, help="fer2013.csv (Kaggle's ICML 2013 challenge file)")
    ap.add_argument("out", type=Path, help="output folder (train/, val/, test/ are made in it)")
    args = ap.parse_args()
    counts = convert(args.csv, args.out)
    print(", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
