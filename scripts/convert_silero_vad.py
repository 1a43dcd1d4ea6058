"""Convert Silero VAD v6 from the PyPI wheel silero-vad==6.2.3 to emo's numpy form, and check it.

The wheel (MIT, Silero Team) holds ``silero_vad/data/silero_vad.onnx``, the model it runs with
``load_silero_vad(onnx=True)``: an ``If`` on the sample rate whose 16 kHz branch holds the float32
weights as constants. This script reads them with its own reader of ONNX's protobuf encoding
(no onnx, onnxruntime or torch import), renames them to the layer names of the wheel's
``tinygrad_model.py``, writes them as ``voice_vad.npz`` (fixed zip timestamps: the same wheel
gives the same sha256) into the bundle, the MIT licence beside it, and adds the file's sha256
to the bundle's ``manifest.json``. (The wheel's ``silero_vad_16k.safetensors`` has the same
layers but other values, whose probabilities differ from the ONNX model's by up to 0.02: not used.)

With ``--check`` it then runs emo's numpy model (:class:`emocli.voice.activity.SileroVAD`) and
the wheel's ``silero_vad.onnx`` under onnxruntime (chunk by chunk, state and 64-sample context
carried, as the wheel's ``OnnxWrapper`` does) on real speech clips and on generated non-speech
(noise, tones), prints the largest difference of the per-chunk speech probabilities, and with
``--fixture`` stores onnxruntime's probabilities for a short real clip and a noise clip for the
tests. onnxruntime is not a dependency of emo: give ``--reference-python`` a Python that has it::

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install onnxruntime numpy
    python scripts/convert_silero_vad.py /tmp/silero/silero_vad-6.2.3-py3-none-any.whl \\
        --check --reference-python /tmp/ortvenv/bin/python --fixture tests/data/silero_vad_reference.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emocli.voice.activity import (CHUNK, CONTEXT, SAMPLE_RATE, VAD_FILE, VAD_LICENSE, WEIGHT_NAMES,  # noqa: E402
                                   SileroVAD)

ONNX_IN_WHEEL = "silero_vad/data/silero_vad.onnx"
LICENSE_IN_WHEEL = "silero_vad-6.2.3.dist-info/licenses/LICENSE"
DEFAULT_BUNDLE = ROOT / "models" / "default"
FIXTURE_CLIP = ROOT / "examples" / "1001_DFA_HAP_XX.avi"  # committed, CREMA-D (ODbL)
FIXTURE_NOISE_SEED = 7  # the fixture's noise: rng(7).standard_normal(2 s) * 0.05
SPEECH_CLIPS = (FIXTURE_CLIP, Path("/work/shared/data/ravdess/Actor_02/03-01-05-01-01-01-02.flac"),
                Path("/work/shared/data/emodb/03a01Wa.flac"), Path("/work/shared/data/savee/DC_a01.flac"))
# shouted (strong-intensity anger, peak -0.2 dBFS: the clip the old gate rejected) and whispered-level
# (Actor_09, loudest 50 ms under -50 dBFS) speech; each is also checked clipped (x4, hard-clipped at
# full scale) and as the gate hears it (voice_activity.at_level)
LOUD_CLIPS = (Path("/work/shared/data/ravdess/Actor_18/03-01-05-02-02-01-18.flac"),
              Path("/work/shared/data/ravdess/Actor_09/03-01-04-01-02-02-09.flac"))

HEADER = """\
Silero VAD v6 weights (voice_vad.npz)

Source: the PyPI wheel silero-vad==6.2.3 (https://github.com/snakers4/silero-vad),
file {weights} (the model the wheel runs with onnx=True): the 16 kHz branch's float32
weights, unchanged, renamed to the layer names of the wheel's tinygrad_model.py by
scripts/convert_silero_vad.py.
sha256 of voice_vad.npz: {sha256}
sha256 of the source ONNX file: {source_sha256}

The wheel's licence ({licence}):

"""

# Run by --reference-python (which has onnxruntime): the wheel's OnnxWrapper loop, without torch.
REFERENCE = """
import sys, numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.inter_op_num_threads = 1; opts.intra_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], sess_options=opts, providers=["CPUExecutionProvider"])
clips = np.load(sys.argv[2])
out = {}
for name in clips.files:
    x = clips[name].astype(np.float32)
    x = np.pad(x, (0, -len(x) % 512))
    state, context, probs = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32), []
    for k in range(0, len(x), 512):
        inp = np.concatenate([context, x[None, k:k + 512]], axis=1)
        p, state = sess.run(None, {"input": inp, "state": state, "sr": np.array(16000, np.int64)})
        context = inp[:, -64:]
        probs.append(float(p[0, 0]))
    out[name] = np.array(probs, np.float32)
np.savez(sys.argv[3], **out)
"""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: (value, position after it)."""
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, pos


