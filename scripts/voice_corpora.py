"""Voice features of many speech corpora at once, and the leave-one-corpus-out table (issue 30).

    python scripts/voice_corpora.py extract CORPUS... --out runs/voice_corpora/rows.npz --cache runs/voice_cache
    python scripts/voice_corpora.py loco runs/voice_corpora/rows.npz [--adapt none|corpus] [--prior ...]

``extract`` computes the shipped feature set (whisper+rich) of every clip of the corpora (folders in a
known layout or CSV manifests with path,label,speaker columns), and of each training clip's copies
(0.9x and 1.1x speed, pink noise, reverb), through emo train-audio's cache, and saves one row per
clip and copy. Speakers given with --test-speakers get no copies (they are the held-out test of
the shipped model and are left out of every fit here).

``loco`` leaves each corpus out in turn: the voice model (StandardScaler + RBF SVM, balanced over
corpus x class) is fitted on the other corpora's clips and copies and scores the left-out corpus's
recordings. Reported per corpus: accuracy, UAR, the largest share of the predictions one class
takes, and the class that takes it. Nothing here writes a shipped file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COPIES = ("1.0", "0.9", "1.1", "noise", "reverb")


def extract(args) -> None:
    from rich.console import Console

    from emocli.corpus.layouts import corpus_names, load_corpus
    from emocli.train.voice import _resolve_speakers, _voice_rows

    console = Console(stderr=True)
    items, corpus_of = [], {}
    for root, name in zip(args.corpora, corpus_names(args.corpora)):  # train-audio's names (nemo for nemo/x.csv)
        found = load_corpus(Path(root), None, modality="audio")
        corpus_of.update({str(it.path): name for it in found})
        items += found
        console.print(f"{root}: {name}, {len(found)} clips, {len({it.speaker for it in found})} speakers")
    held = _resolve_speakers(args.test_speakers.split(","), {it.speaker for it in items}) if args.test_speakers else []
    rows = _voice_rows(items, held, feature_set="whisper+rich", augment=args.copies, workers=args.workers,
                       cache=args.cache, console=console,
                       perturbations=("noise", "reverb") if args.copies else ())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=rows.x.astype(np.float32), y=rows.y, speaker=rows.groups,
                        copy=np.array([COPIES[k] for k in rows.copy]), path=rows.path,
                        corpus=np.array([corpus_of[p] for p in rows.path]), held=np.array(held))
    console.print(f"wrote {out}: {len(rows.x)} rows, {rows.seconds:.0f} s")


def normalise(x: np.ndarray, groups: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Each row z-normalised with its group's mean and std over the ``basis`` rows of that group
    (emocli.voice.speaker.normalise_groups: the statistics of a group's recordings)."""
    from emocli.voice.speaker import normalise_groups

    return normalise_groups(x, groups, basis=basis).astype(np.float32)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, UAR over the classes the corpus has, the largest share of predictions one class takes."""
    from emocli.labels import LABELS

    present = [c for c in LABELS if np.any(y_true == c)]
    recall = {c: float(np.mean(y_pred[y_true == c] == c)) for c in present}
    shares = {c: float(np.mean(y_pred == c)) for c in LABELS}
    top = max(shares, key=shares.get)
    return {"n": int(len(y_true)), "accuracy": float(np.mean(y_pred == y_true)), "uar": float(np.mean(list(recall.values()))),
            "top_share": shares[top], "top_class": top, "recall": recall, "shares": shares}


def fit_predict(x_tr, y_tr, w_tr, x_te, *, C: float, gamma_x: float, classifier: str = "svm") -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if classifier == "svm":
        clf = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma_x / x_tr.shape[1]))
        clf.fit(x_tr, y_tr, svc__sample_weight=w_tr)
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(x_tr, y_tr, logisticregression__sample_weight=w_tr)
    return clf.predict(x_te)


def weights(y: np.ndarray, corpus: np.ndarray, balance: str) -> np.ndarray:
    """class: each class weighs the same; corpus-class: each (corpus, class) cell weighs the same,
    and each corpus the same in total."""
    key = y if balance == "class" else np.char.add(np.char.add(corpus.astype(str), "|"), y.astype(str))
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    if balance == "corpus-class":
        cells = {c: len(np.unique(y[corpus == c])) for c in np.unique(corpus)}
        w = w / np.array([cells[c] for c in corpus])
    return w * len(w) / w.sum()


def loco(args) -> None:
    z = np.load(args.rows)
    x, y, spk, corpus, copy, held = z["x"], z["y"], z["speaker"], z["corpus"], z["copy"], z["held"]
    x = {"all": x, "whisper": x[:, :768], "rich": x[:, 768:]}[args.columns]
    keep = ~np.isin(spk, held) & np.isin(copy, ("1.0", *args.copies))
    if args.corpora:
        keep &= np.isin(corpus, args.corpora)
    x, y, spk, corpus, copy = x[keep], y[keep], spk[keep], corpus[keep], copy[keep]
    real = copy == "1.0"
    if args.adapt != "none":
        # a copy (speed, noise, reverb) is a recording condition of its own: normalised by its own statistics
        def by(kind):
            group = {"corpus": corpus, "speaker": spk}[kind]
            return normalise(x, np.char.add(np.char.add(group.astype(str), "#"), copy.astype(str)),
                             np.ones(len(x), bool))

        x_test = by(args.adapt)
        x = by(args.train_adapt or args.adapt)
    else:
        x_test = x
    table = {}
    corpora = args.only or [str(c) for c in dict.fromkeys(corpus)]
    for c in corpora:
        tr, te = (corpus != c), (corpus == c) & real
        pred = fit_predict(x[tr], y[tr], weights(y[tr], corpus[tr], args.balance), x_test[te], C=args.C,
                           gamma_x=args.gamma, classifier=args.classifier)
        table[c] = scores(y[te], pred)
        r = table[c]
        print(f"{c:10s} n={r['n']:5d} acc {r['accuracy']:.3f} UAR {r['uar']:.3f} top {r['top_class']} {r['top_share']:.2f}",
              flush=True)
    mean = {k: float(np.mean([r[k] for r in table.values()])) for k in ("accuracy", "uar", "top_share")}
    print(f"{'mean':10s}         acc {mean['accuracy']:.3f} UAR {mean['uar']:.3f} top {mean['top_share']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "func"},
                                              "table": table, "mean": mean}, indent=1, default=str))


def shipped(args) -> None:
    """The shipped voice model on every corpus's recordings (speakers it was trained on marked)."""
    from emocli.voice.model import VoiceModel

    z = np.load(args.rows)
    model = VoiceModel.load(Path(args.model))
    trained = set(json.loads((Path(args.model) / "voice.json").read_text())["trained_on"]["speakers"])
    real = (z["copy"] == "1.0") & ~np.isin(z["speaker"], z["held"])
    table = {}
    for c in dict.fromkeys(z["corpus"][real]):
        sel = real & (z["corpus"] == c)
        r = table[str(c)] = scores(z["y"][sel], model.predict(z["x"][sel].astype(np.float64)))
        r["trained_on"] = bool(np.isin(z["speaker"][sel], list(trained)).any())
        print(f"{c:10s} n={r['n']:5d} acc {r['accuracy']:.3f} UAR {r['uar']:.3f} top {r['top_class']} "
              f"{r['top_share']:.2f}" + ("  (trained on)" if r["trained_on"] else ""), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "table": table}, indent=1))


