"""Learn how the face experts combine: a linear head on both networks' features, trained on colour faces.

The fitting is ``emo train-head DATA [--model BUNDLE] [--write]`` (:mod:`emocli.train.head`);
this script keeps the experiments' options (``--baseline``, ``--sfew-only``, ``--extract-only``,
``--json``) around the same code.

The face experts (``emocli/face/experts.py``) are averaged per frame with one temperature and one
weight each: that cannot learn that the MobileFaceNet's embedding separates disgust from anger
better than its own RAF-DB-trained last layer does on AffectNet, or that emo-cnn's features
carry what the MobileFaceNet misses on film frames. This script fits a multinomial logistic
regression on the concatenation of

- the MobileFaceNet's 512-d embedding (the input of its last layer), of the aligned face, and
- emo-cnn's 256-d ``fc2`` features (mirror views, as video frames are scored),

each standardised, over the *training* parts of the colour corpora in ``../shared/data``:
AffectNet and SFEW without the parts ``scripts/face_experts.py`` holds out (its calib and test
halves, the same seeds), and RAF-DB without a stratified 15 % (seed 0), itself split into calib
and test halves (seed 1). Class weights are balanced per corpus x class with the square root of
the inverse frequency (the ``train-video --balance sqrt`` rule), so AffectNet's 3,500 happy
faces do not decide alone.

Choices (C, whether RAF-DB's training faces are used) maximise the mean UAR over the three
corpora's calib halves; the temperature is fitted there too. The test halves are reported once,
beside the shipped average of experts, and used for no choice. The MobileFaceNet was trained on
RAF-DB (the original release); on this re-upload it scores about 0.76 on training and held-out
faces alike, so it did not memorise these images, but RAF-DB figures are still not from an
unseen corpus.

Features are cached per set in runs/face_head/ (resumable: chunks of 512 faces), so a rerun
only fits; the cache records which network computed it (emocli.face.model.network_key), and
emo-cnn's features are computed again for another one. For another face network (``--bundle``),
give it its own ``--cache`` folder (so both stay cached) and take
the MobileFaceNet's outputs, which do not depend on emo-cnn, from the first one with
``--reuse-embeddings runs/face_head``: only emo-cnn's features are computed. ``--write`` stores the head in the bundle (``face_head.npz``, named in experts.json)
and the pipeline then uses it for the frames both experts score.

    python scripts/face_head.py ../shared/data            # extract (slow the first time), fit, report
    python scripts/face_head.py ../shared/data --write    # ... and ship the head in models/default
    python scripts/face_head.py ../shared/data --bundle runs/cand --cache runs/face_head_cand \
        --reuse-embeddings runs/face_head                 # a candidate bundle's emo-cnn, same halves
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emocli.train.head import HeadArgs, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the shared data folder (affectnet/, sfew/, rafdb/)")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--cache", type=Path, default=Path("runs/face_head"), help="feature cache folder (one per face network)")
    ap.add_argument("--reuse-embeddings", type=Path, metavar="CACHE",
                    help="read the MobileFaceNet's outputs from this cache folder (same faces); compute emo-cnn's only")
    ap.add_argument("--baseline", type=Path, nargs=2, metavar=("BUNDLE", "CACHE"),
                    help="also report this bundle's own face scores (its head) from its feature cache, beside the "
                         "new head: e.g. --baseline models/default runs/face_head when --bundle is a candidate")
    ap.add_argument("--extract-only", action="store_true", help="fill the feature caches and stop")
    ap.add_argument("--write", action="store_true", help="store the chosen head in the bundle")
    ap.add_argument("--sfew-only", action="store_true",
                    help="the thesis's experiment 1-2 analogue: a head trained on SFEW Train alone, C chosen on "
                         "SFEW's calib half (never written)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    a = ap.parse_args()
    run(HeadArgs(data=a.data, bundle=a.bundle, cache=a.cache, reuse_embeddings=a.reuse_embeddings,
                 baseline=tuple(a.baseline) if a.baseline else None, extract_only=a.extract_only, write=a.write,
                 sfew_only=a.sfew_only, json=a.json))


if __name__ == "__main__":
    main()
