"""Does a face head that also learned from low-detail faces score magnified small faces better?

Issue 27: FER2013's 48-px faces shown large in a video (``bench/expressive.py``) are scored by the
face head (every face of 64 px and more), which learned from sharp faces only, and get 0.50 per
clip against 0.66 as images (emo-cnn alone). This fits the head as ``emo train-head`` does, on the
training parts alone, on the training parts plus one low-detail copy of each face (the image
brought down to 48 px wide and back up, bicubic, as a 48-px face magnified in a video; every other
copy grey), and on the training parts plus half of FER2013's magnified held-out faces; chooses C
on the calib halves as ``emo train-head`` does (mean UAR of the three corpora's calib halves as
they are), and reports:

- the calib and test halves as they are (what the head is shipped for);
- FER2013's held-out training faces magnified five times (48 -> 240 px, bicubic, grey), the faces
  ``bench/expressive.py`` shows as video: those its clips use are reported apart; of the others,
  half (seed 1) is trained on by a third head (sharp faces + these) and half reported;
- emo-cnn alone on the same faces (the image path's expert);
- a router instead of a new head: a logistic regression told the low-detail copies from the faces
  they came from (on the MobileFaceNet embedding and emo-cnn's features), sending the faces it calls
  low-detail to emo-cnn alone, as the image path sends faces under 64 px: the share of each set it
  routes, and the accuracy of the shipped head with that routing.

    python scripts/head_lowres.py ../shared/data --cache runs/face_head --work runs/lowres

Features are cached as ``emo train-head`` caches them (run ``emo train-head`` first to reuse the
originals). A record of the measurement in docs/experiments.md; it writes no shipped file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from emocli.bundle import DEFAULT_BUNDLE, models_dir
from emocli.corpus.splits import stratified_holdout
from emocli.face.detect import YUNET_FILE
from emocli.face.experts import RAFDB_FILE, OnnxExpert, YuNetLandmarks, fit_temperature
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.train.calibration import face_sets, rafdb_halves, report, with_prior
from emocli.train.data import heldout_part
from emocli.train.head import balance_weights, design, extract, fit_head

TRAIN = ["affectnet-train", "sfew-train", "rafdb-train"]
CALIB = ["affectnet-calib", "sfew-calib", "rafdb-calib"]
TEST = ["affectnet-test", "sfew-test", "rafdb-test"]
LOW_WIDTH = 48  # pixels: FER2013's face width
SHOWN = 240  # pixels: the width bench/expressive.py shows a face at


def low_detail(img: np.ndarray, grey: bool) -> np.ndarray:
    """``img`` brought down to LOW_WIDTH px wide and back to its size, bicubic; grey (as RGB) if asked."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (LOW_WIDTH, max(1, round(h * LOW_WIDTH / w))), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if grey:
        out = out if out.ndim == 2 else cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    return out


def magnified(img: np.ndarray) -> np.ndarray:
    """A 48-px face as bench/expressive.py shows it: SHOWN px wide, bicubic."""
    h, w = img.shape[:2]
    return cv2.resize(img, (SHOWN, round(h * SHOWN / w)), interpolation=cv2.INTER_CUBIC)


