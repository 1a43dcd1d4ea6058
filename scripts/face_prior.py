"""Class balance for emo-cnn after training: post-hoc logit adjustment, chosen on held-out training faces.

FER2013's training classes are far from balanced (disgust 1.5% of the faces, happy 25%): a network
trained on them with cross-entropy learns the prior, and rare classes are rarely predicted.
Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021) divides the
scores by ``prior ** tau``: tau 0 is the network as trained, tau 1 the balanced (UAR-optimal)
decision rule when the network is calibrated.

tau is chosen on the part of FER2013/train that ``emo train-video`` held out of training
(face.json's holdout, rebuilt by emocli.train.face.heldout_part): the largest holdout UAR whose
holdout accuracy stays within ``--max-accuracy-loss`` of tau 0. ``fer2013/val`` (PublicTest) is
never used for the choice, and is only scored with ``--test``, once the choice is made (so it is
not on screen while choosing).

    python scripts/face_prior.py ../shared/data --test     # choose, then report fer2013/val for every tau

The choice itself is `emo tune-prior BUNDLE ../shared/data/fer2013/train [--write]`
(:func:`emocli.train.face.tune_prior_command`); this script adds only the test split's report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from rich.console import Console

    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.corpus.layouts import load_corpus
    from emocli.labels import LABELS
    from emocli.report.metrics import classification_report
    from emocli.train.data import face_probabilities
    from emocli.train.tuning import MAX_ACCURACY_LOSS, tune_prior_command
    from emocli.face.model import FaceModel, adjust_prior

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the folder holding fer2013/")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--max-accuracy-loss", type=float, default=MAX_ACCURACY_LOSS)
    ap.add_argument("--write", action="store_true", help="store the chosen tau and prior in the bundle's face.json")
    ap.add_argument("--test", action="store_true", help="after choosing, also score fer2013/val (the test split: "
                                                        "look once, after the choice)")
    args = ap.parse_args()
    summary = tune_prior_command(bundle=args.bundle, data=args.data / "fer2013" / "train", write=args.write,
                                 console=Console(stderr=True), max_accuracy_loss=args.max_accuracy_loss)
    if not args.test:  # the test split, scored after the choice
        return
    fm = FaceModel.load(args.bundle, runtime=True)
    fm.prior_tau = 0.0
    prior = np.array([summary["prior"][lab] for lab in LABELS])
    val = load_corpus(args.data / "fer2013" / "val")
    yv = np.array([LABELS.index(it.label) for it in val])
    p_val = face_probabilities(fm, [it.path for it in val])
    for r in summary["rows"]:
        rep = classification_report(yv, adjust_prior(p_val, prior, r["tau"]).argmax(1), LABELS)
        mark = "  <- chosen" if r["tau"] == summary["chosen_tau"] else ""
        print(f"tau {r['tau']:.1f}  fer2013/val acc {rep['accuracy']:.3f} UAR {rep['uar']:.3f}  "
              f"disgust recall {rep['recall']['disgust']:.2f}{mark}")


if __name__ == "__main__":
    main()
