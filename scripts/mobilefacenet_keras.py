"""The RAF-DB MobileFaceNet (``face_expert_rafdb.onnx``) as a trainable Keras network, and what one
training epoch of it costs on this machine (issue 34: fine-tune a face network end to end).

The ONNX graph is plain (Conv, depthwise Conv, PRelu, Add, Flatten, MatMul; convolution weights
int8 behind DequantizeLinear in the shipped file): each node becomes the Keras layer that computes
the same thing on NHWC tensors, with the graph's weights. The script checks the Keras network
against OpenCV's on random faces (largest difference of the embedding and of the logits), then
times training steps at batch 64 on 112x112 colour faces: the whole network, and the network
with everything before its last stage frozen (the 7x7 stage: from the 1x1 convolution to 512
channels on), and prints seconds per epoch for the 26,195 training faces of AffectNet, SFEW and
RAF-DB (the face head's training parts). Writes the Keras network with ``--out`` (not a shipped
file).

    pip install onnx   # needed by this script only, not by emo
    python scripts/mobilefacenet_keras.py models/default/face_expert_rafdb.onnx --out runs/mfn.keras
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

LAST_STAGE = "447_quantized_f"  # the output of the last 14x14 block: the 7x7 stage starts after it
N_TRAIN = 26_195  # AffectNet, SFEW and RAF-DB training faces the face head learned from


def constants(model) -> dict[str, np.ndarray]:
    """The graph's initializers, with DequantizeLinear of an initializer evaluated (per axis 0)."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            q, s, z = (init[i] for i in node.input[:3])
            shape = (-1,) + (1,) * (q.ndim - 1)
            init[node.output[0]] = ((q.astype(np.float32) - z.astype(np.float32).reshape(shape))
                                    * s.astype(np.float32).reshape(shape)).astype(np.float32)
    return init


def to_keras(path: Path):
    """(Keras model with outputs [embedding, logits], the name of each ONNX tensor's Keras layer)."""
    import keras
    import onnx
    from keras import layers

    model = onnx.load(str(path))
    init = constants(model)
    inp = keras.Input((112, 112, 3), name="face")
    t = {model.graph.input[0].name: inp}
    for node in model.graph.node:
        op, ins, out = node.op_type, list(node.input), node.output[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "DequantizeLinear":
            continue
        if op == "Conv":
            w, b = init[ins[1]], init[ins[2]] if len(ins) > 2 else None
            k, stride, pad, group = w.shape[2], attrs["strides"][0], attrs["pads"][0], attrs.get("group", 1)
            x = layers.ZeroPadding2D(pad, name=f"{out}_pad")(t[ins[0]]) if pad else t[ins[0]]
            if group == 1:
                conv = layers.Conv2D(w.shape[0], k, strides=stride, use_bias=b is not None, name=out)
                t[out] = conv(x)
                conv.set_weights([w.transpose(2, 3, 1, 0)] + ([b] if b is not None else []))
            else:
                conv = layers.DepthwiseConv2D(k, strides=stride, use_bias=b is not None, name=out)
                t[out] = conv(x)
                conv.set_weights([w.transpose(2, 3, 0, 1)] + ([b] if b is not None else []))
        elif op == "PRelu":
            act = layers.PReLU(shared_axes=[1, 2], name=out)
            t[out] = act(t[ins[0]])
            act.set_weights([init[ins[1]].reshape(1, 1, -1)])
        elif op == "Add" and ins[1] in init:  # the classifier's bias
            t[out] = t[ins[0]]
            bias = init[ins[1]]
        elif op == "Add":
            t[out] = layers.Add(name=out)([t[ins[0]], t[ins[1]]])
        elif op == "Flatten":
            t[out] = layers.Flatten(name=out)(t[ins[0]])
        elif op == "MatMul":
            dense = layers.Dense(init[ins[1]].shape[1], name="logits")
            t[out] = dense(t[ins[0]])
            matmul = (dense, init[ins[1]])
        elif op == "Identity":
            t[out] = t[ins[0]]
        else:
            raise ValueError(f"unexpected ONNX op {op}")
    dense, w = matmul
    dense.set_weights([w, bias])
    return keras.Model(inp, [t["embedding"], t["label"]], name="mobilefacenet"), t


def check(net, path: Path, n: int = 16) -> tuple[float, float]:
    """Largest |difference| of embeddings and logits against OpenCV's dnn on random faces."""
    from emocli.face.experts import OnnxExpert

    faces = np.random.default_rng(0).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    e_cv, l_cv = OnnxExpert(path).logits(faces, embeddings=True)
    e_k, l_k = (np.asarray(v) for v in net((faces.astype(np.float32) / 255.0 - 0.5) / 0.5, training=False))
    return float(np.abs(e_k - e_cv).max()), float(np.abs(l_k - l_cv).max())


def epoch_seconds(net, tensors: dict, *, frozen_until: str | None, batch: int = 64, steps: int = 8) -> float:
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
    net, tensors = to_keras(args.onnx)
    print(f"{net.count_params():,} parameters; Keras vs OpenCV, largest |difference|: "
          "embedding {:.2e}, logits {:.2e}".format(*check(net, args.onnx)))
    if args.out:
        net.save(args.out)
        print(f"wrote {args.out}")
    whole = epoch_seconds(net, tensors, frozen_until=None)
    last = epoch_seconds(net, tensors, frozen_until=LAST_STAGE)
    print(f"one epoch of {N_TRAIN:,} faces at batch 64: whole network {whole / 60:.1f} min, "
          f"last stage only (frozen trunk recomputed) {last / 60:.1f} min")


if __name__ == "__main__":
    main()
