"""Could grey faces that hold no more detail than a 48-px face be sent to emo-cnn alone?

FER2013's 48-px grey faces, magnified in a video, are scored by the face head, which reads them
worse than emo-cnn alone (docs/experiments.md, "Keep the expressive moments"). A router on detail
alone sends too many colour faces away; this measures the same rule restricted to grey faces.
Detail is the share of a face's variance lost by a round trip through 48 px wide (area down,
bicubic up), computed on the face as the benchmark shows it (240 px wide, bicubic). It prints,
for a few thresholds, the share of FER2013's magnified held-out faces the rule would route and
the share of the calib halves' grey faces (real resolution, where the head is far better) it
would route too. The calib halves are where such a choice is made; the test halves are not read.

    python scripts/head_lowres.py ../shared/data ...      # writes runs/lowres/fer2013-heldout-x5
    python scripts/heldout_lists.py ../shared/data --out runs/heldout
    python scripts/grey_detail.py --fer-x5 runs/lowres/fer2013-heldout-x5 --heldout runs/heldout
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
# run as python scripts/NAME.py, this script's folder is first on sys.path
from head_lowres import LOW_WIDTH, magnified

from emocli.media.ffmpeg import read_image

THRESHOLDS = (0.002, 0.003, 0.004, 0.005, 0.006, 0.008)


def detail(img: np.ndarray) -> float:
    """Share of the grey image's variance lost by a round trip through LOW_WIDTH px wide."""
    g = (img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)).astype(np.float32)
    h, w = g.shape
    small = cv2.resize(g, (LOW_WIDTH, max(1, round(h * LOW_WIDTH / w))), interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return float(((g - back) ** 2).mean() / max(float(g.var()), 1e-6))


def is_grey(img: np.ndarray, tol: int = 2) -> bool:
    if img.ndim == 2:
        return True
    a = img.astype(np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= tol and np.abs(a[..., 1] - a[..., 2]).max() <= tol)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer-x5", type=Path, required=True, help="FER2013's held-out faces, magnified (PNG)")
    ap.add_argument("--heldout", type=Path, required=True, help="the folder heldout_lists.py wrote")
    args = ap.parse_args()
    fer = np.array([detail(read_image(p)) for p in sorted(args.fer_x5.glob("*.png"))])
    print(f"FER2013 held-out x5: {len(fer)} faces, detail percentiles 10/50/90 "
          f"{np.percentile(fer, [10, 50, 90]).round(4).tolist()}")
    grey = []
    for part in ("affectnet-calib", "sfew-calib", "rafdb-calib"):
        rows = list(csv.reader(open(args.heldout / f"{part}.csv")))[1:]
        imgs = [read_image(Path(r[0])) for r in rows]
        part_grey = [detail(magnified(img)) for img in imgs if is_grey(img)]
        print(f"{part}: {len(imgs)} faces, {len(part_grey)} grey")
        grey += part_grey
    grey_arr = np.array(grey)
    print("threshold | FER2013 x5 routed to emo-cnn | calib grey faces routed too")
    for t in THRESHOLDS:
        print(f"{t} | {(fer < t).mean():.3f} | {(grey_arr < t).mean():.3f} ({int((grey_arr < t).sum())}/{len(grey_arr)})")


if __name__ == "__main__":
    main()