def _fields(buf: bytes):
    """The (field number, wire type, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            yield field, wire, buf[pos:pos + n]
            pos += n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            yield field, wire, buf[pos:pos + n]
            pos += n
        else:
            raise SystemExit(f"protobuf wire type {wire} not expected in an ONNX file")


def _tensor(buf: bytes) -> tuple[str, np.ndarray]:
    """An ONNX TensorProto (float32 only): dims 1, data_type 2, float_data 4, name 8, raw_data 9."""
    dims, dtype, name, raw, floats = [], None, "", None, []
    for field, wire, v in _fields(buf):
        if field == 1:
            dims.extend([v] if wire == 0 else list(_packed_varints(v)))
        elif field == 2:
            dtype = v
        elif field == 4:
            floats.extend(np.frombuffer(v, "<f4"))  # packed (wire 2) or one value (wire 5)
        elif field == 8:
            name = v.decode()
        elif field == 9:
            raw = v
    if dtype != 1:  # TensorProto.FLOAT
        raise SystemExit(f"ONNX tensor {name!r} has data type {dtype}, not float32")
    data = np.frombuffer(raw, "<f4") if raw is not None else np.asarray(floats, np.float32)
    return name, data.reshape(dims).astype(np.float32)


def _packed_varints(buf: bytes):
    pos = 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        yield value


def _graph_constants(graph: bytes, into: dict[str, np.ndarray], branch: str = "") -> None:
    """Every float tensor of a GraphProto (initializers 5 and Constant nodes 1) and of its subgraphs,
    keyed ``branch/name`` where ``branch`` names the If branches on the way (``then_branch``...)."""
    for field, _, v in _fields(graph):
        if field == 5:
            name, arr = _tensor(v)
            into[f"{branch}/{name}"] = arr
        elif field == 1:  # NodeProto: attribute 5 -> AttributeProto (name 1, t 5, g 6)
            for f2, _, attr in _fields(v):
                if f2 != 5:
                    continue
                parts = {f3: x for f3, _, x in _fields(attr) if f3 in (1, 5, 6)}
                if 5 in parts:
                    try:
                        name, arr = _tensor(parts[5])
                    except SystemExit:  # an integer constant (shapes, axes)
                        continue
                    into[f"{branch}/{name}"] = arr
                if 6 in parts:
                    _graph_constants(parts[6], into, f"{branch}/{parts[1].decode()}")


# The 16 kHz branch's names (spox export of the JIT model) -> the names of tinygrad_model.py
ONNX_NAMES = {"stft.forward_basis_buffer": "stft_conv.weight", "decoder.rnn.weight_ih": "lstm_cell.weight_ih",
              "decoder.rnn.weight_hh": "lstm_cell.weight_hh", "decoder.rnn.bias_ih": "lstm_cell.bias_ih",
              "decoder.rnn.bias_hh": "lstm_cell.bias_hh", "decoder.decoder.2.weight": "final_conv.weight",
              "decoder.decoder.2.bias": "final_conv.bias",
              **{f"encoder.{i}.reparam_conv.{p}": f"conv{i + 1}.{p}" for i in range(4) for p in ("weight", "bias")}}


def read_onnx_weights(data: bytes) -> dict[str, np.ndarray]:
    """The 16 kHz model's weights from the wheel's silero_vad.onnx (ModelProto field 7 is the graph).

    The 16 kHz branch is the ``then_branch`` of the graph's ``If`` on ``sr == 16000``. The wheel's
    ``silero_vad_16k.safetensors`` has the same layers but other values (conv1 differs by up to 4)
    and gives probabilities up to 0.02 away from the ONNX and JIT models the wheel runs, so the
    ONNX model is the source.
    """
    graph = next(v for f, _, v in _fields(data) if f == 7)
    found: dict[str, np.ndarray] = {}
    _graph_constants(graph, found)
    out = {}
    for key, arr in found.items():
        if "/then_branch" not in key:
            continue
        short = key.rsplit("/", 1)[-1].rsplit("__", 1)[-1]
        if short in ONNX_NAMES:
            out[ONNX_NAMES[short]] = np.ascontiguousarray(arr)
    return out


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps and order, so the same wheel gives the same sha256."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, arrays[key], allow_pickle=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_to_manifest(bundle: Path, name: str, digest: str) -> None:
    """Record ``name``'s sha256 in the bundle's manifest, leaving everything else as it is."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = digest
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def non_speech(seconds: float = 3.0, sr: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Generated non-speech for the check: noises and tones (seeded)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    white = rng.standard_normal(len(t))
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.fft.rfftfreq(len(t), 1 / sr), 1.0)), len(t))
    chord = sum(np.sin(2 * np.pi * f * h * t) / h for f in (261.6, 329.6, 392.0) for h in (1, 2, 3, 4))
    return {"white": 0.1 * white, "pink": 0.3 * pink / np.abs(pink).max(), "tone440": 0.3 * np.sin(2 * np.pi * 440 * t),
            "chord": 0.1 * chord, "silence": np.zeros(len(t))}


