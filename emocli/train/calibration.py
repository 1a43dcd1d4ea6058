"""The face experts' calibration: temperatures and weights fitted on held-out faces (``emo calibrate-experts``).

emo-cnn trained on FER2013 only and the RAF-DB MobileFaceNet on RAF-DB only, so AffectNet and
SFEW faces are new to both. A fixed, stratified share of each (:data:`HELDOUT`, seed 0; the rest
stays free for training, e.g. the face head's) is split in two halves: ``calib`` (each expert's
temperature, by negative log-likelihood, and the expert weights are chosen there) and ``test``
(reported, never used for a choice). fer2013/val is reported too and used for no choice.

    emo calibrate-experts ../shared/data                 # report
    emo calibrate-experts ../shared/data --write         # + experts.json in the bundle

Per-image scores are cached (``--cache``, default ``runs/face_experts``), keyed by the bundle's
face network and views: another network's scores are recomputed, never reused. The cache holds
emo-cnn's scores as the network gives them; the bundle's prior adjustment (face.json
``prior_adjustment``, ``emo tune-prior``) is applied after reading them, as ``predict`` does.
The face head (``emo train-head``) uses the same held-out parts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from emocli import fingerprints
from emocli.bundle import models_dir, read_manifest_unchecked, write_manifest
from emocli.corpus.splits import stratified_holdout
from emocli.errors import DatasetError
from emocli.face.detect import YUNET_FILE
from emocli.face.experts import (CROP_LANDMARKS, EXPERTS_FILE, RAFDB_FILE, ExpertSet, OnnxExpert, YuNetLandmarks,
                                 align_face, expert_applies, fit_temperature, softmax, temper)
from emocli.face.model import FaceModel, adjust_prior, network_key, prepare_faces
from emocli.files import atomic_write_text, sha256_file
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.report.metrics import classification_report
from emocli.train.face import training_images

HELDOUT = {"affectnet/train": 0.15, "sfew/Train": 0.3}  # share of each corpus held out of training, seed 0
FINE_TUNE_INFO = "rafdb_fine_tune"  # experts.json info: emo train-expert's record of the expert file
CACHE = Path("runs/face_experts")  # the per-image score cache, relative to the working folder


def corpus_parts(data: Path, sub: str, share: float) -> dict[str, tuple[list[Path], np.ndarray]]:
    """One corpus folder's parts: ``share`` held out of training (stratified, seed 0), halved
    (seed 1) into calib and test; {"<corpus>-train"|"-calib"|"-test": (paths, labels)}."""
    items, _ = training_images(data / sub)
    y = np.array([LABELS.index(it.label) for it in items])
    tr, ho = stratified_holdout(y, share, 0)
    name = sub.split("/")[0]
    parts = {f"{name}-train": tr}
    parts[f"{name}-calib"], parts[f"{name}-test"] = (ho[k] for k in stratified_holdout(y[ho], 0.5, 1))
    return {n: ([items[i].path for i in idx], y[idx]) for n, idx in parts.items()}


def heldout_sets(data: Path) -> dict[str, tuple[list[Path], np.ndarray]]:
    """{"<corpus>-calib"|"<corpus>-test": (paths, labels)} and fer2013-val."""
    sets = {}
    for sub, share in HELDOUT.items():
        sets.update({n: v for n, v in corpus_parts(data, sub, share).items() if not n.endswith("-train")})
    items, _ = training_images(data / "fer2013" / "val")
    sets["fer2013-val"] = ([it.path for it in items], np.array([LABELS.index(it.label) for it in items]))
    return sets


RAFDB_HELDOUT = 0.15  # share of rafdb/train held out of the face head's training (seed 0), halved (seed 1)


def face_sets(data: Path) -> dict[str, tuple[list[Path], np.ndarray]]:
    """{name: (paths, labels)}: <corpus>-train, <corpus>-calib, <corpus>-test, rafdb-train, rafdb-heldout."""
    sets = {}
    for sub, share in HELDOUT.items():
        sets.update(corpus_parts(data, sub, share))
    items, _ = training_images(data / "rafdb" / "train")
    y = np.array([LABELS.index(it.label) for it in items])
    tr, ho = stratified_holdout(y, RAFDB_HELDOUT, 0)
    sets["rafdb-train"] = ([items[i].path for i in tr], y[tr])
    sets["rafdb-heldout"] = ([items[i].path for i in ho], y[ho])
    return sets


def rafdb_halves(sets, feats) -> None:
    """RAF-DB's held-out part split into calib and test halves (seed 1), as the other corpora's."""
    y = sets["rafdb-heldout"][1]
    paths = sets["rafdb-heldout"][0]
    for name, idx in zip(("rafdb-calib", "rafdb-test"), stratified_holdout(y, 0.5, 1)):
        sets[name] = ([paths[i] for i in idx], y[idx])
        feats[name] = {k: v[idx] for k, v in feats["rafdb-heldout"].items()}


def score_set(name: str, paths: list[Path], bundle: Path, landmarker, expert, cache_dir: Path = CACHE,
              log=print) -> dict[str, np.ndarray]:
    """emo-cnn's scores (the bundle's views, no prior) and the MobileFaceNet's of a set of face images,
    whether YuNet found landmarks, and whether the expert applies; cached per network in ``cache_dir``."""

    cache, key = cache_dir / f"{name}.npz", f"{network_key(bundle)} {expert_key(bundle)}"
    if cache.is_file():
        out = dict(np.load(cache))
        if str(out.get("network", "")) == key and len(out["emo-cnn"]) == len(paths):
            return out
        log(f"{cache}: scores of another face network, face expert or image list; scoring again")
    model = FaceModel.load(bundle, runtime=True)
    model.prior_tau = 0.0  # cache the network's own scores; the prior adjustment is applied on reading
    cnn, raf, found, applies = [], [], [], []
    t_cnn = t_raf = t_lm = 0.0
    for k in range(0, len(paths), 64):
        imgs = [read_image(p) for p in paths[k:k + 64]]
        t0 = time.perf_counter()
        cnn.append(model.score_inputs(prepare_faces(imgs, model.preprocessing), views="bundle"))
        t1 = time.perf_counter()
        aligned, ok, app = align_crops(imgs, landmarker)
        found += ok
        applies += app
        t2 = time.perf_counter()
        raf.append(expert.logits(np.asarray(aligned)))
        t3 = time.perf_counter()
        t_cnn, t_lm, t_raf = t_cnn + t1 - t0, t_lm + t2 - t1, t_raf + t3 - t2
    n = len(paths)
    log(f"{name}: {n} faces; per face emo-cnn (bundle views) {1000 * t_cnn / n:.2f} ms, YuNet + warp "
        f"{1000 * t_lm / n:.2f} ms, MobileFaceNet {1000 * t_raf / n:.2f} ms; YuNet found {np.mean(found):.1%}")
    out = {"emo-cnn": np.concatenate(cnn), "rafdb": softmax(np.concatenate(raf)), "yunet_found": np.array(found),
           "applies": np.array(applies), "network": np.array(key)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def expert_key(bundle: Path) -> str:
    """What the MobileFaceNet's cached outputs depend on: the sha256 of the bundle's expert file
    (``emo train-expert`` writes another one)."""
    path = Path(bundle) / RAFDB_FILE
    return sha256_file(path) if path.is_file() else "none"


def align_crops(imgs: list[np.ndarray], landmarker) -> tuple[list[np.ndarray], list[bool], list[bool]]:
    """Face crops aligned for the MobileFaceNet (YuNet's landmarks, else the crop template), whether
    YuNet found them, and whether the expert applies (colour, large enough)."""
    aligned, found, applies = [], [], []
    for img in imgs:
        applies.append(expert_applies(img))
        lm = landmarker(img)
        found.append(lm is not None)
        if lm is None:
            h, w = img.shape[:2]
            lm = CROP_LANDMARKS * np.float32([w, h])
        aligned.append(align_face(img, lm))
    return aligned, found, applies


def with_prior(s: dict[str, np.ndarray], bundle: Path) -> dict[str, np.ndarray]:
    """Cached scores with the bundle's emo-cnn prior adjustment applied (as ``predict`` applies it)."""
    fm = FaceModel.load(bundle, runtime=True)
    if not fm.prior_tau:
        return s
    return {**s, "emo-cnn": adjust_prior(s["emo-cnn"], fm.prior, fm.prior_tau)}


def crop_landmarks(paths: list[Path], landmarker) -> np.ndarray:
    """Mean YuNet landmarks as shares of the side, over square crops framed like faces.crop_face."""
    pts = []
    for p in paths:
        img = read_image(p)
        lm = landmarker(img)
        if lm is not None:
            pts.append(lm / np.float32([img.shape[1], img.shape[0]]))
    return np.mean(pts, 0) if pts else CROP_LANDMARKS


def combined(es: ExpertSet, s: dict[str, np.ndarray]) -> np.ndarray:
    """The experts' face score as the pipeline computes it: rafdb only where it applies."""
    cnn = es.calibrate("emo-cnn", s["emo-cnn"])
    raf = es.calibrate("rafdb", s["rafdb"])
    raf[~s["applies"]] = np.nan
    return es.mix({"emo-cnn": cnn, "rafdb": raf}, fallback=cnn)


def report(y: np.ndarray, p: np.ndarray) -> dict:
    r = classification_report(y, p.argmax(1), LABELS)
    return {k: r[k] for k in ("n", "accuracy", "uar", "recall")}


def calibrate_experts(data: Path, bundle: Path, *, cache: Path = CACHE, write: bool = False, console=None
                      ) -> dict:
    """Fit each expert's temperature and the experts' weights on the calib halves of AffectNet and
    SFEW (:data:`HELDOUT`), report every held-out set, and with ``write`` store ``experts.json`` in
    ``bundle`` (its ``validation_recall`` is what ``emo fuse --method confusion`` weighs the face
    with) and refresh the manifest. Returns the report."""

    log = (lambda msg: console.print(msg, markup=False, highlight=False)) if console is not None else print
    data, bundle = Path(data), Path(bundle)
    missing = [sub for sub in (*HELDOUT, "fer2013/val") if not (data / sub).is_dir()]
    if missing:
        raise DatasetError(f"{data}: no {', '.join(missing)} folder(s); give the folder that holds affectnet/, sfew/ "
                           "and fer2013/ (../shared/data)")
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    expert = OnnxExpert(bundle / RAFDB_FILE)
    sets = heldout_sets(data)
    empty = [name for name, (paths, _) in sets.items() if not len(paths)]
    if empty:
        raise DatasetError(f"{data}: no faces in the held-out part(s) {', '.join(empty)}: each corpus needs enough "
                           f"faces per class for a calib and a test half ({', '.join(f'{k} {v:.0%}' for k, v in HELDOUT.items())} "
                           "of them are held out); add faces")
    scores = {name: score_set(name, paths, bundle, landmarker, expert, cache, log=log)
              for name, (paths, _) in sets.items()}
    scores = {name: with_prior(s, bundle) for name, s in scores.items()}

    calib = [n for n in sets if n.endswith("-calib")]
    experts, temps, curve = _fit_experts(sets, scores, calib)
    out = {"temperatures": temps, "weights": experts.weights_, "weight_curve_uar": curve, "sets": {}}
    for name, (paths, y) in sets.items():
        out["sets"][name] = row = _set_row(y, scores[name], experts, temps)
        log(f"{name:16s} n={len(y):5d}  emo-cnn {row['emo-cnn']['accuracy']:.3f}/{row['emo-cnn']['uar']:.3f}  "
            f"rafdb {row['rafdb']['accuracy']:.3f}/{row['rafdb']['uar']:.3f}  "
            f"combined {row['combined']['accuracy']:.3f}/{row['combined']['uar']:.3f}  (accuracy/UAR; rafdb "
            f"applies to {row['rafdb_applies']:.0%})")
    log(f"temperatures {temps}; weights {experts.weights_}; UAR by emo-cnn weight on calib: "
        + ", ".join(f"{w:.2f}:{u:.3f}" for w, u in curve.items()))
    if write:
        _write_experts(bundle, experts, sets, scores, calib, command=f"emo calibrate-experts {data} --model {bundle} --write")
        log(f"wrote {bundle / EXPERTS_FILE}")
    return out


def _fit_experts(sets: dict, scores: dict, calib: list[str]) -> tuple[ExpertSet, dict, dict]:
    """Each expert's temperature (NLL on the calib halves) and the emo-cnn weight (rafdb 1 - w) maximising
    UAR on the calibration halves, averaged over the corpora so the larger one does not decide alone;
    equal weights unless the calibration halves clearly prefer others (2 UAR points).
    Returns (experts, temperatures, UAR by weight)."""
    y_cal = np.concatenate([sets[n][1] for n in calib])
    temps = {e: fit_temperature(np.concatenate([scores[n][e] for n in calib]), y_cal) for e in ("emo-cnn", "rafdb")}
    grid = np.round(np.arange(0.0, 1.01, 0.05), 2)

    def uar_at(w: float) -> float:
        es = ExpertSet(temperatures_=temps, weights_={"emo-cnn": w, "rafdb": 1 - w})
        return float(np.mean([report(sets[n][1], combined(es, scores[n]))["uar"] for n in calib]))

    curve = {float(w): uar_at(w) for w in grid}
    w_best = max(curve, key=curve.get)
    experts = ExpertSet(temperatures_=temps, weights_={"emo-cnn": 0.5, "rafdb": 0.5})
    if curve[w_best] - curve[0.5] >= 0.02:
        experts.weights_ = {"emo-cnn": w_best, "rafdb": round(1 - w_best, 2)}
    return experts, temps, curve


def _set_row(y: np.ndarray, s: dict, experts: ExpertSet, temps: dict) -> dict:
    """One held-out set's figures: each expert's and the combination's, with the experts' NLL."""
    row = {"yunet_found": float(np.mean(s["yunet_found"])), "rafdb_applies": float(np.mean(s["applies"]))}
    for e in ("emo-cnn", "rafdb"):
        row[e] = report(y, s[e])
        row[e]["nll"] = float(-np.log(np.clip(temper(s[e], temps[e])[np.arange(len(y)), y], 1e-12, None)).mean())
    row["combined"] = report(y, combined(experts, s))
    return row


def _write_experts(bundle: Path, experts: ExpertSet, sets: dict, scores: dict, calib: list[str], *,
                   command: str) -> None:
    """``experts.json`` in ``bundle`` (a face head it had stays), its fingerprints and the manifest."""
    y_cal = np.concatenate([sets[n][1] for n in calib])
    old, kept = bundle / EXPERTS_FILE, None
    if old.is_file():  # a face head stays with the bundle
        kept = ExpertSet.from_dict(json.loads(old.read_text()), old)
        experts.head_, experts.default_, experts.small_ = kept.head_, kept.default_, kept.small_
    combined_calib = report(y_cal, np.concatenate([combined(experts, scores[n]) for n in calib]))
    # what `emo fuse --method confusion` weighs the face against the voice with: the head's recall
    # where the bundle has a head (it scores the faces), else the average's
    average = {"validation_recall": combined_calib["recall"], "validation_accuracy": combined_calib["accuracy"],
               "validation_uar": combined_calib["uar"]}
    if experts.head_ is not None and kept is not None and "validation_recall" in kept.info_:
        validation = {**{k: kept.info_[k] for k in average if k in kept.info_},
                      **{f"average_{k}": v for k, v in average.items()}}
    else:
        validation = average
    rafdb = {"source": "opencv_zoo facial_expression_recognition_mobilefacenet_2022july_int8.onnx (sha256 "
                       "f0d7093aff10e2638c734c5f18a6a7eabd2b9239b20bdb9b8090865a6f69a1ed), dequantized to float32 by "
                       "scripts/dequantize_onnx.py",
             "trained_on": "RAF-DB basic (training part)",
             "licence": "Apache-2.0 (LICENSE.face_expert_rafdb.Apache-2.0.txt)",
             "alignment": "YuNet 5 landmarks -> ArcFace 112x112 template"}
    tuned = kept.info_.get(FINE_TUNE_INFO) if kept is not None else None
    if tuned:  # `emo train-expert`'s record of the expert file stays with it
        rafdb["trained_on"] += ("; its last stage fine-tuned on AffectNet, SFEW and RAF-DB training parts by "
                                f"emo train-expert ({FINE_TUNE_INFO})")
    experts.info_ = {"calibrated_on": {n: len(sets[n][1]) for n in calib}, **validation, "rafdb": rafdb,
                     **({FINE_TUNE_INFO: tuned} if tuned else {}),
                     "heldout": {k: {"share": v, "seed": 0, "halves_seed": 1} for k, v in HELDOUT.items()},
                     "method": "temperature by NLL; weight by mean UAR over the corpora's calib halves "
                               "(equal unless 2 points better)",
                     "command": command}
    atomic_write_text(bundle / EXPERTS_FILE, json.dumps(experts.to_dict(), indent=2) + "\n")
    fingerprints.add(bundle, "face.calibration", [p for n in calib for p in sets[n][0]])
    man = read_manifest_unchecked(bundle)
    write_manifest(bundle, labels=man["labels"], settings=man.get("settings"))
