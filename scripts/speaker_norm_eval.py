"""How much per-speaker normalisation helps the voice features (a measurement for speaker-adaptive scoring).

Every clip's feature vector is z-normalised with the mean and standard deviation of *its own
speaker's* clips (labels never used), training speakers and test speakers alike; a scaler +
logistic regression (C by speaker-grouped CV on the training speakers, UAR) is then fitted
exactly as without normalisation. Held out: RAVDESS actors 02, 03, 15, 16 and EmoDB speakers 03,
08 (the shipped voice model's test speakers), SAVEE DC/JE (never trained on) and the twelve
CREMA-D clips of ../shared (actors 1001 and 1002, six each; trained on every RAVDESS and EmoDB
speaker). Vectors come from scripts/voice_encoder_eval.py's cache.

    python scripts/speaker_norm_eval.py --cache runs/voice_encoder
    python scripts/speaker_norm_eval.py --cache runs/voice_encoder --clips-curve
    python scripts/speaker_norm_eval.py --cache runs/voice_encoder --cross-corpus
    python scripts/speaker_norm_eval.py --cache runs/voice_encoder --savee-loso
    python scripts/speaker_norm_eval.py --cache runs/voice_encoder --variants

``--clips-curve`` measures how many clips a speaker's statistics need (emocli.voice.speaker.MIN_CLIPS)
on the *training* speakers only: 4 speaker folds; the validation speakers' statistics come from k
random clips of theirs (5 draws per k), every clip of theirs is then scored.
``--cross-corpus`` trains on every speaker of one corpus and tests on every speaker of another
(RAVDESS -> EmoDB, EmoDB -> RAVDESS on their six shared emotions; RAVDESS + EmoDB -> SAVEE),
plain and speaker-normalised.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from voice_encoder_eval import HELD_OUT, _features, extract, fit_predict, report  # noqa: E402

from emocli.voice.speaker import SpeakerStats, normalise_groups  # noqa: E402  emo's own per-speaker z-normalisation

ROOT = Path(__file__).resolve().parent.parent


def cross_corpus(args) -> None:
    """Every speaker of one corpus for training, every speaker of another for testing."""
    from emocli.labels import LABELS

    items, X, _ = extract(args.data, args.cache, 1)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    shared = [lab for lab in LABELS if lab != "surprise"]  # EmoDB has no surprise (and boredom is dropped)
    runs = {"ravdess -> emodb": (corpus == "ravdess", corpus == "emodb", shared),
            "emodb -> ravdess": (corpus == "emodb", corpus == "ravdess", shared),
            "ravdess+emodb -> savee": (np.isin(corpus, ["ravdess", "emodb"]), corpus == "savee", list(LABELS))}
    out = {}
    for name, (tr, te, labels) in runs.items():
        tr, te = tr & np.isin(y, labels), te & np.isin(y, labels)
        for fs in ("whisper", "rich", "whisper+rich"):
            for norm in ("plain", "speaker"):
                x = X[fs] if norm == "plain" else normalise_groups(X[fs], g)
                pred, C, _ = fit_predict(x[tr], y[tr], g[tr], x[te])
                sc = report(y[te], pred, labels)
                out[f"{name} / {fs} / {norm}"] = {k: sc[k] for k in ("n", "accuracy", "uar", "recall")}
                print(f"{name:<23} {fs:<13} {norm:<8} acc {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  (n {sc['n']}, "
                      f"C {C:g})", flush=True)
    (args.out or args.cache / "cross_corpus_speaker_norm.json").write_text(json.dumps(out, indent=1) + "\n")


def savee_loso(args) -> None:
    """SAVEE leave-one-speaker-out: RAVDESS + EmoDB training speakers + one SAVEE speaker -> the other.

    The classifier is the shipped voice model's: StandardScaler + RBF SVM (class-balanced) on
    whisper+rich, with its hyper-parameters (plain C 10, gamma 0.25 / d; speaker-normalised C 3,
    gamma 0.1 / d, as voice.json / voice_speaker.json record them), not chosen again; no speed
    copies. The held-out RAVDESS actors and EmoDB speakers are scored by the same models.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emocli.labels import LABELS

    items, X, _ = extract(args.data, args.cache, 1)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    base = np.isin(corpus, ["ravdess", "emodb"]) & ~np.isin(g, HELD_OUT)
    settings = {"plain": (10.0, 0.25), "speaker": (3.0, 0.1)}
    out = {}
    for norm, (C, gmul) in settings.items():
        x = X["whisper+rich"] if norm == "plain" else normalise_groups(X["whisper+rich"], g)
        runs = {"none (RAVDESS + EmoDB only)": base}
        runs.update({f"savee_{s}": base | (g == f"savee_{s}") for s in ("DC", "JE")})
        for added, train in runs.items():
            svm = make_pipeline(StandardScaler(), SVC(C=C, gamma=gmul / x.shape[1], class_weight="balanced"))
            svm.fit(x[train], y[train])
            tests = {"ravdess 02/03/15/16": np.isin(g, HELD_OUT) & (corpus == "ravdess"),
                     "emodb 03/08": np.isin(g, HELD_OUT) & (corpus == "emodb")}
            tests.update({f"savee_{s}": g == f"savee_{s}" for s in ("DC", "JE") if f"savee_{s}" != added})
            for name, m in tests.items():
                sc = report(y[m], svm.predict(x[m]), list(LABELS))
                out[f"{norm} / +{added} / {name}"] = {k: sc[k] for k in ("n", "accuracy", "uar", "recall")}
                print(f"{norm:<8} trained +{added:<28} test {name:<20} acc {sc['accuracy']:.3f}  UAR "
                      f"{sc['uar']:.3f}  (n {sc['n']})", flush=True)
    (args.out or args.cache / "savee_loso.json").write_text(json.dumps(out, indent=1) + "\n")