def fixture_noise() -> np.ndarray:
    return (np.random.default_rng(FIXTURE_NOISE_SEED).standard_normal(2 * SAMPLE_RATE) * 0.05).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path, help="silero_vad-6.2.3-py3-none-any.whl")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the bundle that receives voice_vad.npz")
    ap.add_argument("--check", action="store_true", help="compare with the wheel's ONNX model under onnxruntime")
    ap.add_argument("--reference-python", default=sys.executable, help="a Python with onnxruntime installed")
    ap.add_argument("--fixture", type=Path, help="with --check: store the reference probabilities for the tests")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as z:
        onnx = z.read(ONNX_IN_WHEEL)
        licence = z.read(LICENSE_IN_WHEEL).decode("utf-8")
    arrays = read_onnx_weights(onnx)
    if sorted(arrays) != sorted(WEIGHT_NAMES):
        raise SystemExit(f"{ONNX_IN_WHEEL}: unexpected tensors {sorted(set(arrays) ^ set(WEIGHT_NAMES))}")
    print(f"{ONNX_IN_WHEEL}: 16 kHz branch, {len(arrays)} tensors, {sum(a.size for a in arrays.values())} values")
    out = args.bundle / VAD_FILE
    save_npz(out, arrays)
    digest = sha256_bytes(out.read_bytes())
    (args.bundle / VAD_LICENSE).write_text(
        HEADER.format(weights=ONNX_IN_WHEEL, sha256=digest, source_sha256=sha256_bytes(onnx),
                      licence=LICENSE_IN_WHEEL) + licence)
    add_to_manifest(args.bundle, VAD_FILE, digest)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB), {VAD_LICENSE}; manifest updated")
    print(f"sha256 {digest}")

    if not args.check:
        return
    from emocli.media.ffmpeg import load_audio

    from emocli.voice.activity import at_level

    clips = {p.stem: load_audio(p, sr=SAMPLE_RATE) for p in SPEECH_CLIPS if p.is_file()}
    for p in LOUD_CLIPS:
        if p.is_file():
            x = load_audio(p, sr=SAMPLE_RATE)
            clips.update({p.stem: x, f"{p.stem}-clipped": np.clip(4 * x, -1, 1), f"{p.stem}-at-level": at_level(x)})
    speech = set(clips)
    clips.update(non_speech())
    clips["fixture_noise"] = fixture_noise()
    vad = SileroVAD.load(out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "vad.onnx").write_bytes(onnx)
        np.savez(tmp / "clips.npz", **{k: v.astype(np.float32) for k, v in clips.items()})
        subprocess.run([args.reference_python, "-c", REFERENCE, str(tmp / "vad.onnx"), str(tmp / "clips.npz"),
                        str(tmp / "ref.npz")], check=True)
        with np.load(tmp / "ref.npz") as z:
            ref = {k: z[k] for k in z.files}
    worst = 0.0
    for name, audio in clips.items():
        ours, _ = vad.probabilities(audio)
        # the same audio in uneven pieces, the state carried: a stream must give the same probabilities
        cut = [0, 5 * CHUNK, 9 * CHUNK, len(audio)]
        state, parts = None, []
        for a, b in zip(cut[:-1], cut[1:]):
            p, state = vad.probabilities(audio[a:b], state=state)
            parts.append(p)
        diff = float(np.abs(ours - ref[name]).max())
        stream_diff = float(np.abs(np.concatenate(parts) - ours).max())
        worst = max(worst, diff)
        print(f"  {name:>30} ({'speech' if name in speech else 'non-speech'}, {len(audio) / SAMPLE_RATE:.2f} s, "
              f"{len(ours)} chunks): max abs diff {diff:.2e}; speech chunks (p >= 0.5) ours {int((ours >= 0.5).sum())}, "
              f"onnxruntime {int((ref[name] >= 0.5).sum())}; streamed in pieces vs whole {stream_diff:.1e}")
    print(f"max abs difference of the per-chunk speech probabilities, numpy vs onnxruntime: {worst:.2e}")
    if not worst < 1e-4:
        raise SystemExit("the numpy VAD does not match onnxruntime within 1e-4")
    if args.fixture:
        name = FIXTURE_CLIP.stem
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.fixture, speech=ref[name], noise=ref["fixture_noise"],
                            speech_clip=np.array(FIXTURE_CLIP.name), noise_seed=np.array(FIXTURE_NOISE_SEED),
                            context=np.array(CONTEXT))
        print(f"wrote {args.fixture}: {len(ref[name])} + {len(ref['fixture_noise'])} reference probabilities")


if __name__ == "__main__":
    main()
