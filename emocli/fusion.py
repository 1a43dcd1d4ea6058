"""Decision-level fusion of face and voice scores.

``fused[c] = w_face[c] * face[c] + w_voice[c] * voice[c]``, renormalised to sum to 1.

Two rules combine the weighted scores: ``sum`` (the thesis's weighted sum above) and
``product`` (log-linear: ``log fused[c] = 2 * (w_face[c] * log face[c] + w_voice[c] * log voice[c])``,
renormalised; with equal weights this is ``face * voice``, the posterior of two independent,
calibrated experts under a flat prior). Both modalities' scores are calibrated before fusing
(face experts by temperature, experts.py; the voice SVM by temperature on speaker folds).

Weights are either equal (0.5 / 0.5, the thesis's experiment 7) or per emotion from each
modality's validation confusion matrix (experiments 8 and 9): the share of each modality's
recall for that class, ``w_face[c] = r_face[c] / (r_face[c] + r_voice[c])``. When one
modality is missing (no face found, no audio track) the other one decides alone.

Score columns are aligned by label *name*; label sets that differ are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from emocli.bundle import check_skops_types
from emocli.choices import FUSE_RULES as RULES
from emocli.errors import ModelError, NotFittedError, ParameterError
from emocli.files import atomic_path, atomic_write_text
from emocli.labels import LABELS

METHODS = ("equal", "confusion")
PRODUCT_FLOOR = 1e-4  # probabilities are floored here under the product rule: one modality cannot veto a class


def align(scores: np.ndarray, labels: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Reorder score columns from ``labels`` to ``target`` order, by name.

    A model trained on a subset of the emotions (EmoDB has no surprise) gives NaN for the
    others: it has no opinion on them, and :meth:`FusionModel.fuse` lets the other modality
    decide those emotions alone.

    Raises
    ------
    ModelError
        If the model has labels that are not in ``target``.
    """
    extra = sorted(set(labels) - set(target))
    if extra:
        raise ModelError(f"label sets differ: the model has {extra}, which are not among {sorted(target)}; "
                         "retrain the model on the seven emo classes")
    scores = np.asarray(scores, np.float64)
    out = np.full(scores.shape[:-1] + (len(target),), np.nan)
    for j, lab in enumerate(target):
        if lab in labels:
            out[..., j] = scores[..., list(labels).index(lab)]
    return out


def normalise_present(p: np.ndarray) -> np.ndarray:
    """Like :func:`normalise` over the non-NaN entries; NaN entries stay NaN."""
    p = np.asarray(p, np.float64)
    present = ~np.isnan(p)
    out = np.full(p.shape, np.nan)
    out[present] = normalise(p[present])
    return out


