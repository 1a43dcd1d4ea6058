"""The RAF-DB MobileFaceNet (``face_expert_rafdb.onnx``) as a trainable Keras network, and what one
training epoch of it costs on this machine (issue 34: fine-tune a face network end to end).

The network is rebuilt by ``emocli.face.mobilefacenet.to_keras`` (what ``emo train-expert``
trains). The script checks the Keras network
against OpenCV's on random faces (largest difference of the embedding and of the logits), then
times training steps at batch 64 on 112x112 colour faces: the whole network, and the network
with everything before its last stage frozen (the 7x7 stage: from the 1x1 convolution to 512
channels on), and prints seconds per epoch for the 26,195 training faces of AffectNet, SFEW and
RAF-DB (the face head's training parts). Writes the Keras network with ``--out`` (not a shipped
file).

    pip install 'emo[train]'   # the onnx package; predict does not need it
    python scripts/mobilefacenet_keras.py models/default/face_expert_rafdb.onnx --out runs/mfn.keras
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emocli.face.mobilefacenet import LAST_STAGE, to_keras

N_TRAIN = 26_195  # AffectNet, SFEW and RAF-DB training faces the face head learned from


def check(net, path: Path, n: int = 16) -> tuple[float, float]:
    """Largest |difference| of embeddings and logits against OpenCV's dnn on random faces."""
    from emocli.face.experts import OnnxExpert

    faces = np.random.default_rng(0).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    e_cv, l_cv = OnnxExpert(path).logits(faces, embeddings=True)
    e_k, l_k = (np.asarray(v) for v in net((faces.astype(np.float32) / 255.0 - 0.5) / 0.5, training=False))
    return float(np.abs(e_k - e_cv).max()), float(np.abs(l_k - l_cv).max())


def epoch_seconds(net, *, frozen_until: str | None, batch: int = 64, steps: int = 8) -> float:
    """Seconds per training epoch of N_TRAIN faces, from ``steps`` timed steps (after one warm-up)."""
    import keras

    trainable = frozen_until is None
    for layer in net.layers:
        if layer.name == frozen_until:
            trainable = True
            continue
        layer.trainable = trainable and bool(layer.weights)
    model = keras.Model(net.inputs, keras.layers.Softmax()(net.outputs[1]))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", jit_compile=False)
    x = np.random.default_rng(1).uniform(-1, 1, (batch, 112, 112, 3)).astype(np.float32)
    y = keras.utils.to_categorical(np.arange(batch) % 7, 7)
    model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t0) / steps * (N_TRAIN / batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--out", type=Path, help="write the Keras network here (.keras)")
    args = ap.parse_args()
    net = to_keras(args.onnx)
    print(f"{net.count_params():,} parameters; Keras vs OpenCV, largest |difference|: "
          "embedding {:.2e}, logits {:.2e}".format(*check(net, args.onnx)))
    if args.out:
        net.save(args.out)
        print(f"wrote {args.out}")
    whole = epoch_seconds(net, frozen_until=None)
    last = epoch_seconds(net, frozen_until=LAST_STAGE)
    print(f"one epoch of {N_TRAIN:,} faces at batch 64: whole network {whole / 60:.1f} min, "
          f"last stage only (frozen trunk recomputed) {last / 60:.1f} min")


if __name__ == "__main__":
    main()
