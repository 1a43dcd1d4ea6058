"""How much of a face's expression survives a smaller or grey input (issue 17, item 2: input size and colour).

Training emo-cnn at 64 or 96 px, grey or colour, takes hours per variant on 2 CPU cores, so the
choice is first measured by proxy: the RAF-DB MobileFaceNet that emo ships (trained on aligned
112x112 colour faces) scores the held-out calib halves of AffectNet, SFEW and RAF-DB (the
halves of ``scripts/face_head.py``: same seeds) once as it is meant to be fed, and once per
degraded input: the aligned 112x112 crop reduced to S x S (area interpolation) and enlarged back,
optionally made grey. What a network that sees S x S grey faces could at best read is bounded
by what survives that reduction; a network trained at that size adapts to it, so these
figures bound the loss from below only roughly, and they say nothing about emo-cnn's capacity.
Note the sources: RAF-DB's aligned faces are 100x100 and AffectNet's 96x96, so above 96 px
nothing is gained on them; SFEW's are film frames, larger.

    python scripts/input_size_proxy.py ../shared/data [--json runs/input_size_proxy.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emocli.face.experts import OnnxExpert, softmax
from emocli.train.calibration import align_crops, face_sets, rafdb_halves, report
from emocli.media.ffmpeg import read_image

VARIANTS = (("112 colour (as trained)", None, True), ("96 colour", 96, True), ("96 grey", 96, False),
            ("64 colour", 64, True), ("64 grey", 64, False), ("48 colour", 48, True), ("48 grey", 48, False))


def degrade(crops: np.ndarray, side: int | None, colour: bool) -> np.ndarray:
    """(n, 112, 112, 3) uint8 crops reduced to ``side`` px and back, grey unless ``colour``."""
    import cv2

    out = []
    for c in crops:
        h, w = c.shape[:2]
        if side is not None:
            c = cv2.resize(cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA), (w, h),
                           interpolation=cv2.INTER_LINEAR)
        if not colour:
            c = cv2.cvtColor(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out.append(c)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the shared data folder (affectnet/, sfew/, rafdb/)")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()

    from emocli.bundle import models_dir
    from emocli.face.experts import RAFDB_FILE, YuNetLandmarks
    from emocli.face.detect import YUNET_FILE

    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    expert = OnnxExpert(args.bundle / RAFDB_FILE)
    sets = face_sets(args.data)
    rafdb_halves(sets, {"rafdb-heldout": {}})  # no features here: only the halves' paths and labels
    out = {}
    for name in ("affectnet-calib", "sfew-calib", "rafdb-calib"):
        paths, y = sets[name]
        t0 = time.perf_counter()
        crops = np.asarray(align_crops([read_image(p) for p in paths], landmarker)[0])
        print(f"{name}: {len(paths)} faces aligned in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for label, side, colour in VARIANTS:
            p = softmax(expert.logits(degrade(crops, side, colour)))
            sc = report(y, p)
            out[f"{name} / {label}"] = sc
            print(f"{name:<16} {label:<24} accuracy {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
