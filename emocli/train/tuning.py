"""Tuning a trained face network without retraining it: test-time views (``emo tune-views``), the
class-prior adjustment (``emo tune-prior``), averaging two networks (``emo ensemble``) and
refreshing BatchNorm statistics (``emo refresh-bn``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from emocli import fingerprints
from emocli.bundle import write_manifest
from emocli.errors import ModelError
from emocli.face.lite import stored_as
from emocli.face.model import FaceModel, adjust_prior, read_face_meta, store_faces
from emocli.face.networks import average_networks, refresh_batch_norm
from emocli.files import atomic_write_text
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.report.metrics import classification_report
from emocli.train.data import (face_probabilities, heldout_inputs, heldout_part, holdout_seed_of, score_stored,
                               stored_batches)


# name: (mirror, centre zoom, shift): the test-time views `emo tune-views` compares
VIEW_CANDIDATES = {"none": (False, 0.0, 0.0), "flip": (True, 0.0, 0.0), "flip+zoom0.1": (True, 0.1, 0.0),
                   "flip+zoom0.2": (True, 0.2, 0.0), "flip+zoom0.1+shift0.05": (True, 0.1, 0.05),
                   "flip+zoom0.1+shift0.1": (True, 0.1, 0.1)}


def tune_views_command(*, bundle: Path, data: Path, write: bool, console) -> dict:
    """Choose a face bundle's test-time views on held-out *training* images, never the test split.

    Rebuilds exactly the held-out part `emo train-video` kept aside (share and seed from
    face.json), scores it with each of :data:`VIEW_CANDIDATES` and reports the accuracies; with
    ``write`` the best goes into face.json (with the held-out confusion it gives, from which
    decision fusion derives its weights) and the manifest is refreshed.
    """
    from dataclasses import replace

    meta = read_face_meta(bundle)
    model = FaceModel.load(bundle)
    base = model.preprocessing
    y, x = heldout_inputs(data, meta, base)
    results, preds = {}, {}
    for name, (flip, zoom, shift) in VIEW_CANDIDATES.items():
        model.preprocessing = replace(base, flip_tta=flip, tta_zoom=zoom, tta_shift=shift)
        pred = preds[name] = model.score_inputs(x, batch_size=256).argmax(1)
        results[name] = float(np.mean(pred == y))
        console.print(f"{name:>14}: held-out accuracy {results[name]:.4f} (n={len(y)})")
    best = max(results, key=results.get)
    console.print(f"best: {best}")
    if write:
        flip, zoom, shift = VIEW_CANDIDATES[best]
        meta["preprocessing"] = replace(base, flip_tta=flip, tta_zoom=zoom, tta_shift=shift).to_dict()
        meta["validation"] = classification_report(y, preds[best], model.labels)
        meta["tta_selection"] = {"holdout_accuracy": results, "chosen": best,
                                 "command": f"emo tune-views {bundle} {data} --write"}
        atomic_write_text(Path(bundle) / "face.json", json.dumps(meta, indent=2))
        write_manifest(bundle, labels=list(LABELS))
        console.print(f"wrote {bundle}/face.json")
    return {"holdout_accuracy": results, "chosen": best, "n": int(len(y))}


PRIOR_TAUS = tuple(round(0.1 * k, 1) for k in range(11))  # logit-adjustment strengths tune-prior compares
MAX_ACCURACY_LOSS = 0.005  # tune-prior: the held-out accuracy a stronger adjustment may cost


def tune_prior_command(*, bundle: Path, data: Path, write: bool, console,
                       max_accuracy_loss: float = MAX_ACCURACY_LOSS) -> dict:
    """Choose the face network's class-prior adjustment on held-out *training* images.

    A network trained with cross-entropy on unbalanced classes (FER2013: disgust 1.5 % of the
    faces, happy 25 %) learns their prior. Logit adjustment (Menon et al., ICLR 2021) divides its
    scores by ``prior ** tau``: tau 0 is the network as trained, 1 the balanced rule. Each tau in
    :data:`PRIOR_TAUS` is scored on the held-out part `emo train-video` kept aside (rebuilt from
    face.json, as :func:`tune_views_command` does); the chosen one has the largest held-out UAR
    among those whose accuracy is within ``max_accuracy_loss`` of tau 0's. ``prior``: the class
    shares of the training folder. With ``write`` tau and the prior go into face.json
    (``prior_adjustment``, which every face score then applies) and the manifest is refreshed.
    """
    meta = read_face_meta(bundle)
    model = FaceModel.load(bundle, runtime=True)
    model.prior_tau = 0.0  # the network as trained, whatever the bundle applies now
    items, y, ho = heldout_part(data, meta)
    prior = np.bincount(y, minlength=len(LABELS)) / len(y)
    p = face_probabilities(model, [items[i].path for i in ho])
    rows = []
    for tau in PRIOR_TAUS:
        rep = classification_report(y[ho], adjust_prior(p, prior, tau).argmax(1), LABELS)
        rows.append({"tau": tau, "accuracy": rep["accuracy"], "uar": rep["uar"], "recall": rep["recall"]})
        console.print(f"tau {tau:.1f}: held-out accuracy {rep['accuracy']:.4f}, UAR {rep['uar']:.4f} (n={len(ho)})")
    ok = [r for r in rows if r["accuracy"] >= rows[0]["accuracy"] - max_accuracy_loss]
    best = max(ok, key=lambda r: (round(r["uar"], 4), -r["tau"]))
    rule = f"largest holdout UAR with holdout accuracy >= tau-0 accuracy - {max_accuracy_loss}"
    console.print(f"best: tau {best['tau']:.1f} ({rule})")
    summary = {"prior": dict(zip(LABELS, prior.round(6).tolist())), "chosen_tau": best["tau"], "rule": rule,
               "rows": rows, "n": int(len(ho))}
    if write:
        meta["prior_adjustment"] = {"tau": best["tau"], "prior": summary["prior"],
                                    "chosen": f"{rule}, on {len(ho)} held-out training faces "
                                              f"(emo tune-prior {bundle} {data} --write)"}
        atomic_write_text(Path(bundle) / "face.json", json.dumps(meta, indent=2) + "\n")
        write_manifest(bundle, labels=list(LABELS))
        console.print(f"wrote tau {best['tau']:.1f} into {bundle}/face.json")
    return summary


def ensemble_command(*, a: Path, b: Path, data: Path, out: Path, write: bool, console) -> dict:
    """Average two face networks into one bundle if that beats both on held-out *training* images.

    Both bundles must come from `emo train-video` on ``data`` with the same held-out share and
    seed, so neither network saw the held-out images; they are scored with A's test-time views and
    as trained (a bundle's class-prior adjustment is left out: the average's own is chosen afresh,
    ``scripts/face_prior.py``). With ``write`` and a gain over both members, ``out`` gets the
    averaged network (see :func:`emocli.face.model.average_networks`) and face.json from A, less
    its prior adjustment, with the ensemble recorded. The test split is never looked at.

    Raises
    ------
    ModelError
        The bundles' held-out parts differ; with ``write``, the average does not beat its best
        member (nothing is written), or the saved network does not score as the members' mean.
    """
    meta_a, meta_b = read_face_meta(a), read_face_meta(b)
    for key, get in (("holdout", lambda m: m.get("holdout")), ("holdout seed", holdout_seed_of),
                     ("n_holdout", lambda m: m.get("n_holdout"))):
        if get(meta_a) != get(meta_b):
            raise ModelError(f"{b}: the bundles differ in {key} ({get(meta_a)} vs {get(meta_b)}): their held-out "
                             "images differ, so the comparison would not be fair; train both with the same "
                             "--holdout and --holdout-seed")
    fa, fb = FaceModel.load(a), FaceModel.load(b)
    pre = fa.preprocessing
    y, x = heldout_inputs(data, meta_a, pre)
    fb.preprocessing = pre
    fa.prior_tau = fb.prior_tau = 0.0  # compare and average the networks as trained
    sa, sb = fa.score_inputs(x, batch_size=256), fb.score_inputs(x, batch_size=256)
    acc = {"a": float(np.mean(sa.argmax(1) == y)), "b": float(np.mean(sb.argmax(1) == y)),
           "mean": float(np.mean((sa + sb).argmax(1) == y))}
    console.print(f"held-out accuracy (n={len(y)}, views {pre.to_dict()}): A {acc['a']:.4f}, B {acc['b']:.4f}, "
                  f"mean of both {acc['mean']:.4f}")
    if not write:
        return acc
    if acc["mean"] <= max(acc["a"], acc["b"]):
        raise ModelError(f"{out}: the ensemble does not beat its best member on held-out images; nothing written")
    ens = FaceModel(backbone="emo-cnn-ensemble", preprocessing=pre, labels=fa.labels)
    ens.network_ = average_networks([fa.network_, fb.network_], ["member_a", "member_b"])
    ens.history_ = fa.history_
    Path(out).mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in meta_a.items() if k not in ("backbone", "preprocessing", "labels", "history",
                                                          "feature_layer", "format", "format_version",
                                                          "prior_adjustment")}
    extra["ensemble"] = {"members": [str(a), str(b)], "holdout_accuracy": acc,
                         "command": f"emo ensemble {a} {b} {data} --out {out} --write"}
    extra["holdout_accuracy"] = acc["mean"]
    # the held-out confusion of the ensemble itself: decision fusion derives its weights from it
    extra["validation"] = classification_report(y, (sa + sb).argmax(1), fa.labels)
    ens.save(out, extra=extra)

    fingerprints.carry(out, a, b)  # what either member trained on
    write_manifest(out, labels=list(LABELS))
    check = FaceModel.load(out).score_inputs(x[:64], batch_size=64)
    if not np.allclose(check, ((sa + sb) / 2)[:64], atol=1e-4):
        raise ModelError(f"{stored_as(out)}: the saved ensemble does not score as the mean of its members; "
                         "do not use it (a bug: please report it)")
    console.print(f"wrote {stored_as(out)}")
    return acc


def refresh_trained_network(model, x_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, console=None,
                            batch_size: int = 256) -> dict:
    """`train-video --refresh-bn`: re-estimate the trained network's BatchNorm statistics on its
    training faces ``x_train`` (stored uint8, un-augmented), and keep them only if the held-out
    faces (``x_val``, ``y_val``) are scored better (the bundle's views); else restore the network.
    Updates ``model``'s held-out predictions and report when kept. Returns what was done."""

    pre = model.preprocessing
    before = float(np.mean(model.holdout_predictions_ == y_val))
    saved = [w.copy() for w in model.network_.get_weights()]
    t0 = time.time()
    n = refresh_batch_norm(model.network_, stored_batches(x_train, pre, batch_size))
    model._feat_net = None
    pred = score_stored(model, x_val, pre, chunk=batch_size).argmax(1) if n else model.holdout_predictions_
    after = float(np.mean(pred == y_val))
    kept = bool(n) and after > before
    if kept:
        model.holdout_predictions_ = pred
        model.validation_ = classification_report(y_val, pred, model.labels)
        model.holdout_accuracy_ = model.validation_["accuracy"]
    else:
        model.network_.set_weights(saved)
        model._feat_net = None
    if console is not None:
        console.print(f"  BatchNorm statistics re-estimated on {len(x_train)} training faces ({n} layers, "
                      f"{time.time() - t0:.0f} s): held-out accuracy {before:.3f} -> {after:.3f}, "
                      + ("kept" if kept else "not kept (no gain)"))
    return {"n_layers": n, "n_faces": int(len(x_train)), "holdout_accuracy": {"before": before, "after": after},
            "kept": kept}


def refresh_bn_command(*, bundle: Path, data: Path, out: Path, write: bool, console, batch_size: int = 256) -> dict:
    """Re-estimate a face network's BatchNorm statistics on its un-augmented training faces.

    The training faces are those of ``data`` that ``emo train-video`` did not hold out (share and
    seed from face.json); the held-out part scores the network before and after (the bundle's
    test-time views, no class-prior adjustment), and never enters the statistics. With ``write``
    and a gain there, ``out`` gets the refreshed network with face.json from ``bundle``, less its
    prior adjustment (chosen afresh for the new network: ``scripts/face_prior.py``), and the new
    held-out confusion (from which decision fusion derives its weights).

    Raises
    ------
    ModelError
        The bundle was trained on several folders or with ``--exclude`` (its training faces
        cannot be rebuilt from ``data`` alone), has no BatchNorm layer to refresh, or, with
        ``write``, the refreshed network does not beat it on the held-out images (nothing is
        written).
    """
    meta = read_face_meta(bundle)
    if isinstance(meta.get("trained_on"), list) or meta.get("exclude"):
        raise ModelError(f"{bundle}: trained on several folders or with --exclude, so its training faces cannot be "
                         "rebuilt from one DATA folder; refresh a bundle trained on one folder")
    model = FaceModel.load(bundle)
    model.prior_tau = 0.0  # the network as trained; a prior for the new one is chosen afresh
    items, y, ho = part = heldout_part(data, meta)
    y_ho, x_ho = heldout_inputs(data, meta, model.preprocessing, part)
    held = set(ho.tolist())
    tr = [i for i in range(len(items)) if i not in held]
    before = model.score_inputs(x_ho, batch_size=batch_size).argmax(1)
    t0 = time.time()
    x = store_faces([read_image(items[i].path) for i in tr], model.preprocessing)
    pre = model.preprocessing
    n = refresh_batch_norm(model.network_, stored_batches(x, pre, batch_size))
    if not n:
        raise ModelError(f"{bundle}: the face network has no trainable BatchNorm layer to refresh")
    model._feat_net = None  # the feature view shares the layers; rebuild it anyway
    scores = model.score_inputs(x_ho, batch_size=batch_size)
    after = scores.argmax(1)
    acc = {"before": float(np.mean(before == y_ho)), "after": float(np.mean(after == y_ho))}
    console.print(f"refreshed {n} BatchNorm layers on {len(tr)} training faces ({time.time() - t0:.0f} s); "
                  f"held-out accuracy (n={len(y_ho)}, views {pre.to_dict()}): before {acc['before']:.4f}, "
                  f"after {acc['after']:.4f}")
    if not write:
        return acc
    if acc["after"] <= acc["before"]:
        raise ModelError(f"{out}: the refreshed network does not beat {bundle} on the held-out images; nothing "
                         "written")
    extra = {k: v for k, v in meta.items() if k not in ("backbone", "preprocessing", "labels", "history",
                                                        "feature_layer", "format", "format_version",
                                                        "prior_adjustment")}
    extra["batchnorm_refresh"] = {"from": str(bundle), "n_layers": n, "n_faces": len(tr),
                                  "holdout_accuracy": acc, "command": f"emo refresh-bn {bundle} {data} --out {out} "
                                                                     "--write"}
    extra["holdout_accuracy"] = acc["after"]
    extra["validation"] = classification_report(y_ho, after, model.labels)
    Path(out).mkdir(parents=True, exist_ok=True)
    model.save(out, extra=extra)

    fingerprints.carry(out, bundle)  # the same network, trained on the same faces
    write_manifest(out, labels=list(LABELS))
    check = FaceModel.load(out)
    check.prior_tau = 0.0
    if not np.allclose(check.score_inputs(x_ho[:64], batch_size=64), scores[:64], atol=1e-4):
        raise ModelError(f"{stored_as(out)}: the saved network does not score as the refreshed one; do not use it "
                         "(a bug: please report it)")
    console.print(f"wrote {stored_as(out)} (choose its class-prior adjustment afresh: `emo tune-prior`)")
    return acc
