"""Write a manifest's face images shrunk to a side, as a new manifest, to score faces far from the camera.

``emo calibrate-small-faces`` chooses how faces under 64 px are scored on the calib halves shown
small; this writes the test halves (or any ``path,label`` CSV) the same way (area interpolation,
colour kept, PNG so nothing else is lost), for ``emo evaluate --no-detect``:

    python scripts/shrink_faces.py runs/heldout/affectnet-test.csv --side 48 --out runs/small48/affectnet-test
    emo evaluate runs/small48/affectnet-test/manifest.csv --no-detect --modality face
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2

from emocli.media.ffmpeg import read_image
from emocli.train.small_faces import shrink


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="CSV with path and label columns")
    ap.add_argument("--side", type=int, default=48)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(args.manifest.open()))
    with (args.out / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for k, r in enumerate(rows):
            img = shrink(read_image(Path(r["path"])), args.side)
            dst = (args.out / f"{k:05d}_{Path(r['path']).stem}.png").resolve()
            cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            w.writerow([dst, r["label"]])
    print(f"wrote {len(rows)} faces at {args.side} px and {args.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
