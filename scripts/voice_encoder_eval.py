"""Measure Whisper-encoder voice features against emo's 289 rich statistics, speaker-independently.

Per clip of RAVDESS (calm dropped), EmoDB (boredom dropped) and SAVEE (DC, JE), computed once
and cached in ``--cache`` (``runs/`` is git-ignored):

* ``whisper``: :func:`emocli.voice.encoder.embed`, mean + std of Whisper tiny.en encoder frames
  over the active part of the clip (768 values);
* ``rich``: :func:`emocli.voice.features.clip_statistics` (289 values, the shipped model's features);
* ``whisper+rich``: both, concatenated (1057).

Classifier: StandardScaler + LogisticRegression (balanced class weights); C chosen by
speaker-grouped 4-fold cross-validation *on the training speakers only*
(:func:`emocli.corpus.splits.speaker_folds`, 3 shuffles), scoring balanced accuracy (UAR).

Splits:

1. ``heldout``: train on RAVDESS + EmoDB minus the shipped voice model's held-out speakers
   (RAVDESS actors 02, 03, 15, 16; EmoDB speakers 03, 08; ``models/default/voice.json``), test
   on those, per corpus; SAVEE DC/JE (never trained on) as a third, unseen corpus.
2. ``ravdess->emodb`` and ``emodb->ravdess``: train on one corpus (all speakers; its six
   classes shared with EmoDB, no surprise), test on the other.

Usage (about 10 minutes on a busy 2-core host the first time, a minute from the cache)::

    python scripts/voice_encoder_eval.py --data ../shared/data --cache runs/voice_encoder --workers 2

and, for a bundle trained with ``emo train-audio ... --feature-set whisper``, its held-out
speakers per corpus::

    python scripts/voice_encoder_eval.py --cache runs/voice_encoder --bundle runs/whisper_bundle
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker: threads fight on a busy host
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORPORA = ("ravdess", "emodb", "savee")
HELD_OUT = ("ravdess_02", "ravdess_03", "ravdess_15", "ravdess_16", "emodb_03", "emodb_08")
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FEATURE_SETS = ("whisper", "rich", "whisper+rich")
CACHE_VERSION = 1

_ENCODER = None


def _features(task: tuple[str, str]) -> tuple[str, dict | None, str | None]:
    """Worker: whisper and rich vectors of one clip, from the cache or computed (and cached)."""
    global _ENCODER
    from emocli.voice.features import clip_statistics
    from emocli.errors import EmoError
    from emocli.media.ffmpeg import SAMPLE_RATE, load_audio
    from emocli.voice.encoder import ENCODER_SHA256, LiteWhisperEncoder, embed

    path, cache = task
    key = hashlib.sha1(f"{Path(path).resolve()}|{ENCODER_SHA256}|v{CACHE_VERSION}".encode()).hexdigest()
    target = Path(cache) / f"{key}.npz"
    if target.is_file():
        with np.load(target, allow_pickle=False) as z:
            return path, {k: z[k] for k in z.files}, None
    try:
        if _ENCODER is None:
            _ENCODER = LiteWhisperEncoder.load(sha256=ENCODER_SHA256)
        audio = load_audio(path, sr=SAMPLE_RATE)
        t0 = time.perf_counter()
        w = embed(audio, SAMPLE_RATE, _ENCODER)
        t1 = time.perf_counter()
        r = clip_statistics(audio, SAMPLE_RATE, feature_set="rich")
        t2 = time.perf_counter()
    except (EmoError, OSError) as exc:
        return path, None, str(exc)
    out = {"whisper": w, "rich": r, "seconds": np.array([len(audio) / SAMPLE_RATE, t1 - t0, t2 - t1])}
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **out)
    tmp.replace(target)
    return path, out, None


def extract(data: Path, cache: Path, workers: int):
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from emocli.corpus.layouts import load_corpus

    cache.mkdir(parents=True, exist_ok=True)
    items = [it for name in CORPORA for it in load_corpus(data / name, name, modality="audio")]
    tasks = [(str(it.path), str(cache)) for it in items]
    t0 = time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict((p, (f, e)) for p, f, e in pool.map(_features, tasks, chunksize=16))
    bad = [(p, e) for p, (f, e) in results.items() if f is None]
    for p, e in bad:
        print(f"skipped {p}: {e}", file=sys.stderr)
    items = [it for it in items if results[str(it.path)][0] is not None]
    feats = [results[str(it.path)][0] for it in items]
    print(f"{len(items)} clips ({len(bad)} skipped) in {time.time() - t0:.0f} s", file=sys.stderr)
    X = {"whisper": np.stack([f["whisper"] for f in feats]).astype(np.float64),
         "rich": np.stack([f["rich"] for f in feats]).astype(np.float64)}
    X["whisper+rich"] = np.hstack([X["whisper"], X["rich"]])
    secs = np.stack([f["seconds"] for f in feats])
    return items, X, secs


def fit_predict(Xtr, ytr, gtr, Xte, *, seed: int = 0):
    """Scaler + logistic regression, C by speaker-grouped CV on the training side; (predictions, C, cv UAR)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emocli.corpus.splits import speaker_folds

    rng = np.random.default_rng(seed)
    cv = [f for _ in range(3) for f in speaker_folds(np.asarray(gtr), 4, rng)]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    search = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, cv=cv, scoring="balanced_accuracy",
                          n_jobs=1).fit(Xtr, ytr)
    return search.predict(Xte), float(search.best_params_["logisticregression__C"]), float(search.best_score_)


