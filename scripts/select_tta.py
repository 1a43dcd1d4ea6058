"""Choose the face model's test-time views on held-out *training* images, never the test split.

    python scripts/select_tta.py models/default ../shared/data/fer2013/train [--write]

Rebuilds exactly the held-out part `emo train-video` kept aside (stratified, the share and
seed recorded in face.json), scores it with each candidate (no TTA, mirror, mirror + centre
zoom, mirror + zoom + four shifted crops), prints the accuracies, and with --write stores the best in face.json and refreshes the
bundle manifest.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from emocli.bundle import write_manifest
from emocli.errors import DatasetError
from emocli.files import atomic_write_text
from emocli.labels import LABELS
from emocli.media import read_image
from emocli.metrics import classification_report
from emocli.training import heldout_part
from emocli.video_model import FaceModel, prepare_faces

# name: (mirror, centre zoom, shift)
CANDIDATES = {"none": (False, 0.0, 0.0), "flip": (True, 0.0, 0.0), "flip+zoom0.1": (True, 0.1, 0.0),
              "flip+zoom0.2": (True, 0.2, 0.0), "flip+zoom0.1+shift0.05": (True, 0.1, 0.05),
              "flip+zoom0.1+shift0.1": (True, 0.1, 0.1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("train", type=Path, help="the folder train-video was trained on")
    ap.add_argument("--write", action="store_true", help="store the best choice in the bundle")
    args = ap.parse_args()

    meta = json.loads((args.bundle / "face.json").read_text())
    try:
        items, y, ho = heldout_part(args.train, meta)
    except DatasetError as exc:
        raise SystemExit(str(exc)) from None
    model = FaceModel.load(args.bundle)
    base = model.preprocessing
    x = prepare_faces([read_image(items[i].path) for i in ho], replace(base, flip_tta=False, tta_zoom=0.0,
                                                                        tta_shift=0.0))
    results, preds = {}, {}
    for name, (flip, zoom, shift) in CANDIDATES.items():
        model.preprocessing = replace(base, flip_tta=flip, tta_zoom=zoom, tta_shift=shift)
        pred = preds[name] = model.score_inputs(x, batch_size=256).argmax(1)
        results[name] = float(np.mean(pred == y[ho]))
        print(f"{name:>14}: held-out accuracy {results[name]:.4f} (n={len(ho)})")
    best = max(results, key=results.get)
    print(f"best: {best}")
    if args.write:
        flip, zoom, shift = CANDIDATES[best]
        meta["preprocessing"] = replace(base, flip_tta=flip, tta_zoom=zoom, tta_shift=shift).to_dict()
        # the held-out confusion with the chosen views: decision fusion derives its weights from it
        meta["validation"] = classification_report(y[ho], preds[best], model.labels)
        meta["tta_selection"] = {"holdout_accuracy": results, "chosen": best,
                                 "command": f"python scripts/select_tta.py {args.bundle} {args.train} --write"}
        atomic_write_text(args.bundle / "face.json", json.dumps(meta, indent=2))
        write_manifest(args.bundle, labels=list(LABELS))
        print(f"wrote {args.bundle}/face.json")


if __name__ == "__main__":
    main()
