"""Average two trained face networks into one, if that helps on held-out *training* images.

    python scripts/ensemble_faces.py BUNDLE_A BUNDLE_B TRAIN --out BUNDLE [--write]

Both bundles must come from `emo train-video` on the same TRAIN folder with the same held-out
share and seed, so neither network saw the held-out images. The script scores those images
with A, B and the average of the two (each with A's test-time views), prints the three
accuracies, and with --write saves the averaged network to BUNDLE (face.keras: one Keras model
whose "scores" are the mean of the members' scores and whose "fc2" features are the members'
side by side; face.json from A with the ensemble recorded) when it beats both members on the
held-out images. The test split is never looked at.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from emocli.bundle import write_manifest
from emocli.errors import DatasetError
from emocli.labels import LABELS
from emocli.media import read_image
from emocli.metrics import classification_report
from emocli.training import heldout_part, holdout_seed_of
from emocli.video_model import FEATURE_LAYER, SCORES_LAYER, FaceModel, prepare_faces


def average_networks(nets, names):
    """One functional model whose scores are the mean of the members' scores.

    Built from standard layers only (it loads in Keras safe mode): each member up to its fc2
    features; ``fc2`` = their concatenation (the ensemble's feature-fusion input); one Dense
    with the members' own softmax weights side by side gives both members' logits; a softmax
    per member and their mean give ``scores``.
    """
    from emocli.quiet_imports import import_keras

    keras = import_keras()
    from keras import layers

    inp = keras.Input(nets[0].inputs[0].shape[1:], name="face")
    feats, kernels, biases = [], [], []
    for net, name in zip(nets, names):
        member = keras.Model(net.inputs[0], net.get_layer(FEATURE_LAYER).output, name=name)
        feats.append(member(inp))
        w, b = net.get_layer(SCORES_LAYER).get_weights()
        kernels.append(w)
        biases.append(b)
    k, n = len(nets), kernels[0].shape[1]
    fc2 = layers.Concatenate(name=FEATURE_LAYER)(feats)
    logits = layers.Dense(k * n, name="member_logits")(fc2)
    probs = layers.Softmax(axis=-1, name="member_scores")(layers.Reshape((k, n), name="per_member")(logits))
    out = layers.GlobalAveragePooling1D(name=SCORES_LAYER, dtype="float32")(probs)
    model = keras.Model(inp, out, name="emo_cnn_ensemble")
    kernel = np.zeros((sum(w.shape[0] for w in kernels), k * n), np.float32)
    row = 0
    for i, w in enumerate(kernels):  # block-diagonal: member i's features -> member i's logits
        kernel[row:row + w.shape[0], i * n:(i + 1) * n] = w
        row += w.shape[0]
    model.get_layer("member_logits").set_weights([kernel, np.concatenate(biases)])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("train", type=Path, help="the folder both bundles were trained on")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    meta_a = json.loads((args.a / "face.json").read_text())
    meta_b = json.loads((args.b / "face.json").read_text())
    for key, get in (("holdout", lambda m: m.get("holdout")), ("holdout seed", holdout_seed_of),
                     ("n_holdout", lambda m: m.get("n_holdout"))):
        if get(meta_a) != get(meta_b):
            raise SystemExit(f"the bundles differ in {key} ({get(meta_a)} vs {get(meta_b)}): their held-out "
                             "images differ, so the comparison would not be fair")
    try:
        items, y, ho = heldout_part(args.train, meta_a)
    except DatasetError as exc:
        raise SystemExit(str(exc)) from None
    a, b = FaceModel.load(args.a), FaceModel.load(args.b)
    pre = a.preprocessing
    x = prepare_faces([read_image(items[i].path) for i in ho], replace(pre, flip_tta=False, tta_zoom=0.0,
                                                                        tta_shift=0.0))
    b.preprocessing = pre
    sa, sb = a.score_inputs(x, batch_size=256), b.score_inputs(x, batch_size=256)
    acc = {"a": float(np.mean(sa.argmax(1) == y[ho])), "b": float(np.mean(sb.argmax(1) == y[ho])),
           "mean": float(np.mean((sa + sb).argmax(1) == y[ho]))}
    print(f"held-out accuracy (n={len(ho)}, views {pre.to_dict()}): A {acc['a']:.4f}, B {acc['b']:.4f}, "
          f"mean of both {acc['mean']:.4f}")
    if not args.write:
        return
    if acc["mean"] <= max(acc["a"], acc["b"]):
        raise SystemExit("the ensemble does not beat its best member on held-out images: nothing written")
    net = average_networks([a.network_, b.network_], ["member_a", "member_b"])
    ens = FaceModel(backbone="emo-cnn-ensemble", preprocessing=pre, labels=a.labels)
    ens.network_ = net
    ens.history_ = a.history_
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in meta_a.items() if k not in ("backbone", "preprocessing", "labels", "history",
                                                          "feature_layer", "format", "format_version")}
    extra["ensemble"] = {"members": [str(args.a), str(args.b)], "holdout_accuracy": acc,
                         "command": f"python scripts/ensemble_faces.py {args.a} {args.b} {args.train} "
                                    f"--out {args.out} --write"}
    extra["holdout_accuracy"] = acc["mean"]
    # the held-out confusion of the ensemble itself: decision fusion derives its weights from it
    extra["validation"] = classification_report(y[ho], (sa + sb).argmax(1), a.labels)
    ens.save(args.out, extra=extra)
    write_manifest(args.out, labels=list(LABELS))
    check = FaceModel.load(args.out).score_inputs(x[:64], batch_size=64)
    assert np.allclose(check, ((sa + sb) / 2)[:64], atol=1e-4), "saved ensemble scores differ"
    print(f"wrote {args.out}/face.keras")


if __name__ == "__main__":
    main()