def report(y_true, y_pred, labels) -> dict:
    from emocli.report.metrics import classification_report

    idx = {lab: i for i, lab in enumerate(labels)}
    return classification_report([idx[v] for v in y_true], [idx[v] for v in y_pred], labels)


def cached_run_parser(doc: str, *, cache: str, workers: int, out: str) -> argparse.ArgumentParser:
    """The options of a measurement over the voice corpora whose per-clip features are cached:
    --data, --cache (under runs/), --workers and --out."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / cache)
    ap.add_argument("--workers", type=int, default=workers)
    ap.add_argument("--out", type=Path, default=None, help=out)
    return ap


def main() -> None:
    from emocli.labels import LABELS

    ap = cached_run_parser(__doc__, cache="voice_encoder", workers=2, out="results JSON (default: CACHE/results.json)")
    ap.add_argument("--bundle", type=Path, default=None,
                    help="instead: score this `emo train-audio --feature-set whisper*` bundle on each corpus's "
                         "held-out speakers (from the cached vectors)")
    args = ap.parse_args()

    items, X, secs = extract(args.data, args.cache, args.workers)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([it.speaker.split("_")[0] for it in items])
    if args.bundle is not None:
        from emocli.voice.model import VoiceModel

        model = VoiceModel.load(args.bundle)
        fs = model.settings_["feature_set"]
        held = model.metadata_["held_out_speakers"]
        out = {}
        for name in ("ravdess", "emodb"):
            m = np.isin(g, held) & (corpus == name)
            if m.any():
                sc = report(y[m], model.predict(X[fs][m]), model.labels)
                out[name] = sc
                print(f"{args.bundle} ({fs}) on {name} {', '.join(sorted(set(g[m])))}: acc {sc['accuracy']:.3f}  "
                      f"UAR {sc['uar']:.3f}  (n {sc['n']})  "
                      + ", ".join(f"{k[:4]} {v:.2f}" for k, v in sc["recall"].items() if sc["support"][k]))
        (args.out or args.bundle / "heldout_by_corpus.json").write_text(json.dumps(out, indent=1) + "\n")
        return
    results: dict = {"timing": {"clips": len(secs), "mean_audio_s": float(secs[:, 0].mean()),
                                "whisper_s_per_clip": float(secs[:, 1].mean()),
                                "rich_s_per_clip": float(secs[:, 2].mean()),
                                "note": "1 BLAS thread per worker, 2 workers on a shared 2-core host"}}
    print(f"per clip ({secs[:, 0].mean():.2f} s of audio on average): whisper {secs[:, 1].mean():.3f} s, "
          f"rich {secs[:, 2].mean():.3f} s")

    def show(name, fs, sc, C, cv):
        rec = ", ".join(f"{k[:4]} {sc['recall'][k]:.2f}" for k in sc["labels"] if sc["support"][k])
        print(f"  {name:<22} {fs:<13} acc {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  (n {sc['n']}, C {C:g}, "
              f"cv UAR {cv:.3f})  {rec}")

    # 1. the shipped model's held-out speakers
    train = np.isin(corpus, ["ravdess", "emodb"]) & ~np.isin(g, HELD_OUT)
    print(f"held-out speakers {', '.join(HELD_OUT)}; trained on {train.sum()} clips of "
          f"{len(set(g[train]))} speakers (RAVDESS + EmoDB)")
    for fs in FEATURE_SETS:
        tests = {"ravdess 02/03/15/16": np.isin(g, HELD_OUT) & (corpus == "ravdess"),
                 "emodb 03/08": np.isin(g, HELD_OUT) & (corpus == "emodb"),
                 "savee DC/JE (unseen)": corpus == "savee"}
        test_any = np.any(list(tests.values()), axis=0)
        pred_all = np.empty(len(y), dtype=object)
        pred, C, cv = fit_predict(X[fs][train], y[train], g[train], X[fs][test_any])
        pred_all[test_any] = pred
        for name, m in tests.items():
            labels = [lab for lab in LABELS if lab in set(y[m]) | set(pred_all[m])]
            sc = report(y[m], pred_all[m], labels)
            results.setdefault("heldout", {}).setdefault(name, {})[fs] = {**sc, "C": C, "cv_uar": cv}
            show(name, fs, sc, C, cv)

    # 2. cross-corpus, on the six classes the two corpora share
    six = y != "surprise"
    for src, dst in (("ravdess", "emodb"), ("emodb", "ravdess")):
        tr, te = six & (corpus == src), six & (corpus == dst)
        print(f"cross-corpus {src} -> {dst} (six classes; {tr.sum()} -> {te.sum()} clips)")
        for fs in FEATURE_SETS:
            pred, C, cv = fit_predict(X[fs][tr], y[tr], g[tr], X[fs][te])
            labels = [lab for lab in LABELS if lab != "surprise"]
            sc = report(y[te], pred, labels)
            results.setdefault("cross_corpus", {}).setdefault(f"{src}->{dst}", {})[fs] = {**sc, "C": C, "cv_uar": cv}
            show(f"{src}->{dst}", fs, sc, C, cv)

    out = args.out or args.cache / "results.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
