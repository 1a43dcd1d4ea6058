"""Does noise and reverberation augmentation make the voice model carry across corpora and rooms?

Voice vectors (whisper+rich, the shipped model's features) of RAVDESS and EmoDB, computed by
``emo train-audio``'s own code and cache, with copies of every training clip: 0.9x / 1.1x speed
(the shipped augmentation), pink noise 10-20 dB below the speech, and a synthetic room (RT60
0.3-0.9 s). The classifier is the shipped model's (StandardScaler + RBF SVM, C 10, gamma 0.25 / d,
class-balanced), not chosen again for each run. Runs:

- **held-out speakers** (RAVDESS 02, 03, 15, 16; EmoDB 03, 08), trained on the other speakers of
  both corpora; scored as recorded, with pink noise at 10 dB SNR and in a room with RT60 0.7 s
  (the held-out clips are never in training, altered or not);
- **across corpora** on the six emotions both have: trained on RAVDESS's training speakers,
  tested on all ten EmoDB speakers, and the reverse (EmoDB's training speakers -> all 16 RAVDESS
  actors in ../shared).

    python scripts/voice_augment_eval.py ../shared/data --cache runs/voice_cache
    python scripts/voice_augment_eval.py ../shared/data --cache runs/voice_cache --features rich
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emocli.labels import LABELS  # noqa: E402
from emocli.report.metrics import classification_report  # noqa: E402
from emocli.train.voice import _voice_corpora, _voice_rows  # noqa: E402

HELD_OUT = ["ravdess_02", "ravdess_03", "ravdess_15", "ravdess_16", "emodb_03", "emodb_08"]
FEATURES = "whisper+rich"  # the shipped model's; --features rich is about ten times cheaper to compute
TEST_NOISE_SNR = 10.0  # dB: the altered test conditions are fixed, not drawn
TEST_RT60 = 0.7  # s


class _Quiet:
    def print(self, *a, **k):
        print(*a, file=sys.stderr, flush=True)


def altered_test_rows(items, features):
    """The held-out clips with fixed noise (10 dB SNR) and reverberation (RT60 0.7 s).

    One process and no cache: the levels are pinned in this process only, and a cached noise
    copy would not say its level."""
    import emocli.voice.features as af

    # the test conditions are fixed levels: pin the drawn ranges to them while these copies are made
    saved = af.NOISE_SNR_DB, af.REVERB_RT60_S
    af.NOISE_SNR_DB, af.REVERB_RT60_S = (TEST_NOISE_SNR, TEST_NOISE_SNR), (TEST_RT60, TEST_RT60)
    try:
        return _voice_rows(items, [], feature_set=features, augment=False, workers=1, cache=None,
                           console=_Quiet(), perturbations=("noise", "reverb"))
    finally:
        af.NOISE_SNR_DB, af.REVERB_RT60_S = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("runs/voice_cache"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--features", default=FEATURES, help="voice feature set (default: the shipped model's)")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default runs/voice_augment_eval_<features>.json)")
    args = ap.parse_args()
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    console = _Quiet()
    items, _, held, _ = _voice_corpora([args.data / "ravdess", args.data / "emodb"], None, HELD_OUT, console)
    rows = _voice_rows(items, held, feature_set=args.features, augment=True, workers=args.workers, cache=args.cache,
                       console=console, perturbations=("noise", "reverb"))
    test_items = [it for it in items if it.speaker in held]
    alt = altered_test_rows(test_items, args.features)
    # copy index: 0 recorded, 1-2 speed, 3 noise, 4 reverb (training speakers); held-out: 0 only
    configs = {"recorded only": (0,), "+ speed (shipped)": (0, 1, 2), "+ noise + reverb": (0, 3, 4),
               "+ speed + noise + reverb": (0, 1, 2, 3, 4)}
    corpus = np.array([g.split("_")[0] for g in rows.groups])
    test = np.isin(rows.groups, held) & (rows.copy == 0)
    shared = [lab for lab in LABELS if lab != "surprise"]
    out = {}

    def fit(mask):
        svm = make_pipeline(StandardScaler(), SVC(C=10.0, gamma=0.25 / rows.x.shape[1], class_weight="balanced"))
        return svm.fit(rows.x[mask], rows.y[mask])

    def score(name, model, x, y, labels):
        pred = model.predict(x)
        sc = classification_report([labels.index(v) for v in y], [labels.index(v) for v in pred], labels,
                                   absent=None)
        out[name] = {k: sc[k] for k in ("n", "accuracy", "uar", "recall")}
        print(f"{name:<70} acc {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  (n {sc['n']})", flush=True)

    for cname, copies in configs.items():
        train = ~np.isin(rows.groups, held) & np.isin(rows.copy, copies)
        model = fit(train)
        for cp in ("ravdess", "emodb"):
            m = test & (corpus == cp)
            score(f"{cname} / held-out {cp} / as recorded", model, rows.x[m], rows.y[m], list(LABELS))
            for k, cond in ((1, f"noise {TEST_NOISE_SNR:g} dB SNR"), (2, f"reverb RT60 {TEST_RT60:g} s")):
                ma = (alt.copy == k) & np.array([g.startswith(cp) for g in alt.groups])
                score(f"{cname} / held-out {cp} / {cond}", model, alt.x[ma], alt.y[ma], list(LABELS))
        for src, dst in (("ravdess", "emodb"), ("emodb", "ravdess")):
            tr = train & (corpus == src) & np.isin(rows.y, shared)
            te = (corpus == dst) & (rows.copy == 0) & np.isin(rows.y, shared)
            score(f"{cname} / {src} -> {dst} (six emotions)", fit(tr), rows.x[te], rows.y[te], shared)
    args.out = args.out or Path(f"runs/voice_augment_eval_{args.features.replace('+', '_')}.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