def written(paths: list[Path], out: Path, make) -> list[Path]:
    """``make(image, k)`` of each path, written once as PNG under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for k, p in enumerate(paths):
        q = out / f"{k:06d}.png"
        if not q.is_file():
            img = make(read_image(p), k)
            cv2.imwrite(str(q), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        done.append(q)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--cache", type=Path, default=Path("runs/face_head"))
    ap.add_argument("--work", type=Path, default=Path("runs/lowres"))
    ap.add_argument("--clips", type=Path, default=Path("runs/expressive/test-30/clips.json"),
                    help="bench/expressive.py's clip index: the FER2013 faces its clips show are reported apart")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    expert = OnnxExpert(args.bundle / RAFDB_FILE)
    sets = face_sets(args.data)

    def feats_of(name, paths):
        return extract(name, paths, args.bundle, landmarker, expert, cache=args.cache)

    feats = {n: feats_of(n, sets[n][0]) for n in
             ["affectnet-calib", "sfew-calib", "affectnet-test", "sfew-test", "rafdb-heldout", *TRAIN]}
    rafdb_halves(sets, feats)
    for n in TRAIN:
        low = written(sets[n][0], args.work / n, lambda img, k: low_detail(img, grey=bool(k % 2)))
        feats[n + "-low"] = feats_of(n + "-low", low)
        sets[n + "-low"] = (low, sets[n][1])
    # FER2013's held-out training faces, magnified; those bench/expressive.py's clips use apart
    meta = json.loads((args.bundle / "face.json").read_text())
    items, y, ho = heldout_part(args.data / "fer2013" / "train", meta)
    fer_paths = [Path(items[i].path) for i in ho]
    fer = written(fer_paths, args.work / "fer2013-heldout-x5", lambda img, k: magnified(img))
    feats["fer-x5"] = feats_of("fer2013-heldout-x5", fer)
    if not args.clips.is_file():
        raise SystemExit(f"{args.clips}: missing; run `python bench/expressive.py` first (it writes the clip index)")
    bench = {str(Path(c["face"]).resolve()) for c in json.loads(args.clips.read_text()) if c["corpus"] == "fer2013"}
    in_bench = np.array([str(p.resolve()) in bench for p in fer_paths])
    y_fer = y[ho]
    sets["fer-x5-bench"] = ([p for p, k in zip(fer, in_bench) if k], y_fer[in_bench])
    feats["fer-x5-bench"] = {k: v[in_bench] for k, v in feats["fer-x5"].items()}

    # FER2013's magnified faces as training faces too: the faces no bench clip uses, halved (seed 1); the
    # half not trained on is reported
    rest = np.where(~in_bench)[0]
    tr, te = stratified_holdout(y_fer[rest], 0.5, 1)
    for name, idx in (("fer-x5-train", rest[tr]), ("fer-x5-test", rest[te])):
        sets[name] = ([fer[i] for i in idx], y_fer[idx])
        feats[name] = {k: v[idx] for k, v in feats["fer-x5"].items()}
    reported = CALIB + TEST + ["fer-x5-test", "fer-x5-bench"]
    rows = {}
    for variant, parts in (("sharp", TRAIN), ("sharp+low", TRAIN + [n + "-low" for n in TRAIN]),
                           ("sharp+fer2013 x5", TRAIN + ["fer-x5-train"])):
        x = np.vstack([design(feats[n]) for n in parts])
        yy = np.concatenate([sets[n][1] for n in parts])
        w = balance_weights([(n, sets[n][1]) for n in parts])
        best = None
        for c in (0.001, 0.003, 0.01, 0.03):
            head = fit_head(x, yy, w, c)
            uar = float(np.mean([report(sets[n][1], head.predict_proba(design(feats[n])))["uar"] for n in CALIB]))
            print(f"{variant:10s} C={c:<6} calib mean UAR {uar:.3f}", file=sys.stderr, flush=True)
            if best is None or uar > best[0]:
                best = (uar, c, head)
        _, c, head = best
        p_cal = np.vstack([head.predict_proba(design(feats[n])) for n in CALIB])
        head.temperature = fit_temperature(p_cal, np.concatenate([sets[n][1] for n in CALIB]))
        rows[variant] = {"C": c, **{n: report(sets[n][1], head.predict_proba(design(feats[n]))) for n in reported}}
    cnn = {n: report(sets[n][1], with_prior({"emo-cnn": feats[n]["cnn"]}, args.bundle)["emo-cnn"])
           for n in ("fer-x5-test", "fer-x5-bench")}
    print(f"\n| head | C | {' | '.join(CALIB + TEST)} | FER2013 x5 (test half) | FER2013 x5 (bench faces) |")
    print("|---" * (len(CALIB + TEST) + 4) + "|")
    for v, r in rows.items():
        print(f"| {v} | {r['C']} | " + " | ".join(f"{r[n]['accuracy']:.3f} / {r[n]['uar']:.3f}"
                                                 for n in reported) + " |")
    print("| emo-cnn alone (prior) | | " + " | ".join("" for _ in CALIB + TEST) + " | "
          + " | ".join(f"{cnn[n]['accuracy']:.3f} / {cnn[n]['uar']:.3f}" for n in cnn) + " |")
    print(f"\nFER2013 x5 faces: {len(tr)} trained on (sharp+fer2013 x5), {len(te)} reported, {int(in_bench.sum())} "
          f"in the bench's clips; labels {', '.join(LABELS)}")
    routed = route(sets, feats, args.bundle)
    print("\n| set | routed to emo-cnn | shipped head | head with the router |\n|---|---|---|---|")
    for n, r in routed.items():
        print(f"| {n} | {r['share']:.3f} | {r['head']:.3f} | {r['routed']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"heads": rows, "emo-cnn": cnn, "router": routed}, indent=1))


def route(sets, feats, bundle: Path) -> dict[str, dict[str, float]]:
    """The low-detail router: fitted on the training parts (sharp 0, low-detail copy 1), applied to the
    shipped head's sets; {set: share routed to emo-cnn, head accuracy, accuracy with the routing}."""
    from sklearn.linear_model import LogisticRegression

    from emocli.face.experts import EXPERTS_FILE, ExpertSet

    x = np.vstack([design(feats[n]) for n in TRAIN] + [design(feats[n + "-low"]) for n in TRAIN])
    y = np.repeat([0, 1], [sum(len(sets[n][1]) for n in TRAIN)] * 2)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    router = LogisticRegression(C=0.01, max_iter=1000).fit((x - mean) / scale, y)
    head = ExpertSet.from_dict(json.loads((bundle / EXPERTS_FILE).read_text()), bundle / EXPERTS_FILE).head_
    out = {}
    for n in CALIB + TEST + ["fer-x5-test", "fer-x5-bench"]:
        f, yy = feats[n], sets[n][1]
        low = router.predict_proba((design(f) - mean) / scale)[:, 1] > 0.5
        p_head = head.predict_proba(design(f))
        p_cnn = with_prior({"emo-cnn": f["cnn"]}, bundle)["emo-cnn"]
        mixed = np.where(low[:, None], p_cnn, p_head)
        out[n] = {"share": float(low.mean()), "head": float(np.mean(p_head.argmax(1) == yy)),
                  "routed": float(np.mean(mixed.argmax(1) == yy))}
    return out


if __name__ == "__main__":
    main()
