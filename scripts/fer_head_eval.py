"""Would a head on both face networks' features help FER2013-like faces (48 px grey)? (issue 11, item 4)

For faces under 64 px, and grey ones without the face head, emo scores emo-cnn alone: on
``fer2013/val`` 0.655 accuracy / 0.639 UAR with its prior adjustment (tau 0.8). The RAF-DB
MobileFaceNet alone reads these faces poorly (about 0.45: it learned from 100 px colour faces),
but its embedding may still carry what emo-cnn misses. This script measures a multinomial
logistic regression on the standardised concatenation of emo-cnn's 256 ``fc2`` features (mirror
views) and the MobileFaceNet's 512-d embedding (of the face warped to its template, upscaled),
fitted on the part of FER2013/train that emo-cnn's training held out (face.json's holdout,
rebuilt by :func:`emocli.train.face.heldout_part`: emo-cnn never trained on it, so its features
there are those of unseen faces). C and the class weighting are chosen by stratified 5-fold
CV on that part (mean of accuracy and UAR, since the issue's target asks for both);
``fer2013/val`` is scored once, after the choice. A head on emo-cnn's features alone separates
what refitting gives from what the second network gives.

    python scripts/fer_head_eval.py ../shared/data [--cache runs/fer_head]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emocli.face.experts import OnnxExpert
from emocli.train.calibration import report
from emocli.train.head import extract  # the face head's per-face features, cached per set
from emocli.labels import LABELS

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def choose_and_fit(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """(fitted pipeline, choice, CV table): C and class weighting by stratified 5-fold CV on (x, y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    table = []
    for weight in (None, "balanced"):
        for c in C_GRID:
            pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=weight, max_iter=3000))
            s = report(y, cross_val_predict(pipe, x, y, cv=cv, method="predict_proba"))
            table.append({"C": c, "class_weight": weight, "accuracy": s["accuracy"], "uar": s["uar"]})
    best = max(table, key=lambda r: (r["accuracy"] + r["uar"]) / 2)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=best["C"], class_weight=best["class_weight"],
                                                              max_iter=3000)).fit(x, y)
    return pipe, best, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the shared data folder (fer2013/)")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--cache", type=Path, default=Path("runs/fer_head"))
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()

    from emocli.bundle import models_dir
    from emocli.face.experts import RAFDB_FILE, YuNetLandmarks
    from emocli.face.detect import YUNET_FILE
    from emocli.train.data import heldout_part, training_images

    meta = json.loads((args.bundle / "face.json").read_text())
    items, y_all, ho = heldout_part(args.data / "fer2013" / "train", meta)
    val_items, _ = training_images(args.data / "fer2013" / "val")
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    expert = OnnxExpert(args.bundle / RAFDB_FILE)
    hold = extract("fer2013-train-heldout", [items[i].path for i in ho], args.bundle, landmarker, expert,
                   cache=args.cache)
    val = extract("fer2013-val", [it.path for it in val_items], args.bundle, landmarker, expert, cache=args.cache)
    y_hold = y_all[ho]
    y_val = np.array([LABELS.index(it.label) for it in val_items])

    prior = meta["prior_adjustment"]
    log_prior = np.log([prior["prior"][lab] for lab in LABELS])
    out = {"emo-cnn alone (mirror views, prior tau %.1f)" % prior["tau"]:
           report(y_val, np.log(np.clip(val["cnn"], 1e-12, None)) - prior["tau"] * log_prior),
           "emo-cnn alone (mirror views, no prior)": report(y_val, val["cnn"])}
    for name, keys in (("head on emo-cnn fc2", ("cnn_feat",)), ("head on emo-cnn fc2 + MobileFaceNet", ("cnn_feat", "raf_emb"))):
        pipe, best, table = choose_and_fit(np.hstack([hold[k] for k in keys]), y_hold)
        s = report(y_val, pipe.predict_proba(np.hstack([val[k] for k in keys])))
        out[name] = {**s, "chosen": best, "cv": table}
        print(f"{name}: CV chose C {best['C']:g}, class weight {best['class_weight']} (CV accuracy "
              f"{best['accuracy']:.3f}, UAR {best['uar']:.3f})", flush=True)
    for name, s in out.items():
        print(f"fer2013/val  {name:<45} accuracy {s['accuracy']:.3f}  UAR {s['uar']:.3f}  recall "
              + " ".join(f"{s['recall'][lab]:.2f}" for lab in LABELS), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
