"""How faces under 64 px are scored (``emo calibrate-small-faces``).

The face head reads faces of EXPERT_MIN_FACE px and more. Below that a face far from the camera,
or a FER2013-sized crop, was left to emo-cnn alone, which learned from FER2013's grey 48-px faces
and reads small colour faces poorly. This fits, on held-out faces shown small, a mix of emo-cnn
and the RAF-DB MobileFaceNet (each tempered by its own temperature, then averaged with emo-cnn's
weight w), one w for colour faces and one for grey ones:

- colour: the colour faces of the calib halves of AffectNet, SFEW and RAF-DB (those of
  ``emo calibrate-experts`` and ``emo train-head``), each shrunk to ``side`` px (area
  interpolation), as a face far from the camera is; w maximises their mean UAR;
- grey: the part of fer2013/train that emo-cnn held out of its training (face.json's), 48-px grey
  faces as FER2013 has them; w maximises its UAR. The grey faces of the colour calib halves
  (black-and-white photographs, shrunk likewise) are reported beside it, not chosen on: they
  prefer the expert as strongly as FER2013's crops prefer emo-cnn.

The temperatures are fitted by NLL on the same faces; emo-cnn alone (w = 1, as before) stays unless
the mix gains 2 UAR points (``emo calibrate-experts``' rule for its weights). Neither set is a test half.

    emo calibrate-small-faces ../shared/data --bundle B --write
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from emocli import fingerprints
from emocli.bundle import models_dir, read_manifest_unchecked, write_manifest
from emocli.errors import DatasetError
from emocli.face.detect import YUNET_FILE
from emocli.face.experts import (EXPERT_MIN_FACE, EXPERTS_FILE, RAFDB_FILE, ExpertSet, OnnxExpert, YuNetLandmarks,
                                 fit_temperature, is_grey, softmax, temper)
from emocli.face.model import FaceModel
from emocli.files import atomic_write_text
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.report.metrics import classification_report
from emocli.train.calibration import align_crops, expert_key, face_sets, rafdb_halves
from emocli.train.data import heldout_part

COLOUR = ("affectnet-calib", "sfew-calib", "rafdb-calib")
GREY = "fer2013-heldout"
CALIB_GREY = "calib-grey"  # the grey faces of the colour calib halves (RAF-DB has about a hundred)
SIDE = 48  # px: the side the colour faces are shrunk to (FER2013's)
GRID = np.round(np.arange(0.0, 1.001, 0.1), 2)
MIN_GAIN = 0.02  # UAR the mix must gain over emo-cnn alone to replace it (calibrate-experts' rule for its weights)


def shrink(img: np.ndarray, side: int | None) -> np.ndarray:
    """``img`` with its shorter side ``side`` px (area interpolation); a smaller image, or None, as it is."""
    h, w = img.shape[:2]
    if side is None or min(h, w) <= side:
        return img
    s = side / min(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def small_sets(data: Path, bundle: Path) -> dict[str, tuple[list[Path], np.ndarray]]:
    """{name: (paths, labels)} of the colour calib halves and emo-cnn's held-out FER2013 faces."""
    sets = face_sets(data)
    rafdb_halves(sets, {"rafdb-heldout": {}})
    meta = json.loads((bundle / "face.json").read_text())
    items, y, ho = heldout_part(data / "fer2013" / "train", meta)
    out = {n: sets[n] for n in COLOUR}
    out[GREY] = ([items[i].path for i in ho], y[ho])
    return out


