"""Does fine-tuning the RAF-DB MobileFaceNet's last stage on the face corpora help the face head?

A first, cheap step of issue 34, the experiment ``emo train-expert`` came from: the network
rebuilt in Keras (``emocli.face.mobilefacenet``), its
trunk (everything up to the last 14x14 block) frozen and run once per face, its last stage (the
7x7 blocks, the global depthwise convolution, the 512-d embedding and the classifier) trained on
the face head's training parts (AffectNet, SFEW and RAF-DB training faces, aligned as ``predict``
aligns them; loss weighted 1/sqrt(count) per corpus x class) with the RAF-DB classifier's own
cross-entropy. After each epoch the face head is refitted as ``emo train-head`` fits it (the new
embedding beside emo-cnn's cached fc2 features, C chosen on the calib halves' mean UAR) and its
calib figures are printed beside the shipped head's, refitted the same way on the shipped
embedding. The test halves are not read.

    python scripts/mobilefacenet_finetune.py ../shared/data --epochs 3 --work runs/mfn_ft
(needs ``pip install 'emo[train]'``, the face head's feature cache in runs/face_head, `emo train-head`)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emocli.bundle import DEFAULT_BUNDLE, models_dir
from emocli.face.detect import YUNET_FILE
from emocli.face.experts import RAFDB_FILE, YuNetLandmarks
from emocli.face.mobilefacenet import LAST_STAGE, to_keras
from emocli.labels import LABELS
from emocli.report.metrics import classification_report
from emocli.train.calibration import face_sets, rafdb_halves
from emocli.train.expert import aligned_faces, trunk_outputs
from emocli.train.head import balance_weights, fit_head, load_cached

TRAIN = ["affectnet-train", "sfew-train", "rafdb-train"]
CALIB = ["affectnet-calib", "sfew-calib", "rafdb-calib"]
GRID = [0.001, 0.003, 0.01, 0.03]


def head_calib(emb: dict, cnn: dict, sets: dict) -> tuple[float, dict, float]:
    """(best mean calib UAR, per-set UAR, C) of the face head refitted on [embedding, emo-cnn fc2]."""
    x = np.vstack([np.hstack([emb[n], cnn[n]]) for n in TRAIN])
    y = np.concatenate([sets[n][1] for n in TRAIN])
    w = balance_weights([(n, sets[n][1]) for n in TRAIN])
    best = (-1.0, {}, 0.0)
    for c in GRID:
        head = fit_head(x, y, w, c)
        uars = {n: classification_report(sets[n][1], head.predict_proba(np.hstack([emb[n], cnn[n]])).argmax(1),
                                         LABELS)["uar"] for n in CALIB}
        mean = float(np.mean(list(uars.values())))
        best = max(best, (mean, uars, c), key=lambda b: b[0])
    return best


def main() -> None:
    import keras

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--cache", type=Path, default=Path("runs/face_head"))
    ap.add_argument("--work", type=Path, default=Path("runs/mfn_ft"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    sets = face_sets(args.data)
    feats = {n: load_cached("rafdb-heldout" if n.startswith("rafdb-h") else n, args.bundle, args.cache)
             for n in ["affectnet-train", "sfew-train", "rafdb-train", "affectnet-calib", "sfew-calib", "rafdb-heldout"]}
    rafdb_halves(sets, feats)
    cnn = {n: feats[n]["cnn_feat"].astype(np.float32) for n in TRAIN + CALIB}
    shipped = {n: feats[n]["raf_emb"].astype(np.float32) for n in TRAIN + CALIB}
    mean, uars, c = head_calib(shipped, cnn, sets)
    print(f"shipped embedding: head calib UAR mean {mean:.3f} ({' '.join(f'{u:.3f}' for u in uars.values())}), C {c}",
          flush=True)

    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    t0 = time.perf_counter()
    names = TRAIN + ["affectnet-calib", "sfew-calib", "rafdb-heldout"]
    faces = {n: aligned_faces(n, sets[n][0], landmarker, args.work) for n in names}
    print(f"aligned {sum(len(v) for v in faces.values())} faces in {time.perf_counter() - t0:.0f} s", flush=True)
    net = to_keras(args.bundle / RAFDB_FILE)
    trunk = keras.Model(net.inputs[0], net.get_layer(LAST_STAGE).output)
    t0 = time.perf_counter()
    acts = {n: trunk_outputs(trunk, faces[n]) for n in names}
    print(f"trunk outputs in {time.perf_counter() - t0:.0f} s", flush=True)
    held = sets["rafdb-heldout"][0]
    acts["rafdb-calib"] = acts["rafdb-heldout"][[held.index(p) for p in sets["rafdb-calib"][0]]]
    # the last stage as a model of its own, on the trunk's output
    last = keras.Model(net.get_layer(LAST_STAGE).output, net.outputs)
    inp = last.inputs[0]
    train_model = keras.Model(inp, keras.layers.Softmax(dtype="float32")(last.outputs[1]))
    train_model.compile(optimizer=keras.optimizers.Adam(args.lr), loss="categorical_crossentropy")
    x = np.concatenate([acts[n] for n in TRAIN]).astype(np.float32)
    y = keras.utils.to_categorical(np.concatenate([sets[n][1] for n in TRAIN]), len(LABELS))
    w = balance_weights([(n, sets[n][1]) for n in TRAIN])
    for epoch in range(0, args.epochs + 1):
        t0 = time.perf_counter()
        if epoch:  # epoch 0: the rebuilt network as shipped, which must give the shipped embedding's figures
            train_model.fit(x, y, sample_weight=w, batch_size=64, epochs=1, shuffle=True, verbose=0)
        emb = {n: np.asarray(last.predict(acts[n].astype(np.float32), batch_size=256, verbose=0)[0], np.float32)
               for n in TRAIN + CALIB}
        if not epoch:
            gap = max(float(np.abs(emb[n] - shipped[n]).max()) for n in CALIB)
            print(f"the rebuilt network's embedding against the cached one: largest |difference| {gap:.2e}")
        mean, uars, c = head_calib(emb, cnn, sets)
        print(f"epoch {epoch}: {time.perf_counter() - t0:.0f} s; head calib UAR mean {mean:.3f} "
              f"({' '.join(f'{u:.3f}' for u in uars.values())}), C {c}", flush=True)


if __name__ == "__main__":
    main()