def heldout(args) -> None:
    """Fit on the training speakers of --corpora (recordings and --copies), score the held-out speakers
    of each corpus (the shipped model's test speakers), plain or adapted by their speaker or corpus."""
    z = np.load(args.rows)
    x, y, spk, corpus, copy, held = z["x"], z["y"], z["speaker"], z["corpus"], z["copy"], z["held"]
    use = np.isin(corpus, args.corpora) if args.corpora else np.ones(len(x), bool)
    test = np.isin(spk, held) & (copy == "1.0")
    train = use & ~np.isin(spk, held) & np.isin(copy, ("1.0", *args.copies))
    if args.adapt != "none":
        group = {"corpus": corpus, "speaker": spk}[args.adapt]
        # held-out speakers form a group of their own within their corpus (the run being scored)
        g = np.char.add(np.char.add(group.astype(str), np.where(test, "|held", "")), np.char.add("#", copy.astype(str)))
        x = normalise(x, g, np.ones(len(x), bool))
    pred = fit_predict(x[train], y[train], weights(y[train], corpus[train], args.balance), x[test], C=args.C,
                       gamma_x=args.gamma)
    for c in dict.fromkeys(corpus[test]):
        sel = corpus[test] == c
        r = scores(y[test][sel], pred[sel])
        print(f"{c:10s} n={r['n']:4d} acc {r['accuracy']:.3f} UAR {r['uar']:.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("corpora", nargs="+")
    ex.add_argument("--out", required=True)
    ex.add_argument("--cache", type=Path, default=Path("runs/voice_cache"))
    ex.add_argument("--workers", type=int, default=2)
    ex.add_argument("--test-speakers", default="ravdess_02,ravdess_03,ravdess_15,ravdess_16,emodb_03,emodb_08")
    ex.add_argument("--no-copies", dest="copies", action="store_false")
    lo = sub.add_parser("loco")
    lo.add_argument("rows")
    lo.add_argument("--adapt", choices=("none", "corpus", "speaker"), default="none")
    lo.add_argument("--train-adapt", choices=("corpus", "speaker"), help="normalisation of the training rows "
                    "(default: --adapt's)")
    lo.add_argument("--balance", choices=("class", "corpus-class"), default="class")
    lo.add_argument("--copies", nargs="*", default=[], help="training copies: 0.9 1.1 noise reverb")
    lo.add_argument("--C", type=float, default=10.0)
    lo.add_argument("--gamma", type=float, default=0.5, help="gamma x n_features")
    lo.add_argument("--columns", choices=("all", "whisper", "rich"), default="all")
    lo.add_argument("--classifier", choices=("svm", "logreg"), default="svm")
    lo.add_argument("--only", nargs="*", help="corpora to leave out (default: each)")
    lo.add_argument("--corpora", nargs="*", help="corpora to use at all (default: all)")
    lo.add_argument("--out")
    ho = sub.add_parser("heldout")
    ho.add_argument("rows")
    ho.add_argument("--corpora", nargs="*")
    ho.add_argument("--copies", nargs="*", default=[])
    ho.add_argument("--adapt", choices=("none", "corpus", "speaker"), default="none")
    ho.add_argument("--balance", choices=("class", "corpus-class"), default="class")
    ho.add_argument("--C", type=float, default=10.0)
    ho.add_argument("--gamma", type=float, default=0.5)
    sh = sub.add_parser("shipped")
    sh.add_argument("rows")
    sh.add_argument("--model", default="models/default")
    sh.add_argument("--out")
    args = ap.parse_args(argv)
    {"extract": extract, "loco": loco, "shipped": shipped, "heldout": heldout}[args.cmd](args)


if __name__ == "__main__":
    main()