def score_small(paths: list[Path], side: int | None, model: FaceModel, expert: OnnxExpert, landmarker
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """emo-cnn's probabilities (its views and prior, as predict scores a still) and the expert's, of
    the faces shrunk to ``side`` px and aligned as predict aligns a crop, and which faces are grey."""
    cnn, raf, grey = [], [], []
    for k in range(0, len(paths), 256):
        imgs = [shrink(read_image(p), side) for p in paths[k:k + 256]]
        cnn.append(model.predict_proba(imgs, batch_size=128))
        aligned, _, _ = align_crops(imgs, landmarker)
        raf.append(softmax(expert.logits(np.asarray(aligned, np.uint8))))
        grey += [is_grey(img) for img in imgs]
    return np.concatenate(cnn), np.concatenate(raf), np.array(grey, bool)


def by_kind(sets: dict, scores: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{set: (labels, emo-cnn's, the expert's)}: the colour faces of each colour calib half under its
    name, their grey faces pooled as ``calib-grey``, and the FER2013 held-out faces."""
    out, grey = {}, []
    for n in COLOUR:
        y, (cnn, raf, g) = sets[n][1], scores[n]
        out[n] = (y[~g], cnn[~g], raf[~g])
        grey.append((y[g], cnn[g], raf[g]))
    out[CALIB_GREY] = tuple(np.concatenate(parts) for parts in zip(*grey))
    out[GREY] = (sets[GREY][1], *scores[GREY][:2])
    return out


def choose(parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], names: tuple[str, ...]) -> dict:
    """Temperatures (NLL over ``names``) and emo-cnn's weight maximising their mean UAR (1, emo-cnn alone,
    unless that gains MIN_GAIN)."""
    names = tuple(n for n in names if len(parts[n][0]))
    y = np.concatenate([parts[n][0] for n in names])
    t_cnn = fit_temperature(np.concatenate([parts[n][1] for n in names]), y)
    t_raf = fit_temperature(np.concatenate([parts[n][2] for n in names]), y)
    curve = {}
    for w in GRID:
        curve[float(w)] = float(np.mean([classification_report(
            parts[n][0], (w * temper(parts[n][1], t_cnn) + (1 - w) * temper(parts[n][2], t_raf)).argmax(1),
            LABELS)["uar"] for n in names]))
    best = max(curve, key=curve.get)
    if curve[best] - curve[1.0] < MIN_GAIN:  # emo-cnn alone (as before) unless the mix is clearly better
        best = 1.0
    return {"temperatures": {"emo-cnn": t_cnn, "rafdb": t_raf}, "cnn_weight": best, "uar_by_cnn_weight": curve}


def calibrate_small_faces(data: Path, bundle: Path, *, side: int = SIDE, write: bool = False, console=None) -> dict:
    """Fit the small-face mix; with ``write`` store it in ``bundle``'s experts.json. Returns the report."""
    log = (lambda msg: console.print(msg, markup=False, highlight=False)) if console is not None else (
        lambda msg: print(msg, file=sys.stderr))
    data, bundle = Path(data), Path(bundle)
    missing = [sub for sub in ("affectnet/train", "sfew/Train", "rafdb/train", "fer2013/train")
               if not (data / sub).is_dir()]
    if missing:
        raise DatasetError(f"{data}: no {', '.join(missing)} folder(s); give the folder that holds affectnet/, sfew/, "
                           "rafdb/ and fer2013/ (../shared/data)")
    if not (bundle / RAFDB_FILE).is_file():
        raise DatasetError(f"{bundle}: no {RAFDB_FILE} to mix with emo-cnn; pass --bundle with a bundle that has "
                           "the face expert (the shipped one does)")
    if not 8 <= side < EXPERT_MIN_FACE:
        raise DatasetError(f"--side {side}: small faces are 8 to {EXPERT_MIN_FACE - 1} px; pass a side in that range")
    sets = small_sets(data, bundle)
    empty = [n for n, (p, _) in sets.items() if not len(p)]
    if empty:
        raise DatasetError(f"{data}: no faces in {', '.join(empty)}; each corpus needs faces per class for its "
                           "held-out part")
    model = FaceModel.load(bundle, runtime=True)
    expert = OnnxExpert(bundle / RAFDB_FILE)
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    scores = {}
    for name, (paths, _) in sets.items():
        t0 = time.perf_counter()
        scores[name] = score_small(paths, None if name == GREY else side, model, expert, landmarker)
        log(f"{name}: {len(paths)} faces {'as they are' if name == GREY else f'at {side} px'}, "
            f"{time.perf_counter() - t0:.0f} s")
    parts = by_kind(sets, scores)
    colour, grey = choose(parts, COLOUR), choose(parts, (GREY,))
    # reported, not chosen on: black-and-white photographs shown small prefer the expert, FER2013's
    # crops emo-cnn; no one weight serves both, and the grey faces a user sends are FER2013's
    bw = choose(parts, (CALIB_GREY,)) if len(parts[CALIB_GREY][0]) else None
    if bw is not None:
        log(f"grey faces of the colour calib halves ({len(parts[CALIB_GREY][0])}, reported only), UAR by weight: "
            + ", ".join(f"{w:.1f} {u:.3f}" for w, u in bw["uar_by_cnn_weight"].items()))
    for kind, fit in (("colour", colour), ("grey", grey)):
        log(f"{kind}: emo-cnn weight {fit['cnn_weight']:.1f} (UAR by weight: "
            + ", ".join(f"{w:.1f} {u:.3f}" for w, u in fit["uar_by_cnn_weight"].items()) + ")")
    small = {"temperatures": {"colour": colour["temperatures"], "grey": grey["temperatures"]},
             "cnn_weight": {"colour": colour["cnn_weight"], "grey": grey["cnn_weight"]},
             "info": {"side": side, "calibrated_on": {n: len(parts[n][0]) for n in parts},
                      "uar_by_cnn_weight": {"colour": colour["uar_by_cnn_weight"], "grey": grey["uar_by_cnn_weight"],
                                            **({CALIB_GREY: bw["uar_by_cnn_weight"]} if bw else {})},
                      "expert_sha256": expert_key(bundle),
                      "command": f"emo calibrate-small-faces {data} --bundle {bundle} --side {side} --write"}}
    if write:
        path = bundle / EXPERTS_FILE
        es = ExpertSet.from_dict(json.loads(path.read_text()), path) if path.is_file() else ExpertSet()
        es.small_ = small
        atomic_write_text(path, json.dumps(es.to_dict(), indent=2) + "\n")
        fingerprints.add(bundle, "face.small-calibration", [p for n in sets for p in sets[n][0]])
        man = read_manifest_unchecked(bundle)
        write_manifest(bundle, labels=man["labels"], settings=man.get("settings"))
        log(f"wrote {path} (small_faces)")
    return small
