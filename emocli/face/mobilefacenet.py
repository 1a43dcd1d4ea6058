"""The RAF-DB MobileFaceNet (``face_expert_rafdb.onnx``) as a trainable Keras network, and back.

``predict`` runs the expert from its ONNX graph in OpenCV's dnn module. ``emo train-expert``
fine-tunes it: the graph is plain (Conv, depthwise Conv, PRelu, Add, Flatten, MatMul; convolution
weights int8 behind DequantizeLinear), so each node becomes the Keras layer that computes the same
thing on NHWC tensors, with the graph's weights (:func:`to_keras`; embeddings within 1e-6 of
OpenCV's). :func:`write_onnx` puts trained weights back into a copy of the graph: weights the
training left as they were keep their bytes (int8 behind DequantizeLinear), changed ones are
written float32, so OpenCV computes what the Keras network computes.

Reading and writing ONNX needs the ``onnx`` package (``pip install 'emo[train]'``); running the
expert does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocli.choices import DEFAULT_EXPERT_STAGE
from emocli.errors import ModelError

LAST_STAGE = "447_quantized_f"  # the output of the last 14x14 block: the 7x7 stage starts after it
# where training may start (emo train-expert --from-stage): the tensor each stage reads, None for the input
STAGE_INPUTS = {DEFAULT_EXPERT_STAGE: LAST_STAGE, "14x14": "388", "28x28": "344", "all": None}
INPUT_SIZE = 112


def _onnx():
    try:
        import onnx
    except ImportError:  # the runtime never needs it: only training reads and writes the graph
        raise ModelError("fine-tuning the face expert needs the onnx package: pip install 'emo[train]' "
                         "(or pip install onnx)") from None
    return onnx


def _load(path: Path):
    onnx = _onnx()
    try:
        return onnx.load(str(path))
    except Exception as exc:  # a protobuf decode error of a truncated or foreign file
        raise ModelError(f"{path}: not a readable ONNX graph ({type(exc).__name__}); restore the bundle's "
                         "face_expert_rafdb.onnx") from None


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
    """The expert as a Keras model: input (N, 112, 112, 3) float in [-1, 1] (RGB), outputs
    [embedding (N, 512), logits (N, 7)]. Each layer is named after the ONNX tensor it computes."""
    import keras
    from keras import layers

    onnx = _onnx()
    model = _load(path)
    init = constants(model)
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="face")
    t = {model.graph.input[0].name: inp}
    bias = matmul = None
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
            raise ModelError(f"{path}: unexpected ONNX operator {op}; emo train-expert reads the RAF-DB "
                             "MobileFaceNet's graph only")
    if matmul is None or bias is None or "embedding" not in t or "label" not in t:
        raise ModelError(f"{path}: no embedding and label outputs; run scripts/dequantize_onnx.py on the graph")
    dense, w = matmul
    dense.set_weights([w, bias])
    return keras.Model(inp, [t["embedding"], t["label"]], name="mobilefacenet")


def write_onnx(net, src: Path, dst: Path) -> int:
    """Write ``src``'s graph to ``dst`` with the weights of ``net`` (a :func:`to_keras` model of it).

    Weights the same as the graph's keep their bytes (int8 stays int8); changed ones are written
    float32 (a changed int8 weight loses its DequantizeLinear node), so OpenCV computes what the
    Keras network computes. Returns how many tensors changed."""
    from keras import layers

    onnx = _onnx()
    from onnx import numpy_helper

    model = _load(src)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    now = constants(model)
    deq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    changed = 0

    def put(name: str, value: np.ndarray) -> None:
        nonlocal changed
        value = np.ascontiguousarray(value, np.float32).reshape(now[name].shape)
        if np.array_equal(value, now[name]):
            return
        changed += 1
        if name in deq:  # the int8 tensor and its DequantizeLinear node give way to a float32 tensor
            node = deq.pop(name)
            for part in node.input[:3]:
                graph.initializer.remove(inits.pop(part))
            graph.node.remove(node)
            graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            inits[name].CopyFrom(numpy_helper.from_array(value, name))

    for node in list(graph.node):
        ins = list(node.input)
        if node.op_type == "Conv":
            layer = net.get_layer(node.output[0])
            weights = layer.get_weights()
            # Keras (kh, kw, in, out) -> ONNX (out, in, kh, kw); depthwise (kh, kw, c, 1) -> (c, 1, kh, kw)
            order = (2, 3, 0, 1) if isinstance(layer, layers.DepthwiseConv2D) else (3, 2, 0, 1)
            put(ins[1], weights[0].transpose(order))
            if len(ins) > 2:
                put(ins[2], weights[1])
        elif node.op_type == "PRelu":
            put(ins[1], net.get_layer(node.output[0]).get_weights()[0])
        elif node.op_type == "MatMul":
            w, b = net.get_layer("logits").get_weights()
            put(ins[1], w)
            put(next(n.input[1] for n in graph.node if n.op_type == "Add" and n.input[0] == node.output[0]), b)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return changed
