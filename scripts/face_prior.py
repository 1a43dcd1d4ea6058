"""Class balance for emo-cnn after training: post-hoc logit adjustment, chosen on held-out training faces.

FER2013's training classes are far from balanced (disgust 1.5% of the faces, happy 25%): a network
trained on them with cross-entropy learns the prior, and rare classes are rarely predicted.
Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021) divides the
scores by ``prior ** tau``: tau 0 is the network as trained, tau 1 the balanced (UAR-optimal)
decision rule when the network is calibrated.

tau is chosen on the part of FER2013/train that ``emo train-video`` held out of training
(face.json's holdout, rebuilt by emocli.training.heldout_part): the largest holdout UAR whose
holdout accuracy stays within ``--max-accuracy-loss`` of tau 0. ``fer2013/val`` (PublicTest) is
never used for the choice, and is only scored with ``--test``, once the choice is made (so it is
not on screen while choosing).

    python scripts/face_prior.py ../shared/data            # choose on the held-out faces
    python scripts/face_prior.py ../shared/data --write    # also store tau in models/default/face.json
    python scripts/face_prior.py ../shared/data --test     # then report fer2013/val for every tau
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TAUS = tuple(round(t, 2) for t in np.arange(0.0, 1.01, 0.1))


def _scores(fm, paths, cache: Path, key: str) -> np.ndarray:
    """Face-model probabilities of image files (cached: they take minutes on a CPU). ``key``
    (:func:`emocli.video_model.network_key`) ties the cache to the network that scored it."""
    from emocli.media import read_image

    if cache.is_file():
        with np.load(cache) as z:
            same = "network" in z and str(z["network"]) == key and list(z["paths"]) == [str(p) for p in paths]
            if same:
                return z["p"]
        print(f"{cache}: scores of another face network or image list; scoring again", file=sys.stderr)
    out = []
    for k in range(0, len(paths), 512):
        out.append(fm.predict_proba([read_image(p) for p in paths[k:k + 512]], batch_size=128))
        print(f"  {min(k + 512, len(paths))}/{len(paths)}", file=sys.stderr, flush=True)
    p = np.concatenate(out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, p=p, paths=np.array([str(q) for q in paths]), network=np.array(key))
    return p


def main() -> None:
    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.datasets import load_corpus
    from emocli.labels import LABELS
    from emocli.metrics import classification_report
    from emocli.training import heldout_part
    from emocli.video_model import FaceModel, adjust_prior, network_key, read_face_meta

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the folder holding fer2013/")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "face_prior")
    ap.add_argument("--max-accuracy-loss", type=float, default=0.005)
    ap.add_argument("--write", action="store_true", help="store the chosen tau and prior in the bundle's face.json")
    ap.add_argument("--test", action="store_true", help="after choosing, also score fer2013/val (the test split: "
                                                        "look once, after the choice)")
    args = ap.parse_args()

    meta = read_face_meta(args.bundle)
    fm = FaceModel.load(args.bundle, runtime=True)
    fm.prior_tau = 0.0  # score with the network as trained, whatever the bundle says
    items, y, ho = heldout_part(args.data / "fer2013" / "train", meta)
    prior = np.bincount(y, minlength=len(LABELS)) / len(y)
    key = network_key(args.bundle)
    p_ho = _scores(fm, [items[i].path for i in ho], args.cache / "holdout.npz", key)

    rows = []
    for tau in TAUS:
        r_ho = classification_report(y[ho], adjust_prior(p_ho, prior, tau).argmax(1), LABELS)
        rows.append({"tau": tau, "holdout": r_ho})
        print(f"tau {tau:.1f}  holdout acc {r_ho['accuracy']:.3f} UAR {r_ho['uar']:.3f}  disgust recall "
              f"{r_ho['recall']['disgust']:.2f}")
    base = rows[0]["holdout"]["accuracy"]
    ok = [r for r in rows if r["holdout"]["accuracy"] >= base - args.max_accuracy_loss]
    best = max(ok, key=lambda r: (round(r["holdout"]["uar"], 4), -r["tau"]))
    print(f"chosen on the holdout ({len(ho)} faces): tau {best['tau']:.1f}; holdout accuracy "
          f"{best['holdout']['accuracy']:.3f}, UAR {best['holdout']['uar']:.3f}")
    if args.test:  # the test split, scored after the choice
        val = load_corpus(args.data / "fer2013" / "val")
        yv = np.array([LABELS.index(it.label) for it in val])
        p_val = _scores(fm, [it.path for it in val], args.cache / "val.npz", key)
        for r in rows:
            r["val"] = classification_report(yv, adjust_prior(p_val, prior, r["tau"]).argmax(1), LABELS)
            print(f"tau {r['tau']:.1f}  fer2013/val acc {r['val']['accuracy']:.3f} UAR {r['val']['uar']:.3f}  "
                  f"disgust recall {r['val']['recall']['disgust']:.2f}")
        print(f"fer2013/val at the chosen tau {best['tau']:.1f}: accuracy {best['val']['accuracy']:.3f}, UAR "
              f"{best['val']['uar']:.3f} (tau 0: {rows[0]['val']['accuracy']:.3f}, {rows[0]['val']['uar']:.3f})")
        print("  val recall: " + ", ".join(f"{k} {v:.2f}" for k, v in best["val"]["recall"].items()))
    summary = {"prior": dict(zip(LABELS, prior.round(6).tolist())), "chosen_tau": best["tau"],
               "rule": f"largest holdout UAR with holdout accuracy >= tau-0 accuracy - {args.max_accuracy_loss}",
               "rows": [{"tau": r["tau"], **{f"{s}_{m}": r[s][m] for s in ("holdout", "val") if s in r
                                             for m in ("accuracy", "uar")},
                         "holdout_recall": r["holdout"]["recall"],
                         **({"val_recall": r["val"]["recall"]} if "val" in r else {})} for r in rows]}
    (args.cache / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.write:
        from emocli.bundle import write_manifest
        from emocli.files import atomic_write_text

        path = args.bundle / "face.json"
        doc = json.loads(path.read_text())
        doc["prior_adjustment"] = {"tau": best["tau"], "prior": summary["prior"],
                                   "chosen": f"{summary['rule']}, on {len(ho)} held-out FER2013 training faces "
                                             "(scripts/face_prior.py)"}
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
        write_manifest(args.bundle, labels=list(LABELS))
        print(f"wrote tau {best['tau']} into {path}")


if __name__ == "__main__":
    main()
