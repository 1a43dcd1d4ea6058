"""Issue 34, item 2: which network should read faces under 64 px? Measured on small faces, chosen on calib sets.

The exploration before ``emo calibrate-small-faces`` (which fits what ships, by kind of face): one
weight for all four sets, the face head with its floor lowered beside it, and ``--expert`` for a
Keras MobileFaceNet (``scripts/low_res_expert.py``'s) in place of the bundle's.

Faces under ``EXPERT_MIN_FACE`` (64 px) are scored by emo-cnn alone today. This scores small faces
the way ``predict --no-detect`` would see them, emo-cnn on the crop and a MobileFaceNet on the crop
aligned as predict aligns it (YuNet's landmarks, else the average crop's), and mixes the two
(a weighted average of temperature-calibrated probabilities, as ``ExpertSet.mix`` does):

- FER2013: emo-cnn's own held-out part of fer2013/train (2,859 faces, 48 px grey) is a calib set;
  ``fer2013/val`` is a test set;
- AffectNet, SFEW, RAF-DB: their calib and test halves, each face shrunk to ``--side`` px (area
  interpolation, colour kept), as a face far from the camera is.

The temperature of each network and the mix weight are chosen on the calib sets (mean UAR over the
four); the test sets are scored once, with ``--test``, after the choice.

    python scripts/small_faces.py ../shared/data --expert runs/expert_fer/expert.keras --test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    from emocli.bundle import DEFAULT_BUNDLE, models_dir
    from emocli.corpus.layouts import load_corpus
    from emocli.face.detect import YUNET_FILE
    from emocli.face.experts import RAFDB_FILE, OnnxExpert, YuNetLandmarks, fit_temperature, softmax, temper
    from emocli.face.model import FaceModel
    from emocli.labels import LABELS
    from emocli.media.ffmpeg import read_image
    from emocli.report.metrics import classification_report
    from emocli.train.calibration import align_crops, face_sets, rafdb_halves
    from emocli.train.data import heldout_part
    from emocli.train.small_faces import shrink

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--expert", type=Path, help="a Keras MobileFaceNet (scripts/low_res_expert.py's expert.keras); "
                                                "default: the bundle's ONNX expert")
    ap.add_argument("--side", type=int, default=48)
    ap.add_argument("--cache", type=Path, default=Path("runs/small_faces"))
    ap.add_argument("--test", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    sets = face_sets(args.data)
    rafdb_halves(sets, {"rafdb-heldout": {}})
    meta = json.loads((args.bundle / "face.json").read_text())
    items, y, ho = heldout_part(args.data / "fer2013" / "train", meta)
    sets["fer-calib"] = ([items[i].path for i in ho], y[ho])
    val = load_corpus(args.data / "fer2013" / "val")
    sets["fer-test"] = ([it.path for it in val], np.array([LABELS.index(it.label) for it in val]))
    calib = ("affectnet-calib", "sfew-calib", "rafdb-calib", "fer-calib")
    test = ("affectnet-test", "sfew-test", "rafdb-test", "fer-test")

    fm = FaceModel.load(args.bundle, runtime=True)
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    if args.expert:
        import keras

        net = keras.models.load_model(args.expert, compile=False)
        expert_logits = lambda x: np.asarray(net.predict((x.astype(np.float32) / 255 - .5) / .5,  # noqa: E731
                                                         batch_size=128, verbose=0)[1])
        tag = args.expert.parent.name
    else:
        onnx = OnnxExpert(args.bundle / RAFDB_FILE)
        expert_logits = onnx.logits
        tag = "bundle"
    args.cache.mkdir(parents=True, exist_ok=True)

    def head_scores(imgs):
        """The bundle's face head on small faces (predict's own path, its 64-px floor lowered)."""
        from emocli.face import experts
        from emocli.pipeline import faces
        from emocli.pipeline.core import Pipeline
        from emocli.pipeline.options import Options

        floor = experts.EXPERT_MIN_FACE
        experts.EXPERT_MIN_FACE = faces.EXPERT_MIN_FACE = 1  # both modules' names: the floor is read in each
        try:
            stage = Pipeline(args.bundle, Options(detect=False)).face
            return np.concatenate([stage.score_crops(imgs[k:k + 256]) for k in range(0, len(imgs), 256)])
        finally:
            experts.EXPERT_MIN_FACE = faces.EXPERT_MIN_FACE = floor

    def scores(name):
        path = args.cache / f"{name}.{args.side}.{tag}.npz"
        if path.is_file():
            with np.load(path) as z:
                return z["cnn"], z["expert"], z["head"]
        imgs = [shrink(read_image(p), args.side) for p in sets[name][0]]
        cnn = np.concatenate([fm.predict_proba(imgs[k:k + 512], batch_size=128) for k in range(0, len(imgs), 512)])
        aligned, _, _ = align_crops(imgs, landmarker)
        ex = softmax(expert_logits(np.asarray(aligned, np.uint8)))
        head = head_scores(imgs) if not args.expert else np.full_like(cnn, np.nan)
        np.savez(path, cnn=cnn, expert=ex, head=head)
        log(f"{name}: {len(imgs)} faces scored")
        return cnn, ex, head

    s = {n: scores(n) for n in calib}
    yc = {n: sets[n][1] for n in calib}
    t_cnn = fit_temperature(np.concatenate([s[n][0] for n in calib]), np.concatenate([yc[n] for n in calib]))
    t_exp = fit_temperature(np.concatenate([s[n][1] for n in calib]), np.concatenate([yc[n] for n in calib]))

    def mixed(pair, w):  # w: emo-cnn's weight
        return w * temper(pair[0], t_cnn) + (1 - w) * temper(pair[1], t_exp)

    rows = []
    for w in np.round(np.arange(0, 1.001, 0.1), 2):
        uars = {n: classification_report(yc[n], mixed(s[n], w).argmax(1), LABELS)["uar"] for n in calib}
        rows.append({"cnn_weight": float(w), **uars, "mean": float(np.mean(list(uars.values())))})
        log(f"emo-cnn weight {w:.1f}: " + " ".join(f"{n} {u:.3f}" for n, u in uars.items())
            + f" mean {rows[-1]['mean']:.3f}")
    if not args.expert:
        uars = {n: classification_report(yc[n], s[n][2].argmax(1), LABELS)["uar"] for n in calib}
        rows.append({"cnn_weight": "head", **uars, "mean": float(np.mean(list(uars.values())))})
        log("the face head: " + " ".join(f"{n} {u:.3f}" for n, u in uars.items()) + f" mean {rows[-1]['mean']:.3f}")
    best = max((r for r in rows if r["cnn_weight"] != "head"), key=lambda r: r["mean"])
    out = {"side": args.side, "expert": str(args.expert or args.bundle / RAFDB_FILE), "t_cnn": t_cnn, "t_expert": t_exp,
           "calib": rows, "chosen_cnn_weight": best["cnn_weight"]}
    log(f"chosen: emo-cnn weight {best['cnn_weight']} (temperatures {t_cnn:.2f}, {t_exp:.2f})")
    if args.test:
        out["test"] = {}
        for n in test:
            st = scores(n)
            out["test"][n] = {}
            for what, p in (("emo-cnn", st[0]), ("expert", st[1]), ("mix", mixed(st, best["cnn_weight"])),
                            ("head", st[2])):
                if np.isnan(p).any():
                    continue
                rep = classification_report(sets[n][1], p.argmax(1), LABELS)
                out["test"][n][what] = rep
                log(f"{n} {what}: accuracy {rep['accuracy']:.3f} UAR {rep['uar']:.3f} recall "
                    + " ".join(f"{k[:3]} {v:.2f}" for k, v in rep["recall"].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
