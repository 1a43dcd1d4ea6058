"""Rewrite opencv_zoo's int8 facial-expression MobileFaceNet as a float32 ONNX graph.

The int8 graph (QLinearConv / QLinearAdd / QLinearMatMul between Quantize/DequantizeLinear)
runs about 1.6x slower than the same network in float32 in OpenCV's dnn module on a CPU,
which has fast float32 convolutions but not int8 ones. The float32 graph uses the int8
graph's own weights, dequantized (``(w - zero_point) * scale``), so it computes what the int8
graph approximates; activations are no longer re-quantized between layers.

The convolutions' weights stay int8 in the file, each behind a DequantizeLinear node (opset 13,
per output channel) that OpenCV folds into float32 weights when it reads the graph: 1.4 MB
instead of 4.8 MB, the same float32 weights to the bit, the same outputs and speed.
``--float32-weights`` writes them as float32 initializers instead (the form shipped until
2026-12-07, sha256 50add6e6...b1fb).

    pip install onnx   # needed by this script only, not by emo
    python scripts/dequantize_onnx.py ../shared/weights/facial_expression_recognition_mobilefacenet_2022july_int8.onnx \\
        models/default/face_expert_rafdb.onnx --check ../shared/data/affectnet/train

``--check`` runs both graphs in OpenCV's dnn module on faces from a folder and prints the
largest logit difference and how often the two agree on the top emotion.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

EMBEDDING = "embedding"  # name of the added output: the face embedding before the last layer

def dequantize(src: Path, dst: Path, *, int8_weights: bool = True) -> None:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    alias: dict[str, str] = {}  # quantized tensor -> its float counterpart
    nodes, new_init = [], []

    def f(name: str) -> str:
        return alias.get(name, name)

    def const(name: str, scale: str, zero: str, out: str) -> str:
        arr = (init[name].astype(np.float32) - np.asarray(init[zero], np.float32)) * init[scale]
        new_init.append(numpy_helper.from_array(arr.astype(np.float32), out))
        return out

    for nd in g.node:
        op, i, o = nd.op_type, list(nd.input), nd.output[0]
        if op == "QuantizeLinear":
            alias[o] = f(i[0])
        elif op == "DequantizeLinear":
            if i[0] in init:
                const(i[0], i[1], i[2], o)
            else:
                alias[o] = f(i[0])
        elif op == "QLinearConv":
            x, xs, _, w, ws, wz = i[:6]
            if int8_weights:  # the int8 weights, dequantized per output channel when the graph is read
                n_out = len(init[w])
                ws_c = np.broadcast_to(np.asarray(init[ws], np.float32).reshape(-1), (n_out,))
                wz_c = np.broadcast_to(np.asarray(init[wz]).reshape(-1), (n_out,)).astype(init[w].dtype)
                new_init.extend([numpy_helper.from_array(init[w], o + "_Wq"),
                                 numpy_helper.from_array(np.ascontiguousarray(ws_c), o + "_Ws"),
                                 numpy_helper.from_array(np.ascontiguousarray(wz_c), o + "_Wz")])
                nodes.append(helper.make_node("DequantizeLinear", [o + "_Wq", o + "_Ws", o + "_Wz"], [o + "_W"],
                                              axis=0))
            else:
                shape = (-1, 1, 1, 1)
                weight = (init[w].astype(np.float32) - np.asarray(init[wz], np.float32).reshape(shape)) \
                    * np.asarray(init[ws], np.float32).reshape(shape)
                new_init.append(numpy_helper.from_array(weight.astype(np.float32), o + "_W"))
            args = [f(x), o + "_W"]
            if len(i) > 8:  # int32 bias, scaled by input scale x weight scale
                bias = init[i[8]].astype(np.float32) * init[xs] * np.asarray(init[ws], np.float32).reshape(-1)
                new_init.append(numpy_helper.from_array(bias.astype(np.float32), o + "_B"))
                args.append(o + "_B")
            node = helper.make_node("Conv", args, [o + "_f"], name=nd.name)
            node.attribute.extend(nd.attribute)
            nodes.append(node)
            alias[o] = o + "_f"
        elif op in ("QLinearAdd", "QLinearMatMul"):
            a, asc, az, b, bsc, bz = i[:6]
            args = [const(t, sc, zp, t + "_deq") if t in init else f(t) for t, sc, zp in ((a, asc, az), (b, bsc, bz))]
            nodes.append(helper.make_node("Add" if op == "QLinearAdd" else "MatMul", args, [o + "_f"], name=nd.name))
            alias[o] = o + "_f"
        else:
            node = helper.make_node(op, [f(x) for x in i], list(nd.output), name=nd.name)
            node.attribute.extend(nd.attribute)
            nodes.append(node)
    for out in g.output:
        if f(out.name) != out.name:
            nodes.append(helper.make_node("Identity", [f(out.name)], [out.name]))
    # expose the face embedding (the input of the last, fully-connected layer) as a second output,
    # for `emo extract` and feature-level fusion
    flat = [n for n in nodes if n.op_type == "Flatten"][-1]
    nodes.append(helper.make_node("Identity", [flat.output[0]], [EMBEDDING]))
    emb = helper.make_tensor_value_info(EMBEDDING, onnx.TensorProto.FLOAT, [1, None])
    used = {x for n in nodes for x in n.input}
    inits = [t for t in list(g.initializer) + new_init if t.name in used]
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output) + [emb], inits)
    opsets = model.opset_import
    if int8_weights:  # DequantizeLinear per channel (axis) needs opset 13; the other ops read the same
        opsets = [helper.make_opsetid(o.domain, max(o.version, 13) if o.domain == "" else o.version) for o in opsets]
    out_model = helper.make_model(graph, opset_imports=opsets)
    out_model.ir_version = max(model.ir_version, 7) if int8_weights else model.ir_version
    onnx.checker.check_model(out_model)
    onnx.save(out_model, str(dst))


def check(src: Path, dst: Path, folder: Path, n: int = 200) -> None:
    import cv2

    from emocli.media.ffmpeg import read_image

    a, b = cv2.dnn.readNet(str(src)), cv2.dnn.readNet(str(dst))
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[::max(1, len(list(
        folder.rglob("*"))) // n)][:n]
    la, lb = [], []
    for p in paths:
        x = (cv2.resize(read_image(p), (112, 112)).astype(np.float32) / 255 - 0.5) / 0.5
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        a.setInput(x)
        la.append(a.forward().ravel())
        b.setInput(x)
        lb.append(b.forward().ravel())
    la, lb = np.array(la), np.array(lb)
    print(f"{len(paths)} faces: max |logit difference| {np.abs(la - lb).max():.3f}, "
          f"mean {np.abs(la - lb).mean():.3f}; same top emotion {np.mean(la.argmax(1) == lb.argmax(1)):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--check", type=Path, help="a folder of face images to compare the two graphs on")
    ap.add_argument("--float32-weights", action="store_true",
                    help="store the convolutions' weights as float32 (3.4 MB larger; the same network)")
    args = ap.parse_args()
    dequantize(args.src, args.dst, int8_weights=not args.float32_weights)
    print(f"wrote {args.dst}, sha256 {hashlib.sha256(args.dst.read_bytes()).hexdigest()}")
    if args.check:
        check(args.src, args.dst, args.check)


if __name__ == "__main__":
    main()
