"""Issue 34, item 2: does the MobileFaceNet read FER2013's 48-px grey faces once its last stage has seen them?

FER2013-sized faces (and faces under 64 px in video) are scored by emo-cnn alone today, because the
RAF-DB MobileFaceNet learned from colour faces of 100 px and more. This measures the other route the
issue names, "the fine-tuned network on upscaled crops": ``emo train-expert``'s training (the last
stage on frozen trunk outputs, 1/sqrt(n) per corpus x class) with FER2013's training faces added,
upscaled to 112 px as ``predict`` aligns a crop YuNet finds no landmarks in. emo-cnn's own held-out
part of FER2013/train (face.json's, 2,859 faces) is the FER2013 calib set: every choice (the epoch,
the weight of each network in the low-res mix) is made on the calib sets; ``fer2013/val`` is scored
once, with ``--test``, after the choice.

    python scripts/low_res_expert.py ../shared/data --out runs/expert_fer [--test]

Writes ``--out``/report.json (each epoch, the mix's curve, the test figures) and ``--out``/expert.keras
(the kept epoch's network; ``scripts/small_faces.py --expert`` scores small faces with it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import keras

    from emocli.bundle import DEFAULT_BUNDLE, models_dir
    from emocli.corpus.layouts import load_corpus
    from emocli.face.detect import YUNET_FILE
    from emocli.face.experts import RAFDB_FILE, YuNetLandmarks, softmax
    from emocli.face.mobilefacenet import LAST_STAGE, to_keras
    from emocli.face.model import FaceModel
    from emocli.labels import LABELS
    from emocli.report.metrics import classification_report
    from emocli.train.calibration import face_sets, rafdb_halves
    from emocli.train.data import face_probabilities, heldout_part
    from emocli.train.expert import CALIB, TRAIN, aligned_faces, train_last_stage, trunk_outputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--out", type=Path, default=Path("runs/expert_fer"))
    ap.add_argument("--cache", type=Path, default=Path("runs/face_expert"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--fer-share", type=float, default=1.0, help="share of FER2013's training faces used")
    ap.add_argument("--limit", type=int, default=0, help="at most this many faces per set (a smoke run)")
    ap.add_argument("--test", action="store_true", help="score fer2013/val once, after the choices")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    sets = face_sets(args.data)
    rafdb_halves(sets, {"rafdb-heldout": {}})
    fer = args.data / "fer2013" / "train"
    meta = json.loads((args.bundle / "face.json").read_text())
    items, y, ho = heldout_part(fer, meta)
    tr = np.setdiff1d(np.arange(len(items)), ho)
    if args.fer_share < 1:
        tr = np.sort(np.random.default_rng(0).choice(tr, int(len(tr) * args.fer_share), replace=False))
    sets["fer-train"] = ([items[i].path for i in tr], y[tr])
    sets["fer-calib"] = ([items[i].path for i in ho], y[ho])
    val = load_corpus(args.data / "fer2013" / "val")
    sets["fer-test"] = ([it.path for it in val], np.array([LABELS.index(it.label) for it in val]))
    if args.limit:
        sets = {n: (p[:args.limit], y[:args.limit]) for n, (p, y) in sets.items()}
    train = (*TRAIN, "fer-train")
    calib = (*CALIB, "fer-calib")

    keras.utils.set_random_seed(0)
    net = to_keras(args.bundle / RAFDB_FILE)
    trunk = keras.Model(net.inputs[0], net.get_layer(LAST_STAGE).output)
    last = keras.Model(net.get_layer(LAST_STAGE).output, net.outputs)
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    t0 = time.perf_counter()
    names = train + calib + (("fer-test",) if args.test else ())
    acts = {}
    for n in names:
        acts[n] = trunk_outputs(trunk, aligned_faces(n, sets[n][0], landmarker, args.cache))
        log(f"{n}: {len(acts[n])} trunk outputs ({time.perf_counter() - t0:.0f} s)")

    def expert_logits(name):
        return np.asarray(last.predict(acts[name].astype(np.float32), batch_size=256, verbose=0)[1])

    history, chosen, _ = train_last_stage(last, acts, sets, list(train), calib, epochs=args.epochs,
                                          learning_rate=args.learning_rate, batch_size=64)

    # the low-res mix: p ~ p_cnn^a * p_expert^(1-a), a chosen on fer-calib
    fm = FaceModel.load(args.bundle, runtime=True)
    p_cnn = {n: face_probabilities(fm, sets[n][0]) for n in ("fer-calib",) + (("fer-test",) if args.test else ())}
    p_exp = {n: softmax(expert_logits(n)) for n in p_cnn}
    rows = []
    for a in np.round(np.arange(0, 1.01, 0.1), 2):
        mix = a * np.log(np.clip(p_cnn["fer-calib"], 1e-12, None)) + (1 - a) * np.log(np.clip(p_exp["fer-calib"], 1e-12, None))
        rep = classification_report(sets["fer-calib"][1], mix.argmax(1), LABELS)
        rows.append({"a": float(a), "accuracy": rep["accuracy"], "uar": rep["uar"]})
        log(f"a {a:.1f} (emo-cnn's weight): fer-calib accuracy {rep['accuracy']:.3f} UAR {rep['uar']:.3f}")
    chosen = max(rows, key=lambda r: r["accuracy"])
    report = {"epochs": history, "chosen_epoch": chosen, "mix": rows, "chosen_a": chosen["a"],
              "trained_on": {n: len(sets[n][1]) for n in train}}
    if args.test:
        a = chosen["a"]
        for what, p in (("emo-cnn", p_cnn["fer-test"]), ("expert", p_exp["fer-test"]),
                        (f"mix a={a}", np.exp(a * np.log(np.clip(p_cnn["fer-test"], 1e-12, None))
                                              + (1 - a) * np.log(np.clip(p_exp["fer-test"], 1e-12, None))))):
            rep = classification_report(sets["fer-test"][1], p.argmax(1), LABELS)
            report[f"fer2013/val {what}"] = rep
            log(f"fer2013/val {what}: accuracy {rep['accuracy']:.3f} UAR {rep['uar']:.3f} recall "
                + " ".join(f"{k[:3]} {v:.2f}" for k, v in rep["recall"].items()))
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    net.save(args.out / "expert.keras")
    log(f"wrote {args.out}/report.json and expert.keras")


if __name__ == "__main__":
    main()
