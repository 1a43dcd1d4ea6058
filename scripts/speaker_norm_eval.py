"""How much per-speaker normalisation helps the voice features (a measurement for speaker-adaptive scoring).

Every clip's feature vector is z-normalised with the mean and standard deviation of *its own
speaker's* clips (labels never used), training speakers and test speakers alike; a scaler +
logistic regression (C by speaker-grouped CV on the training speakers, UAR) is then fitted
exactly as without normalisation. Held out: RAVDESS actors 02, 03, 15, 16 and EmoDB speakers 03,
08 (the shipped voice model's test speakers), SAVEE DC/JE (never trained on) and the twelve
CREMA-D clips of ../shared (actors 1001 and 1002, six each; trained on every RAVDESS and EmoDB
speaker). Vectors come from scripts/voice_encoder_eval.py's cache.

    python scripts/speaker_norm_eval.py --cache runs/voice_encoder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_encoder_eval import HELD_OUT, _features, extract, fit_predict, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def per_speaker_z(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row z-normalised by the mean and std of the rows of its group (std floored)."""
    out = np.empty_like(x, dtype=np.float64)
    for g in np.unique(groups):
        m = groups == g
        mu, sd = x[m].mean(0), x[m].std(0)
        out[m] = (x[m] - mu) / np.maximum(sd, 1e-6 + 1e-3 * np.abs(mu))
    return out


def main() -> None:
    from emocli.labels import LABELS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "voice_encoder")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
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
            x = X[fs] if norm == "plain" else per_speaker_z(X[fs], g)
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
            xt = X["whisper+rich"] if norm == "plain" else per_speaker_z(X["whisper+rich"], g)
            xq = xc if norm == "plain" else per_speaker_z(xc, gc)
            pred, C, cv = fit_predict(xt[every], y[every], g[every], xq)
            right = int((pred == yc).sum())
            out[f"whisper+rich / {norm} / cremad 1001+1002"] = {"n": len(yc), "right": right,
                                                                  "predicted": [str(v) for v in pred]}
            print(f"whisper+rich  {norm:<8} cremad 1001+1002       {right}/{len(yc)} right: "
                  + ", ".join(f"{t[:3]}->{p}" for t, p in zip(yc, pred)))
    (args.out or args.cache / "speaker_norm.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