def clips_curve(args) -> None:
    """Validation UAR when each validation speaker's statistics come from only k of their clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emocli.corpus.splits import speaker_folds
    from emocli.labels import LABELS
    from voice_encoder_eval import C_GRID

    items, X, _ = extract(args.data, args.cache, 1)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    train = np.isin(corpus, ["ravdess", "emodb"]) & ~np.isin(g, HELD_OUT)
    x, y, g = X["whisper+rich"][train], y[train], g[train]
    xz = normalise_groups(x, g)
    rng = np.random.default_rng(0)
    folds = speaker_folds(g, 4, rng)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    C = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, cv=folds, scoring="balanced_accuracy",
                     n_jobs=1).fit(xz, y).best_params_["logisticregression__C"]
    ks = (1, 2, 3, 4, 6, 8, 12, 16, 0)  # 0: every clip of the speaker
    preds = {k: [] for k in ("plain", *ks)}
    truth = []
    for tr, va in folds:
        plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced", C=C))
        plain.fit(x[tr], y[tr])
        adapted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced", C=C))
        adapted.fit(xz[tr], y[tr])
        for spk in np.unique(g[va]):
            idx = va[g[va] == spk]
            for draw in range(5):
                truth.extend(y[idx])
                preds["plain"].extend(plain.predict(x[idx]))
                for k in ks:
                    pick = idx if k == 0 else rng.choice(idx, size=min(k, len(idx)), replace=False)
                    preds[k].extend(adapted.predict(SpeakerStats.of(x[pick]).normalise(x[idx])))
    out = {}
    for k, p in preds.items():
        sc = report(np.array(truth), np.array(p), list(LABELS))
        name = "plain" if k == "plain" else ("all clips" if k == 0 else f"{k} clips")
        out[name] = {"accuracy": sc["accuracy"], "uar": sc["uar"]}
        print(f"{name:<10} accuracy {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}")
    print(f"(training speakers of RAVDESS+EmoDB, 4 speaker folds, 5 draws of k clips per speaker, LR C {C:g})")
    (args.out or args.cache / "speaker_clips_curve.json").write_text(json.dumps(out, indent=1) + "\n")


def variants(args) -> None:
    """Other ways to use a speaker's clips, against per-speaker z-normalisation, with the shipped SVM.

    - plain: no normalisation (C 10, gamma 0.25 / d: the plain model's settings);
    - z: per-speaker z-score (C 3, gamma 0.1 / d: the speaker model's settings), and the same with
      C 10, gamma 0.25 / d;
    - mean: the speaker's mean subtracted, no scaling;
    - rank: each feature replaced by its rank among the speaker's clips (0-1);
    - concat: the plain vector and its z-score side by side;
    - neutral mean (Busso et al.'s iterative feature normalisation): the speaker's mean taken from
      their *neutral* clips only (training speakers: the labelled neutral clips; test speakers:
      the clips the model calls neutral, three iterations from the all-clips z-score), std from
      all clips.

    No speed copies. Every variant is scored by speaker-grouped CV on the training speakers (2
    shuffles x 4 folds); the held-out speakers are then reported for all, once.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emocli.corpus.splits import speaker_folds

    items, X, _ = extract(args.data, args.cache, 1)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    x0 = X["whisper+rich"]

    def svm(C, gmul, x, rows):
        return make_pipeline(StandardScaler(), SVC(C=C, gamma=gmul / x.shape[1], class_weight="balanced")).fit(
            x[rows], y[rows])

    def per_speaker(fn):
        out = np.empty_like(x0)
        for spk in np.unique(g):
            m = g == spk
            out[m] = fn(x0[m], m)
        return out

    def neutral_mean(ref):
        def fn(rows, m):
            st = SpeakerStats.of(rows)
            r = ref[m]
            return SpeakerStats(rows[r].mean(0) if r.sum() >= 2 else st.mean, st.std, len(rows)).normalise(rows)
        return per_speaker(fn)

    from scipy.stats import rankdata

    xz = normalise_groups(x0, g)
    fixed = {"plain": (x0, 10.0, 0.25), "z": (xz, 3.0, 0.1), "z, C 10, gamma 0.25": (xz, 10.0, 0.25),
             "mean": (per_speaker(lambda rows, m: rows - rows.mean(0)), 3.0, 0.1),
             "rank": (per_speaker(lambda rows, m: (rankdata(rows, axis=0) - 0.5) / len(rows)), 3.0, 0.1),
             "concat": (np.hstack([x0, xz]), 3.0, 0.1)}

    def run(name, train, test):
        if name in fixed:
            x, C, gm = fixed[name]
            return svm(C, gm, x, train).predict(x[test])
        xt = neutral_mean(y == "neutral")
        model = svm(3.0, 0.1, xt, train)
        cur = xz
        for _ in range(3):
            called = np.zeros(len(y), bool)
            called[test] = model.predict(cur[test]) == "neutral"
            cur = neutral_mean(called)
        return model.predict(cur[test])

    names = [*fixed, "neutral mean (IFN)"]
    train_all = np.isin(corpus, ["ravdess", "emodb"]) & ~np.isin(g, HELD_OUT)
    idx = np.where(train_all)[0]
    cv = {n: [] for n in names}
    for rep in range(2):
        for tri, vai in speaker_folds(g[idx], 4, np.random.default_rng(rep)):
            tr = np.zeros(len(y), bool)
            tr[idx[tri]] = True
            va = np.zeros(len(y), bool)
            va[idx[vai]] = True
            for n in names:
                p = run(n, tr, va)
                cv[n].append(((p == y[va]).mean(), balanced_accuracy_score(y[va], p)))
    out = {}
    for n in names:
        acc, uar = np.mean(cv[n], axis=0)
        out[n] = {"cv": {"accuracy": acc, "uar": uar}}
        for cname in ("ravdess", "emodb"):
            te = np.isin(g, HELD_OUT) & (corpus == cname)
            p = run(n, train_all, te)
            out[n][cname] = {"accuracy": float((p == y[te]).mean()), "uar": float(balanced_accuracy_score(y[te], p))}
        print(f"{n:<20} CV {acc:.3f} / {uar:.3f}   RAVDESS 02/03/15/16 {out[n]['ravdess']['accuracy']:.3f} / "
              f"{out[n]['ravdess']['uar']:.3f}   EmoDB 03/08 {out[n]['emodb']['accuracy']:.3f} / "
              f"{out[n]['emodb']['uar']:.3f}", flush=True)
    (args.out or args.cache / "speaker_norm_variants.json").write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    from emocli.labels import LABELS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "voice_encoder")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cross-corpus", action="store_true", help="train on one corpus, test on another")
    ap.add_argument("--clips-curve", action="store_true", help="UAR against the clips per speaker statistic "
                    "(training speakers only)")
    ap.add_argument("--savee-loso", action="store_true", help="SAVEE leave-one-speaker-out with the shipped "
                    "voice model's SVM settings")
    ap.add_argument("--variants", action="store_true", help="other per-speaker normalisations (mean, rank, "
                    "concatenation, neutral-based IFN) against the z-score")
    args = ap.parse_args()
    if args.variants:
        variants(args)
        return
    if args.savee_loso:
        savee_loso(args)
        return
    if args.clips_curve:
        clips_curve(args)
        return
    if args.cross_corpus:
        cross_corpus(args)
        return
    items, X, _ = extract(args.data, args.cache, 1)
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    corpus = np.array([s.split("_")[0] for s in g])
    train = np.isin(corpus, ["ravdess", "emodb"]) & ~np.isin(g, HELD_OUT)
    tests = {"ravdess 02/03/15/16": np.isin(g, HELD_OUT) & (corpus == "ravdess"),
             "emodb 03/08": np.isin(g, HELD_OUT) & (corpus == "emodb"),
             "savee DC/JE (unseen)": corpus == "savee"}
    any_test = np.any(list(tests.values()), axis=0)
    out = {}
    for fs in ("whisper", "rich", "whisper+rich"):
        for norm in ("plain", "speaker"):
            x = X[fs] if norm == "plain" else normalise_groups(X[fs], g)
            pred = np.empty(len(y), dtype=object)
            pred[any_test], C, cv = fit_predict(x[train], y[train], g[train], x[any_test])
            for name, m in tests.items():
                sc = report(y[m], pred[m], list(LABELS))
                out[f"{fs} / {norm} / {name}"] = {k: sc[k] for k in ("n", "accuracy", "uar", "recall", "confusion")}
                print(f"{fs:<13} {norm:<8} {name:<22} acc {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  "
                      f"(n {sc['n']}, C {C:g}, cv UAR {cv:.3f})")
    # CREMA-D: two actors the voice models never heard, normalised by their own six clips each
    paths = sorted((args.data / "cremad").glob("1001_*.flv")) + sorted((args.data / "cremad").glob("1002_*.mp3"))
    if paths:
        feats = [_features((str(p), str(args.cache)))[1] for p in paths]
        xc = np.stack([np.concatenate([f["whisper"], f["rich"]]) for f in feats])
        gc = np.array([p.name[:4] for p in paths])
        names = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
        yc = np.array([names[p.name.split("_")[2]] for p in paths])
        every = np.isin(corpus, ["ravdess", "emodb"])
        for norm in ("plain", "speaker"):
            xt = X["whisper+rich"] if norm == "plain" else normalise_groups(X["whisper+rich"], g)
            xq = xc if norm == "plain" else normalise_groups(xc, gc)
            pred, C, cv = fit_predict(xt[every], y[every], g[every], xq)
            right = int((pred == yc).sum())
            out[f"whisper+rich / {norm} / cremad 1001+1002"] = {"n": len(yc), "right": right,
                                                                  "predicted": [str(v) for v in pred]}
            print(f"whisper+rich  {norm:<8} cremad 1001+1002       {right}/{len(yc)} right: "
                  + ", ".join(f"{t[:3]}->{p}" for t, p in zip(yc, pred)))
    (args.out or args.cache / "speaker_norm.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