def normalise(p: np.ndarray) -> np.ndarray:
    """Clip to [0, inf), replace non-finite values, and rescale rows to sum to 1."""
    p = np.nan_to_num(np.asarray(p, np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
    s = p.sum(-1, keepdims=True)
    n = p.shape[-1]
    return np.where(s > 0, p / np.where(s > 0, s, 1), 1.0 / n)


@dataclass
class FusionModel:
    """Per-emotion weighted sum of face and voice probabilities."""
    method: str = "confusion"
    labels: tuple[str, ...] = LABELS
    rule: str = "sum"  # "sum" (weighted sum, the thesis) or "product" (log-linear)
    face_weights_: np.ndarray | None = None
    face_recall_: dict[str, float] = field(default_factory=dict)
    voice_recall_: dict[str, float] = field(default_factory=dict)
    # learned / feature-level methods: a scikit-learn pipeline on `fusion_inputs`; the
    # per-emotion weights above still decide when one modality is missing.
    estimator_: object | None = None
    estimator_labels_: tuple[str, ...] = ()
    info_: dict = field(default_factory=dict)

    def fit_estimator(self, x: np.ndarray, y: Sequence[str], *, seed: int = 0) -> "FusionModel":
        """Fit a learned / feature-level fusion model on clip vectors ``x`` (see :func:`fusion_inputs`)."""
        _, counts = np.unique(np.asarray(y), return_counts=True)
        est = build_estimator(self.method, n_samples=len(x), n_features=x.shape[1], seed=seed,
                              min_class_count=int(counts.min()) if len(counts) else 0)
        est.fit(np.asarray(x, np.float64), np.asarray(y))
        self.estimator_ = est
        self.estimator_labels_ = tuple(str(c) for c in est.classes_)
        return self

    def fuse_clip(self, face, voice, *, face_features=None, voice_stats68=None) -> np.ndarray:
        """Fused probabilities for one clip, using the fitted estimator when both modalities exist."""
        if self.estimator_ is not None and face is not None and voice is not None:
            x = fusion_inputs(self.method, np.nan_to_num(face), np.nan_to_num(voice), face_features, voice_stats68)[None]
            p = self.estimator_.predict_proba(x)[0]
            full = np.zeros(len(self.labels))
            for lab, v in zip(self.estimator_labels_, p):
                full[self.labels.index(lab)] = v
            return normalise(full)
        return self.fuse(face, voice)

    def fit(self, face_recall: Mapping[str, float] | None = None,
            voice_recall: Mapping[str, float] | None = None) -> "FusionModel":
        """Set the weights: equal, or from the two modalities' validation recall per class."""
        if self.method not in METHODS + FEATURE_METHODS:
            raise ModelError(f"unknown fusion method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.rule not in RULES:
            raise ModelError(f"unknown fusion rule {self.rule!r}; use one of {', '.join(RULES)}")
        n = len(self.labels)
        if self.method == "equal" or (self.method in FEATURE_METHODS and not (face_recall and voice_recall)):
            self.face_weights_ = np.full(n, 0.5)
            return self
        if not face_recall or not voice_recall:
            raise ModelError("confusion-matrix fusion needs the validation recall of both the face and the "
                             "voice model; train both, or use --method equal")
        rf = np.array([float(face_recall.get(lab, 0.0)) for lab in self.labels])
        rv = np.array([float(voice_recall.get(lab, 0.0)) for lab in self.labels])
        tot = rf + rv
        # A class neither modality recalls (or one that one corpus lacks) falls back to 0.5 / 0.5.
        self.face_weights_ = np.where(tot > 0, rf / np.where(tot > 0, tot, 1), 0.5)
        self.face_recall_, self.voice_recall_ = dict(face_recall), dict(voice_recall)
        return self

    def _weights(self) -> np.ndarray:
        if self.face_weights_ is None:
            raise NotFittedError("fusion weights are not set; call fit() or load a bundle")
        return self.face_weights_

    def fuse(self, face: np.ndarray | None, voice: np.ndarray | None) -> np.ndarray:
        """Fused probabilities (..., n_labels) in ``labels`` order, rows summing to 1.

        ``face`` / ``voice`` are already aligned to ``labels``; either may be ``None``.
        """
        wf = self._weights()
        if face is None and voice is None:
            raise ParameterError("nothing to fuse: both face and voice scores are missing")
        if face is None:
            return normalise(voice)
        if voice is None:
            return normalise(face)
        face, voice = np.asarray(face, np.float64), np.asarray(voice, np.float64)
        # an emotion one model was never trained on (NaN) is decided by the other model alone
        wf = np.where(np.isnan(face), 0.0, np.where(np.isnan(voice), 1.0, wf))
        if self.rule == "product":
            lf = np.log(np.clip(np.nan_to_num(face, nan=1.0), PRODUCT_FLOOR, None))
            lv = np.log(np.clip(np.nan_to_num(voice, nan=1.0), PRODUCT_FLOOR, None))
            z = 2.0 * (wf * lf + (1.0 - wf) * lv)
            return normalise(np.exp(z - z.max(-1, keepdims=True)))
        return normalise(wf * np.nan_to_num(face) + (1.0 - wf) * np.nan_to_num(voice))

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict:
        wf = self._weights()
        return {"method": self.method, "rule": self.rule, "labels": list(self.labels),
                "face_weights": {lab: float(w) for lab, w in zip(self.labels, wf)},
                "voice_weights": {lab: float(1 - w) for lab, w in zip(self.labels, wf)},
                "face_validation_recall": self.face_recall_, "voice_validation_recall": self.voice_recall_,
                "estimator_labels": list(self.estimator_labels_), "info": self.info_}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        if self.estimator_ is not None:
            save_skops(self.estimator_, directory / "fusion_feat.skops")
        else:
            (directory / "fusion_feat.skops").unlink(missing_ok=True)
        atomic_write_text(directory / "fusion.json", json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "FusionModel":
        path = Path(directory) / "fusion.json"
        try:
            d = json.loads(path.read_text())
            labels = tuple(d["labels"])
            model = cls(method=d["method"], labels=labels, rule=str(d.get("rule", "sum")))
            model.face_weights_ = np.array([float(d["face_weights"][lab]) for lab in labels])
        except FileNotFoundError:
            raise ModelError(f"{path}: missing; run `emo fuse {directory}` to compute fusion weights") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: malformed fusion file ({exc}); rerun `emo fuse {directory}`") from None
        if model.rule not in RULES:
            raise ModelError(f"{path}: unknown fusion rule {model.rule!r} (use {' or '.join(RULES)}); "
                             f"rerun `emo fuse {directory}`")
        if np.any(~np.isfinite(model.face_weights_)) or np.any((model.face_weights_ < 0) | (model.face_weights_ > 1)):
            raise ModelError(f"{path}: fusion weights must lie in [0, 1]; rerun `emo fuse {directory}`")
        model.face_recall_ = d.get("face_validation_recall", {})
        model.voice_recall_ = d.get("voice_validation_recall", {})
        model.info_ = d.get("info", {})
        if model.method in FEATURE_METHODS:
            est_path = Path(directory) / "fusion_feat.skops"
            if not est_path.is_file():
                raise ModelError(f"{est_path}: missing for fusion method {model.method!r}; rerun `emo fuse`")
            model.estimator_ = load_skops(est_path)
            model.estimator_labels_ = tuple(d.get("estimator_labels", []))
            if not set(model.estimator_labels_) <= set(labels):
                raise ModelError(f"{path}: fusion model labels {model.estimator_labels_} are not emo labels")
        return model


# ------------------------------------------------------------------------------------------
# Learned and feature-level fusion (fitted on `emo extract` output)

FEATURE_METHODS = ("learned", "feature-svm", "feature-dense")
PCA_COMPONENTS = 68  # the thesis reduces face features + 68 voice statistics to 68 dimensions
DENSE_UNITS = 14  # the thesis's experiment 10: one dense layer of 14 units, then softmax
# Exactly the types the fusion estimators of `build_estimator` hold (passed to skops as trusted=).
FUSION_TRUSTED_TYPES = [
    "sklearn.pipeline.Pipeline", "sklearn.preprocessing._data.StandardScaler", "sklearn.decomposition._pca.PCA",
    "sklearn.svm._classes.SVC", "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer", "sklearn.preprocessing._label.LabelBinarizer",
    "numpy.ndarray", "numpy.float64", "numpy.int64", "numpy.int32", "numpy.random.mtrand.RandomState",
]


def fusion_inputs(method: str, face_scores, voice_scores, face_features, voice_stats68) -> np.ndarray:
    """The vector a fitted fusion model takes for one clip.

    ``learned``: the two 7-class score vectors (14 values). ``feature-*``: the clip's mean
    face fc2 features concatenated with the 68 voice statistics (the thesis's feature fusion).
    """
    if method == "learned":
        return np.concatenate([np.asarray(face_scores, np.float64), np.asarray(voice_scores, np.float64)])
    return np.concatenate([np.asarray(face_features, np.float64), np.asarray(voice_stats68, np.float64)])


def build_estimator(method: str, *, n_samples: int, n_features: int, seed: int = 0, min_class_count: int = 5):
    """scikit-learn pipeline for a fusion method.

    ``feature-svm`` gets its probabilities from temperature scaling of the SVM's decisions on
    stratified out-of-fold predictions (``CalibratedClassifierCV(..., ensemble=False)``,
    scikit-learn's replacement for the deprecated ``SVC(probability=True)``); its arg-max is
    the SVM's own prediction. ``min_class_count`` (the rarest emotion's clips) caps the folds.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if method == "learned":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    k = max(1, min(PCA_COMPONENTS, n_samples - 1, n_features))
    if method == "feature-svm":
        if min_class_count < 2:
            raise ModelError("feature-svm fusion needs at least 2 clips of every emotion it learns (its "
                             "probabilities are calibrated on held-out folds); extract more clips")
        cv = min(5, min_class_count)
        # every calibration fold trains on about (cv - 1) / cv of the clips: PCA must fit there too
        k = max(1, min(k, n_samples - -(-n_samples // cv) - 1))
        svm = make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), SVC(C=1.0, kernel="rbf"))
        return CalibratedClassifierCV(svm, method="temperature", cv=cv, ensemble=False)
    if method == "feature-dense":
        head = MLPClassifier(hidden_layer_sizes=(DENSE_UNITS,), max_iter=2000, random_state=seed)
    else:
        raise ModelError(f"unknown fusion method {method!r}; use one of {', '.join(METHODS + FEATURE_METHODS)}")
    return make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), head)


def pca_size(estimator) -> int | None:
    """Components of the PCA inside a fitted fusion estimator (None for ``learned``, which has none)."""
    if hasattr(estimator, "calibrated_classifiers_"):  # feature-svm: the SVM pipeline fitted on every clip
        estimator = estimator.calibrated_classifiers_[0].estimator
    pca = getattr(estimator, "named_steps", {}).get("pca")
    return None if pca is None else int(pca.n_components_)


def heldout_accuracy(method: str, x: np.ndarray, y: Sequence[str], *, seed: int = 0,
                     max_folds: int = 5) -> tuple[float, int] | None:
    """Cross-validated accuracy of a fusion method on clip vectors ``x``: (accuracy, folds).

    Stratified folds (at most ``max_folds``, at most the rarest class's count); each fold fits
    its own :func:`build_estimator` on the other folds. None when the classes are too small
    for two folds (or for the SVM's inner calibration folds).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    k = min(max_folds, int(counts.min())) if len(counts) > 1 else 0
    if k < 2:
        return None
    correct = 0
    try:
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            _, c = np.unique(y[tr], return_counts=True)
            est = build_estimator(method, n_samples=len(tr), n_features=x.shape[1], seed=seed,
                                  min_class_count=int(c.min()))
            est.fit(np.asarray(x[tr], np.float64), y[tr])
            correct += int((est.predict(np.asarray(x[te], np.float64)) == y[te]).sum())
    except (ModelError, ValueError):  # a fold too small for the method
        return None
    return correct / len(y), k


def load_skops(path: Path):
    """Load a fitted fusion estimator, refusing any type outside :data:`FUSION_TRUSTED_TYPES`."""
    import skops.io as sio

    fix = "rerun `emo fuse`"
    check_skops_types(path, FUSION_TRUSTED_TYPES, what="fusion model", fix=fix)
    try:
        return sio.load(str(path), trusted=FUSION_TRUSTED_TYPES)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load the fusion model ({exc.__class__.__name__}: {exc}); {fix}") from None


def save_skops(obj, path: Path) -> None:
    import skops.io as sio

    with atomic_path(Path(path), suffix=".skops") as tmp:
        sio.dump(obj, str(tmp))
