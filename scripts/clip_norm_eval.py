"""Measure per-clip normalisation of the voice's frame features (issue 11, item 3), speaker-independently.

emo's ``rich`` statistics (:func:`emocli.voice.features.frame_statistics`, 289 values) summarise
34 short-term features over a clip's active windows. A recording channel or a speaker shifts
those frame features as a whole (the MFCCs above all: a fixed filter adds a constant to every
window's cepstrum), which is what per-clip normalisation of frame features removes before the
statistics are taken:

* ``none``: the shipped statistics;
* ``cmn``: the 13 MFCCs minus their mean over the clip's active windows (cepstral mean
  normalisation; the other features untouched);
* ``cmvn``: every one of the 34 features but energy (which picks the active windows and is already
  relative to the clip's peak) z-scored over the clip's active windows (their mean and std
  statistics become constants; percentiles, ranges and deltas keep the contour's shape);
* ``none+speaker``, ``cmn+speaker``: the same, then every clip's vector z-scored with its
  speaker's statistics (:func:`emocli.voice.speaker.normalise_groups`, as ``--speaker-norm``), for
  reference.

Classifier and splits as ``scripts/speaker_norm_eval.py --cross-corpus`` (StandardScaler +
balanced logistic regression, C by speaker-grouped CV on the training side only): RAVDESS ->
EmoDB and EmoDB -> RAVDESS on their six shared emotions, RAVDESS + EmoDB -> SAVEE (7), and the
shipped voice model's held-out speakers (RAVDESS 02, 03, 15, 16; EmoDB 03, 08) with every other
RAVDESS and EmoDB speaker for training. The window features are computed once per clip and
cached in ``--cache`` (``runs/`` is git-ignored)::

    python scripts/clip_norm_eval.py --data ../shared/data --cache runs/clip_frames
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voice_encoder_eval import CORPORA, HELD_OUT, cached_run_parser, fit_predict, report  # noqa: E402

VARIANTS = ("none", "cmn", "cmvn")


def _frames(task: tuple[str, str]) -> tuple[str, np.ndarray | None, str | None]:
    """Worker: the clip's (36, n) window features, from the cache or computed (and cached)."""
    from emocli.voice.features import window_features
    from emocli.errors import EmoError
    from emocli.media.ffmpeg import SAMPLE_RATE, load_audio

    path, cache = task
    target = Path(cache) / (hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest() + ".npy")
    if target.is_file():
        return path, np.load(target), None
    try:
        f = window_features(load_audio(path, sr=SAMPLE_RATE), SAMPLE_RATE).astype(np.float32)
    except EmoError as e:
        return path, None, str(e)
    np.save(target, f)
    return path, f, None


def normalised_statistics(frames: np.ndarray, variant: str) -> np.ndarray:
    """The 289 rich statistics of ``frames`` after the per-clip normalisation ``variant``."""
    from emocli.voice.features import _ENERGY, FEATURE_NAMES, N_FEATURES, active_frames, frame_statistics

    f = np.nan_to_num(np.asarray(frames, dtype=np.float64))
    feats, pitch = f[:N_FEATURES].copy(), f[N_FEATURES:]
    mask = active_frames(feats)
    if variant == "cmn":
        rows = [i for i, name in enumerate(FEATURE_NAMES) if name.startswith("mfcc_")]
        feats[rows] -= feats[rows][:, mask].mean(axis=1, keepdims=True)
    elif variant == "cmvn":
        energy = feats[_ENERGY].copy()
        mu = feats[:, mask].mean(axis=1, keepdims=True)
        sd = feats[:, mask].std(axis=1, keepdims=True)
        feats = (feats - mu) / np.where(sd > 1e-12, sd, 1.0)
        feats[_ENERGY] = energy  # it picks the active windows; it is already relative to the clip's peak
    elif variant != "none":
        raise ValueError(variant)
    return frame_statistics(np.vstack([feats, pitch]), feature_set="rich")


def main() -> None:
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from emocli.corpus.layouts import load_corpus
    from emocli.labels import LABELS
    from emocli.voice.speaker import normalise_groups

    args = cached_run_parser(__doc__, cache="clip_frames", workers=1,
                             out="JSON report (default: CACHE/clip_norm.json)").parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    items = [it for name in CORPORA for it in load_corpus(args.data / name, name, modality="audio")]
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = {p: (f, e) for p, f, e in pool.map(_frames, [(str(it.path), str(args.cache)) for it in items],
                                                  chunksize=16)}
    for p, (f, e) in got.items():
        if f is None:
            print(f"skipped {p}: {e}", file=sys.stderr)
    items = [it for it in items if got[str(it.path)][0] is not None]
    print(f"{len(items)} clips' window features in {time.time() - t0:.0f} s", file=sys.stderr)

    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    X = {v: np.stack([normalised_statistics(got[str(it.path)][0], v) for it in items]) for v in VARIANTS}
    for v in ("none", "cmn"):
        X[f"{v}+speaker"] = normalise_groups(X[v], g)

    six = [lab for lab in LABELS if lab != "surprise"]
    train_all = np.isin(corpus, ["ravdess", "emodb"])
    held = np.isin(g, HELD_OUT)
    runs = {"ravdess -> emodb": (corpus == "ravdess", corpus == "emodb", six),
            "emodb -> ravdess": (corpus == "emodb", corpus == "ravdess", six),
            "ravdess+emodb -> savee": (train_all, corpus == "savee", list(LABELS)),
            "held-out ravdess": (train_all & ~held, held & (corpus == "ravdess"), list(LABELS)),
            "held-out emodb": (train_all & ~held, held & (corpus == "emodb"), list(LABELS))}
    out = {}
    for name, (tr, te, labels) in runs.items():
        tr, te = tr & np.isin(y, labels), te & np.isin(y, labels)
        for variant, x in X.items():
            pred, C, cv_uar = fit_predict(x[tr], y[tr], g[tr], x[te])
            sc = report(y[te], pred, labels)
            out[f"{name} / {variant}"] = {"C": C, "cv_uar": cv_uar, **{k: sc[k] for k in ("n", "accuracy", "uar",
                                                                                         "recall")}}
            print(f"{name:<23} {variant:<13} acc {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  (n {sc['n']}, C {C:g}, "
                  f"training-side CV UAR {cv_uar:.3f})", flush=True)
    (args.out or args.cache / "clip_norm.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
