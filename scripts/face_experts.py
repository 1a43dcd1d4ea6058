"""Calibrate and weigh the face experts on held-out faces neither network trained on: now
``emo calibrate-experts`` (:mod:`emocli.train.calibration`); this file keeps the old command line
and the names other scripts import (``scripts/face_head.py``, ``fusion_rule.py``, ...).

    python scripts/face_experts.py ../shared/data --bundle models/default [--write] [--json OUT]
    # is
    emo calibrate-experts ../shared/data --model models/default [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emocli.train.calibration import (CACHE, HELDOUT, align_crops, calibrate_experts, combined, corpus_parts,
                                     crop_landmarks, heldout_sets, report, score_set, with_prior)

__all__ = ["HELDOUT", "align_crops", "combined", "corpus_parts", "crop_landmarks", "heldout_sets", "report",
           "score_set", "with_prior"]  # what other scripts import from here


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the shared data folder (fer2013/, affectnet/, sfew/)")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--cache", type=Path, default=CACHE, help="per-image score cache folder")
    ap.add_argument("--write", action="store_true", help="write experts.json into the bundle")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args()
    out = calibrate_experts(args.data, args.bundle, cache=args.cache, write=args.write)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
