"""The face head: a linear layer on both face experts' features, fitted by ``emo train-head``.

The face experts are averaged per frame with one temperature and one weight each
(:mod:`emocli.train.calibration`): that cannot learn that the MobileFaceNet's embedding separates
disgust from anger better than its own RAF-DB-trained last layer does on AffectNet, or that
emo-cnn's features carry what the MobileFaceNet misses on film frames. This fits a multinomial
logistic regression on the concatenation of the MobileFaceNet's 512-d embedding (of the aligned
face) and emo-cnn's 256-d ``fc2`` features (mirror views, as video frames are scored), each
standardised, over the *training* parts of AffectNet and SFEW (without the halves
``emo calibrate-experts`` holds out) and RAF-DB (without a stratified 15 %, itself halved into
calib and test). Class weights are 1/sqrt(n) per corpus x class. C and whether RAF-DB's training
faces are used are chosen on the calib halves (mean UAR over the three corpora), the temperature
too; the test halves are reported once and used for no choice.

Each face is also read as a video frame frames it (``--framing``): the corpora's images are framed
by their makers (RAF-DB's face fills 0.96 of the image, AffectNet's 0.62), a video frame's face by
emo's detector and its 10 % margin, so emo-cnn's features of one face differ between the two. With
``image+video`` the head learns from both framings of every training face (each at half weight)
and is chosen on both framings of the calib halves; ``image`` is the head as fitted until then.

    emo train-head ../shared/data                          # extract (slow the first time), fit, report
    emo train-head ../shared/data --write                  # ... and store the head in the bundle

Features are cached per set (``--cache``, default ``runs/face_head``; resumable: chunks of 512
faces) and keyed by the network that computed them (:func:`emocli.face.model.network_key`). The
video framing's cache also keeps where the detector found each face (keyed by the detector), so
features of a new expert or emo-cnn are cut from the same boxes without detecting again (YuNet
takes about 15 ms of the 26-33 ms a face's video framing costs: some 7 minutes over the corpora).
``scripts/face_head.py`` keeps the experiments' options (``--baseline``, ``--sfew-only``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli import fingerprints
from emocli.bundle import models_dir, read_manifest_unchecked, write_manifest
from emocli.choices import HEAD_FRAMINGS
from emocli.errors import DatasetError
from emocli.face.detect import YUNET_FILE, Detection, FaceTracker, crop_face, faces_in_frames, get_detector
from emocli.face.experts import (EXPERTS_FILE, HEAD_FILE, RAFDB_FILE, ExpertSet, FaceHead, OnnxExpert, YuNetLandmarks,
                                 fit_temperature, softmax)
from emocli.face.model import FaceModel, network_key, prepare_faces
from emocli.files import atomic_write_text, sha256_file
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.train.calibration import (HELDOUT, RAFDB_HELDOUT, align_crops, combined, expert_key, face_sets, rafdb_halves,
                                      report, with_prior)
# the same held-out parts as `emo calibrate-experts` (seed 0, halves seed 1)


@dataclass
class HeadArgs:
    """What one run of the face head's fitting is given (the CLI's options; the script adds two)."""
    data: Path
    bundle: Path
    cache: Path = Path("runs/face_head")
    reuse_embeddings: Path | None = None
    baseline: tuple[Path, Path] | None = None  # (bundle, its cache): its own face scores beside the new head's
    extract_only: bool = False
    write: bool = False
    sfew_only: bool = False  # the thesis's experiment 1-2 analogue: SFEW Train alone, never written
    json: Path | None = None
    framing: str = HEAD_FRAMINGS[0]  # "choose" (whichever the calib halves favour), "image" or "image+video"


FRAMINGS = HEAD_FRAMINGS[1:]


CHUNK = 512


VIDEO_FACE_WIDTH = 240  # px: the face images' width in the frames of video_framed (a close-up, over the head's 64 px)


def video_framed(imgs: list[np.ndarray], detector, boxes: np.ndarray | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Each face image cropped as a video frame showing it is cropped: scaled to 240 px wide,
    centred on a mid-grey canvas twice its size (so that a face filling its image is found), found
    by ``detector``, chosen and cut (10 % margin) by ``predict``'s own :func:`faces_in_frames`. The
    image itself where no face is found (``predict`` would find none in the frame).

    Returns the crops and the face boxes on the canvases (N, 4: x0, y0, x1, y1; NaN where no face
    was found). Given those ``boxes`` (a cache), the faces are cut by them and not detected again."""
    import cv2

    out, found = [], []
    for i, img in enumerate(imgs):
        h, w = img.shape[:2]
        h, w = round(h * VIDEO_FACE_WIDTH / w), VIDEO_FACE_WIDTH
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC if w >= img.shape[1] else cv2.INTER_AREA)
        canvas = np.full((2 * h, 2 * w) + img.shape[2:], 128, np.uint8)
        canvas[h // 2:h // 2 + h, w // 2:w // 2 + w] = img
        if boxes is None:
            _, crops, dets = faces_in_frames(canvas[None], detector=detector, tracker=FaceTracker())
            box = (dets[0].x0, dets[0].y0, dets[0].x1, dets[0].y1) if dets else (np.nan,) * 4
        else:
            box = tuple(float(v) for v in boxes[i])
            crops = [] if np.isnan(box[0]) else [crop_face(canvas, Detection(*box, score=1.0))]
        out.append(crops[0] if crops else img)
        found.append(box)
    return out, np.array(found, np.float64).reshape(-1, 4)


def framing_key(detector) -> str:
    """What video_framed's boxes depend on: the detector (its weights, threshold, frame size and the
    sizes of its second look) and the canvas."""
    weights = getattr(detector, "model_path", None)
    settings = [repr(getattr(detector, a, None)) for a in ("min_confidence", "side", "retry_scales")]
    return " ".join([getattr(detector, "name", type(detector).__name__), sha256_file(weights) if weights else "",
                     *settings, f"width {VIDEO_FACE_WIDTH}"])


EXPERT_KEYS = ("raf_emb", "raf", "found", "applies")  # the MobileFaceNet's outputs: independent of emo-cnn
CNN_KEYS = ("cnn_feat", "cnn")  # emo-cnn's: independent of the expert


def _read_cache(path: Path, key: str, ekey: str, fkey: str | None = None
                ) -> tuple[dict[str, np.ndarray], bool, bool, np.ndarray | None]:
    """A cache file's arrays (its keys and the video framing's boxes taken out), whether ``key``
    (emo-cnn) filled its emo-cnn features, whether ``ekey`` (the expert file) its MobileFaceNet
    outputs, and the face boxes of the video framing if the detector ``fkey`` found them (else None)."""
    with np.load(path) as z:
        out = dict(z)
    boxes, framing = out.pop("boxes", None), str(out.pop("framing", ""))
    return (out, str(out.pop("network", "")) == key, str(out.pop("expert", "")) == ekey,
            boxes if fkey is not None and framing == fkey else None)


def extract(name: str, paths: list[Path], bundle: Path, landmarker, expert, *, cache: Path = Path("runs/face_head"),
            reuse: Path | None = None, detector=None) -> dict[str, np.ndarray]:
    """Per face: emo-cnn fc2 features and raw scores (mirror views), MobileFaceNet embedding and logits.

    The cache keeps each half for the network that computed it: another emo-cnn scores its half
    again and keeps the MobileFaceNet's outputs, another expert file (``emo train-expert``) the
    other way round. With ``reuse``, a cache folder of the same faces, the MobileFaceNet's outputs
    are read from it (when the same expert file computed them) and only emo-cnn runs. With a
    ``detector``, each face is read as a video frame frames it (:func:`video_framed`).
    """
    final, key, ekey = cache / f"{name}.npz", network_key(bundle), expert_key(bundle)
    fkey = framing_key(detector) if detector is not None else None
    old_cnn = old_exp = old_boxes = None
    if final.is_file():
        out, same, same_exp, old_boxes = _read_cache(final, key, ekey, fkey)
        if same and same_exp:
            return out
        if old_boxes is not None and len(old_boxes) != len(paths):  # another image list: detect again
            old_boxes = None
        print(f"{final}: features of another " + ("face network" if same_exp else "face expert" if same else
                                                   "face network and expert")
              + "; scoring it again", file=sys.stderr)
        old_cnn = {k: out[k] for k in CNN_KEYS} if same else None
        old_exp = {k: out[k] for k in EXPERT_KEYS} if same_exp else None
    cache.mkdir(parents=True, exist_ok=True)
    if reuse is not None and old_exp is None:
        with np.load(reuse / f"{name}.npz") as z:
            old_exp = {k: z[k] for k in EXPERT_KEYS}
            other = str(z["expert"]) if "expert" in z.files else ""
        if len(old_exp["raf"]) != len(paths):
            raise DatasetError(f"{reuse / name}.npz holds {len(old_exp['raf'])} faces, the set has {len(paths)}: "
                             "not the same faces; drop --reuse-embeddings")
        if other != ekey:
            raise DatasetError(f"{reuse / name}.npz: another face expert's outputs than {bundle}'s; drop "
                               "--reuse-embeddings")
    model = None
    parts = []
    t0, new = time.perf_counter(), 0
    for k in range(0, len(paths), CHUNK):
        part = cache / f"{name}.part{k // CHUNK:04d}.npz"
        if part.is_file():
            done_part, same, same_exp, boxes = _read_cache(part, key, ekey, fkey)
            if same and same_exp:
                parts.append(done_part if boxes is None else {**done_part, "boxes": boxes})
                continue
        imgs = [read_image(p) for p in paths[k:k + CHUNK]]
        framed = {}
        if detector is not None:
            imgs, boxes = video_framed(imgs, detector, None if old_boxes is None else old_boxes[k:k + CHUNK])
            framed = {"boxes": boxes}
        if old_cnn is not None:
            out = {key_: v[k:k + CHUNK] for key_, v in old_cnn.items()}
        else:
            if model is None:
                model = FaceModel.load(bundle, runtime=True)
                model.prior_tau = 0.0  # raw network scores; the bundle's prior is applied when reading
            feats, cnn = model.score_inputs(prepare_faces(imgs, model.preprocessing), features=True, views="mirror")
            out = {"cnn_feat": feats.astype(np.float32), "cnn": cnn.astype(np.float32)}
        if old_exp is not None:
            out.update({key_: v[k:k + CHUNK] for key_, v in old_exp.items()})
        else:
            aligned, found, applies = align_crops(imgs, landmarker)
            emb, logits = expert.logits(np.asarray(aligned), embeddings=True)
            out.update(raf_emb=emb.astype(np.float16), raf=softmax(logits).astype(np.float32), found=np.array(found),
                       applies=np.array(applies))
        np.savez(part, **out, **framed, framing=np.array(fkey or ""), network=np.array(key), expert=np.array(ekey))
        parts.append({**out, **framed})
        done, new = min(k + CHUNK, len(paths)), new + len(imgs)
        rate = (time.perf_counter() - t0) / new
        print(f"{name}: {done}/{len(paths)} faces ({rate * 1000:.0f} ms each so far)", file=sys.stderr, flush=True)
    # the boxes only when every part kept them (a part cached before they were kept has none)
    out = {key_: np.concatenate([p[key_] for p in parts]) for key_ in parts[0] if all(key_ in p for p in parts)}
    np.savez(final, **out, framing=np.array(fkey or ""), network=np.array(key), expert=np.array(ekey))
    out.pop("boxes", None)
    for part in cache.glob(f"{name}.part*.npz"):
        part.unlink()
    return out


def run(args: HeadArgs) -> dict | None:
    """Extract the features of every set (cached), fit and choose the head on the calib halves, report
    the test halves, and with ``args.write`` store it in the bundle. Returns the report (None with
    ``extract_only``)."""

    missing = [sub for sub in (*HELDOUT, "rafdb/train") if not (Path(args.data) / sub).is_dir()]
    if missing:
        raise DatasetError(f"{args.data}: no {', '.join(missing)} folder(s); give the folder that holds affectnet/, "
                           "sfew/ and rafdb/ (../shared/data)")
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    expert = OnnxExpert(Path(args.bundle) / RAFDB_FILE)
    sets = face_sets(Path(args.data))
    empty = [name for name, (paths, _) in sets.items() if not len(paths)]
    if empty:
        raise DatasetError(f"{args.data}: no faces in {', '.join(empty)}; each corpus needs enough faces per class "
                           "for a training part and calib and test halves")
    order = ["affectnet-calib", "sfew-calib", "affectnet-test", "sfew-test", "sfew-train", "rafdb-heldout",
             "affectnet-train", "rafdb-train"]
    feats = {name: extract(name, sets[name][0], Path(args.bundle), landmarker, expert, cache=Path(args.cache),
                           reuse=args.reuse_embeddings) for name in order}
    vfeats = None
    if args.framing != "image" and not args.sfew_only:
        detector = get_detector()
        vfeats = {name: extract(name, sets[name][0], Path(args.bundle), landmarker, expert,
                                cache=Path(args.cache) / "video", detector=detector) for name in order}
    if args.extract_only:
        return None
    rafdb_halves(sets, feats)
    if vfeats is not None:
        rafdb_halves(dict(sets), vfeats)
    return fit_and_report(args, sets, feats, vfeats)


def design(f: dict[str, np.ndarray]) -> np.ndarray:
    """The head's input for cached features: [MobileFaceNet embedding, emo-cnn fc2]."""
    return np.hstack([f["raf_emb"].astype(np.float32), f["cnn_feat"].astype(np.float32)])


def balance_weights(groups: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Sample weights 1/sqrt(n) per corpus x class, scaled to mean 1 (train-video's --balance sqrt)."""
    w = []
    for _, y in groups:
        counts = np.bincount(y, minlength=len(LABELS)).astype(float)
        w.append(1.0 / np.sqrt(np.maximum(counts[y], 1.0)))
    w = np.concatenate(w)
    return w / w.mean()


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float) -> FaceHead:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=2000, tol=1e-4)
    lr.fit((x - mean) / scale, y, sample_weight=w)
    coef = np.zeros((len(LABELS), x.shape[1]), np.float32)
    icpt = np.full(len(LABELS), -30.0, np.float32)  # a class no training face had is never predicted
    coef[lr.classes_], icpt[lr.classes_] = lr.coef_, lr.intercept_
    return FaceHead(mean=mean.astype(np.float32), scale=scale.astype(np.float32), coef=coef, intercept=icpt)


def average_of_experts(f: dict[str, np.ndarray], bundle: Path) -> np.ndarray:
    """The shipped average of calibrated experts on these cached (mirror-view) scores, as predict computes it."""
    es = ExpertSet.from_dict(json.loads((bundle / EXPERTS_FILE).read_text()), bundle / EXPERTS_FILE)
    return combined(es, with_prior({"emo-cnn": f["cnn"], "rafdb": f["raf"], "applies": f["applies"]}, bundle))


def bundle_face_scores(f: dict[str, np.ndarray], bundle: Path) -> np.ndarray:
    """The bundle's face scores for cached features, as predict computes them: its head where both
    experts score the face (every face of these corpora: all are 96 px or more, and the head
    takes grey faces too), else the average of experts (colour faces only for the MobileFaceNet)."""

    es = ExpertSet.from_dict(json.loads((bundle / EXPERTS_FILE).read_text()), bundle / EXPERTS_FILE)
    if es.head_ is not None:
        return es.head_.predict_proba(design(f))
    return average_of_experts(f, bundle)


def load_cached(name: str, bundle: Path, cache: Path = Path("runs/face_head")) -> dict[str, np.ndarray]:
    """A set's cached features, only if ``bundle``'s face network computed them (else exit with the fix)."""
    path = cache / f"{name}.npz"
    fix = f"run emo train-head DATA --model {bundle} --cache {cache}"
    if not path.is_file():
        raise DatasetError(f"{path}: no cached features; {fix}")
    out, same, same_exp, _ = _read_cache(path, network_key(bundle), expert_key(bundle))
    if not (same and same_exp):
        raise DatasetError(f"{path}: features of another face network or expert than {bundle}'s; {fix}")
    return out


def baseline_scores(args, sets, names: list[str]) -> dict[str, np.ndarray]:
    """The ``--baseline`` bundle's face scores of the sets ``names``, from its own feature cache."""
    if not args.baseline:
        return {}
    bundle, cache = args.baseline
    feats = {}
    for name in dict.fromkeys("rafdb-heldout" if n.startswith("rafdb-") else n for n in names):
        feats[name] = load_cached(name, bundle, cache)
    if "rafdb-heldout" in feats:
        rafdb_halves({k: v for k, v in sets.items()}, feats)
    return {n: bundle_face_scores(feats[n], bundle) for n in names}


def _framed(feats, vfeats, names: list[str], framing: str) -> np.ndarray:
    """The head's input for the sets ``names`` in one framing or both (all image rows first, then the
    same faces' video rows)."""
    return np.vstack([design(feats[n]) for n in names]
                     + ([design(vfeats[n]) for n in names] if framing == "image+video" else []))


def _calib_uars(head: FaceHead, sets, feats, vfeats, calib: list[str]) -> dict[str, float]:
    """The head's UAR on each calib half, as images and (when there are video-framed features) as video frames."""
    uars = {n: report(sets[n][1], head.predict_proba(design(feats[n])))["uar"] for n in calib}
    if vfeats is not None:
        uars.update({f"{n}@video": report(sets[n][1], head.predict_proba(design(vfeats[n])))["uar"] for n in calib})
    return uars


def _fit_grid(args, sets, feats, vfeats, variants: dict, calib: list[str]) -> tuple[dict, dict]:
    """Fit a head per training variant x framing x C; (mean calib UAR, head) by (variant, framing, C)."""
    framings = FRAMINGS if args.framing == "choose" else (args.framing,)
    if vfeats is None:
        framings = ("image",)
    curve, heads = {}, {}
    for vname, parts in variants.items():
        y = np.concatenate([sets[n][1] for n in parts])
        w = balance_weights([(n, sets[n][1]) for n in parts])
        for framing in framings:
            x = _framed(feats, vfeats, parts, framing)
            reps = len(x) // len(y)  # 2 with both framings
            for c in GRID:
                t0 = time.perf_counter()
                head = fit_head(x, np.tile(y, reps), np.tile(w, reps) / reps, c)
                uars = _calib_uars(head, sets, feats, vfeats, calib)
                key = (vname, framing, c)
                curve[key], heads[key] = float(np.mean(list(uars.values()))), head
                print(f"{vname:22s} {framing:11s} C={c:<6} calib UAR "
                      + " ".join(f"{n.replace('-calib', '')} {u:.3f}" for n, u in uars.items())
                      + f" mean {curve[key]:.3f}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return curve, heads


GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def fit_and_report(args, sets, feats, vfeats=None) -> None:
    calib = ["affectnet-calib", "sfew-calib", "rafdb-calib"]
    variants = {"affectnet+sfew": ["affectnet-train", "sfew-train"],
                "affectnet+sfew+rafdb": ["affectnet-train", "sfew-train", "rafdb-train"]}
    if args.sfew_only:
        calib, variants, args.write = ["sfew-calib"], {"sfew": ["sfew-train"]}, False
    curve, heads = _fit_grid(args, sets, feats, vfeats, variants, calib)
    best = max(curve, key=curve.get)
    head, (vname, framing, c) = heads[best], best
    base = baseline_scores(args, sets, calib + ["affectnet-test", "sfew-test", "rafdb-test"])
    if base:
        uars = {n: report(sets[n][1], base[n])["uar"] for n in calib}
        print(f"baseline {args.baseline[0]}: calib UAR " + " ".join(f"{n.split('-')[0]} {u:.3f}"
                                                                   for n, u in uars.items())
              + f" mean {np.mean(list(uars.values())):.3f}", file=sys.stderr)
    y_cal = np.concatenate([sets[n][1] for n in calib])
    x_cal = _framed(feats, vfeats, calib, "image+video" if vfeats is not None else "image")
    head.temperature = fit_temperature(head.predict_proba(x_cal), np.tile(y_cal, len(x_cal) // len(y_cal)))
    print(f"chosen on the calib halves: {vname}, {framing}, C={c}; temperature {head.temperature:.2f}",
          file=sys.stderr)
    out = {"chosen": {"train_sets": variants[vname], "framing": framing, "C": c, "temperature": head.temperature},
           "calib_uar": {f"{v} {fr} C={c_}": u for (v, fr, c_), u in curve.items()},
           "calib": report(y_cal, head.predict_proba(x_cal[:len(y_cal)])), "sets": {}}  # the image rows
    for name in calib + ["affectnet-test", "sfew-test", "rafdb-test"]:
        out["sets"][name] = _report_set(name, sets[name][1], head, feats[name], None if vfeats is None else
                                        vfeats[name], args.bundle, base.get(name))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.write:
        write_head(args.bundle, head, out, sets, variants[vname], calib)
    return out


def _report_set(name: str, y: np.ndarray, head: FaceHead, f: dict, vf: dict | None, bundle: Path,
                base: np.ndarray | None) -> dict:
    """One set's figures (the average of experts, the head, as video frames, the baseline), printed."""
    row = {"average": report(y, average_of_experts(f, bundle)), "head": report(y, head.predict_proba(design(f)))}
    if vf is not None:
        row["head_video"] = report(y, head.predict_proba(design(vf)))
    if base is not None:
        row["baseline"] = report(y, base)
    print(f"{name:16s} n={len(y):5d}  " + "   ".join(f"{k} {r['accuracy']:.3f}/{r['uar']:.3f}" for k, r in row.items())
          + "  (accuracy/UAR)")
    for k, r in row.items():
        print(f"    recall {k:11s} "
              + " ".join(f"{lab[:3]} {v:.2f}" for lab, v in r["recall"].items() if v is not None))
    return row


def write_head(bundle: Path, head: FaceHead, out: dict, sets, train_sets: list[str], calib: list[str]) -> None:
    es = ExpertSet.from_dict(json.loads((bundle / EXPERTS_FILE).read_text()), bundle / EXPERTS_FILE)
    head.info = {"trained_on": {n: len(sets[n][1]) for n in train_sets},
                 "chosen_on": {n: len(sets[n][1]) for n in calib},
                 "C": out["chosen"]["C"], "balance": "1/sqrt(n) per corpus x class",
                 "framing": out["chosen"]["framing"],
                 "inputs": "MobileFaceNet embedding (512) + emo-cnn fc2 features, mirror views (256), standardised",
                 "heldout": {**{k: {"share": v, "seed": 0, "halves_seed": 1} for k, v in HELDOUT.items()},
                             "rafdb/train": {"share": RAFDB_HELDOUT, "seed": 0, "halves_seed": 1}},
                 "test": {n: {k: out["sets"][n]["head"][k] for k in ("n", "accuracy", "uar")}
                          for n in ("affectnet-test", "sfew-test", "rafdb-test")},
                 "test_as_video_frames": {n: {k: out["sets"][n]["head_video"][k] for k in ("n", "accuracy", "uar")}
                                          for n in ("affectnet-test", "sfew-test", "rafdb-test")
                                          if "head_video" in out["sets"][n]},
                 "command": f"emo train-head DATA --model {bundle} --write"}
    head.save(bundle / HEAD_FILE)

    fingerprints.write(bundle, {"face.head": [p for n in train_sets for p in sets[n][0]]})
    fingerprints.add(bundle, "face.calibration", [p for n in calib for p in sets[n][0]])
    es.head_ = head
    # what `emo fuse --method confusion` weighs the face against the voice with: the head's
    # recall on the calib halves (the average's figures move to average_validation_*)
    for key in ("validation_recall", "validation_accuracy", "validation_uar"):
        if key in es.info_ and f"average_{key}" not in es.info_:  # a rerun keeps the average's own
            es.info_[f"average_{key}"] = es.info_[key]
    es.info_.update(validation_recall=out["calib"]["recall"], validation_accuracy=out["calib"]["accuracy"],
                    validation_uar=out["calib"]["uar"])
    atomic_write_text(bundle / EXPERTS_FILE, json.dumps(es.to_dict(), indent=2) + "\n")
    man = read_manifest_unchecked(bundle)
    write_manifest(bundle, labels=man["labels"], settings=man.get("settings"))
    print(f"wrote {bundle / HEAD_FILE} and {bundle / EXPERTS_FILE}", file=sys.stderr)

