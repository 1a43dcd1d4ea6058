"""The voice model: standardised clip statistics -> RBF SVM -> calibrated probabilities.

:class:`VoiceModel` follows the scikit-learn contract: ``__init__`` only stores
parameters, ``fit(X, y, groups)`` returns ``self``, learned state ends in ``_``,
``predict_proba`` columns follow :attr:`VoiceModel.labels`.

Hyper-parameters (C, and gamma as a multiple of ``1 / n_features``) are chosen by
*repeated speaker-grouped* cross-validation: in every repeat the speakers are shuffled
and split into folds, so a speaker's clips are never on both sides of a split. Random
splits would put the same voice in training and validation and overstate accuracy by
20-40 points. The per-class recall of those validation predictions is kept
(``validation_recall_``): decision-level fusion derives its weights from it.

Probabilities come from temperature scaling (``softmax(decision / T)``) fitted on
speaker-grouped out-of-fold decisions, so they are calibrated for *unseen* speakers and
their arg-max is the SVM's own prediction.

Saved as ``voice.npz``, the fitted scaler, support vectors, dual coefficients and temperature
as plain arrays (read with ``allow_pickle=False``; :class:`CompactSVM` scores them with numpy
alone, without scikit-learn or skops, which take over a second to import), and ``voice.json``
(labels, feature settings, chosen hyper-parameters, validation and test scores). Bundles made
before 2026-12 also hold ``voice.skops``, the same model as a scikit-learn object (skops format:
no pickle; only the types in :data:`TRUSTED_TYPES` are accepted): it is read only when a bundle
has no ``.npz``, and a new save removes it (52.7 MB for the shipped bundle's two voice models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emocli.bundle import check_format_version, check_skops_types, library_versions, read_json_document
from emocli.corpus.splits import group_folds, speaker_folds
from emocli.errors import ModelError, NotFittedError, ParameterError
from emocli.files import atomic_path, atomic_write_text, load_npz_weights
from emocli.labels import LABELS
from emocli.quiet_imports import available_cpus
from emocli.report.metrics import classification_report, largest_prediction
from emocli.voice.encoder import ENCODER_SHA256, SAME_ENCODER_SHA256
from emocli.voice.features import FEATURE_SETS, feature_dimension, settings

WEIGHTS_FILE = "voice.skops"  # bundles made before 2026-12: read only where no RUNTIME_FILE is
RUNTIME_FILE = "voice.npz"
META_FILE = "voice.json"
FORMAT = "emo-voice"
FORMAT_VERSION = 1



def _files(name: str) -> tuple[str, str, str]:
    """(legacy scikit-learn weights, runtime arrays, description) file names of the voice model with
    file stem ``name``."""
    return f"{name}.skops", f"{name}.npz", f"{name}.json"


DEFAULT_C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
# gamma as a multiple of 1 / n_features: after standardisation 1.0 is sklearn's gamma="scale"
DEFAULT_GAMMA_GRID = (0.1, 0.25, 0.5)
DEFAULT_FOLDS = 4  # speaker folds per repeat
CALIBRATION_FOLDS = 5  # speaker folds for the temperature-scaling decisions

# Exactly the types a saved voice model holds (passed to skops.io.load as trusted=).
TRUSTED_TYPES = [
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.svm._classes.SVC",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.int32",
]


PLANES_KEY = "support_vector_planes"  # packed support vectors: byte k of every value in plane k


def pack_planes(x: np.ndarray) -> np.ndarray:
    """``x`` (float16 or float32, (n, d)) as uint8 planes (itemsize, n, d): plane k holds byte k of
    every value. Deflate then finds the runs in the sign-and-exponent bytes that it cannot find in
    interleaved values (float16 support vectors: 86 % of their size compressed, against 92 %)."""
    x = np.ascontiguousarray(x)
    return np.ascontiguousarray(x.view(np.uint8).reshape(*x.shape, x.itemsize).transpose(2, 0, 1))


def unpack_planes(planes: np.ndarray) -> np.ndarray:
    """The array :func:`pack_planes` packed, bit for bit."""
    planes = np.asarray(planes)
    if planes.dtype != np.uint8 or planes.ndim != 3 or planes.shape[0] not in (2, 4):
        raise ValueError(f"support vector planes must be uint8 (2 or 4, n, d), got {planes.dtype} {planes.shape}")
    k = planes.shape[0]
    return np.ascontiguousarray(planes.transpose(1, 2, 0)).view(f"<f{k}")[..., 0]


class CompactSVM:
    """A fitted StandardScaler + RBF SVC + temperature scaling, as plain arrays.

    Reproduces ``CalibratedClassifierCV(Pipeline([StandardScaler, SVC(kernel="rbf")]),
    method="temperature", ensemble=False).predict_proba`` with numpy (one-vs-one decisions
    turned into scikit-learn's one-vs-rest votes + confidences, then ``softmax(beta * d)``);
    a test checks the two agree.
    """
    KEYS = ("mean", "scale", "support_vectors", "dual_coef", "intercept", "n_support", "gamma", "beta")

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.mean = np.asarray(arrays["mean"], np.float64)
        self.scale = np.asarray(arrays["scale"], np.float64)
        sv = arrays["support_vectors"] if "support_vectors" in arrays else unpack_planes(arrays[PLANES_KEY])
        if not np.isfinite(sv).all():
            raise ModelError("non-finite support vectors")
        self.support_vectors = np.asarray(sv, np.float64)
        self.dual_coef = np.asarray(arrays["dual_coef"], np.float64)
        self.intercept = np.asarray(arrays["intercept"], np.float64)
        self.n_support = np.asarray(arrays["n_support"], np.int64)
        self.gamma = float(arrays["gamma"])
        self.beta = float(arrays["beta"])
        k, d = len(self.n_support), len(self.mean)
        n_sv = int(self.n_support.sum())
        if (k < 2 or self.scale.shape != (d,) or self.support_vectors.shape != (n_sv, d)
                or self.dual_coef.shape != (k - 1, n_sv) or self.intercept.shape != (k * (k - 1) // 2,)
                or not np.isfinite(self.gamma) or not np.isfinite(self.beta)):
            raise ModelError("inconsistent array shapes")
        self.classes_ = np.arange(k)
        self.n_features_in_ = d
        self._sv_sq = (self.support_vectors ** 2).sum(1)  # squared norms, for the kernel's distances

    @classmethod
    def from_estimator(cls, est) -> "CompactSVM":
        """From the fitted ``CalibratedClassifierCV`` that :meth:`VoiceModel.fit` builds."""
        (cc,) = est.calibrated_classifiers_
        pipe = cc.estimator
        scaler, svm = pipe.named_steps["scale"], pipe.named_steps["svm"]
        (cal,) = cc.calibrators
        return cls({"mean": scaler.mean_, "scale": scaler.scale_, "support_vectors": svm.support_vectors_,
                    "dual_coef": svm.dual_coef_, "intercept": svm.intercept_, "n_support": svm.n_support_,
                    "gamma": np.float64(svm._gamma), "beta": np.float64(cal.beta_)})

    def arrays(self, *, packed: bool = False) -> dict[str, np.ndarray]:
        """The arrays ``voice.npz`` stores: support vectors (standardised values) in float16 (a quarter
        of float64: the shipped model's 8,936 x 1,057 are 18.9 MB instead of 75.5; on the held-out
        speakers the probabilities move by at most 7e-5 and no label changes), float32 where a value
        is beyond float16's range; the rest as fitted. ``packed``: the support vectors' bytes as
        planes (see :func:`pack_planes`), for a file written compressed."""
        out = {key: np.asarray(getattr(self, key)) for key in self.KEYS}
        sv = out["support_vectors"]
        out["support_vectors"] = sv.astype(np.float16 if np.abs(sv).max(initial=0.0) < 6e4 else np.float32)
        if packed:
            out[PLANES_KEY] = pack_planes(out.pop("support_vectors"))
        return out

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``decision_function_shape="ovr"`` values, (n, k); for two classes the
        logits ``(-d, d)`` that temperature scaling makes of the binary decision ``d``."""
        z = (np.asarray(X, np.float64) - self.mean) / self.scale
        # squared distances |sv|^2 - 2 sv.z + |z|^2 in float64: one matrix product instead of an
        # (n_sv, d) difference per row (3,023 x 1,057: 4 ms -> 0.5 ms a clip). libsvm subtracts
        # first; standardised vectors lie ~30 apart, so the cancellation costs ~1e-13 relative.
        sq = np.maximum(self._sv_sq[None, :] - 2.0 * (z @ self.support_vectors.T) + (z ** 2).sum(1)[:, None], 0.0)
        kern = np.exp(-self.gamma * sq)  # (n, n_sv)
        k = len(self.n_support)
        start = np.concatenate([[0], np.cumsum(self.n_support)])
        if k == 2:
            # Binary: scikit-learn stores dual_coef_ and intercept_ with libsvm's signs flipped, so this
            # is its decision_function (positive: the second class); calibration reads it as logits (-d, d).
            dec = kern @ self.dual_coef[0] + self.intercept[0]
            return np.stack([-dec, dec], axis=1)
        votes = np.zeros((len(z), k))
        conf = np.zeros((len(z), k))
        p = 0
        for i in range(k):
            si = slice(start[i], start[i + 1])
            for j in range(i + 1, k):
                sj = slice(start[j], start[j + 1])
                dec = (kern[:, si] @ self.dual_coef[j - 1, si] + kern[:, sj] @ self.dual_coef[i, sj]
                       + self.intercept[p])
                conf[:, i] += dec
                conf[:, j] -= dec
                votes[:, i] += dec >= 0
                votes[:, j] += dec < 0
                p += 1
        return votes + conf / (3.0 * (np.abs(conf) + 1.0))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.beta * self.decision_function(X)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Frames:
    """The short-term analysis the clip statistics were computed with: window and hop in seconds, and
    the sample rate (Hz) the audio was decoded at."""
    window: float = 0.050
    step: float = 0.025
    sample_rate: int = 16000


@dataclass(frozen=True)
class Selection:
    """How :meth:`VoiceModel.fit` chooses C and gamma: every pair of ``C_grid`` (SVM C values) and
    ``gamma_grid`` (RBF gammas as multiples of ``1 / n_features``), scored on ``n_folds`` speaker-grouped
    folds, ``n_repeats`` times with a new shuffle (``seed``), by ``scoring``: ``"uar"`` (unweighted
    average recall) or ``"accuracy"``. ``by="corpus"``: scored instead by leaving each corpus out in
    turn (trained on the others), which rewards what holds on corpora unlike the training ones."""
    C_grid: Sequence[float] = DEFAULT_C_GRID
    gamma_grid: Sequence[float] = DEFAULT_GAMMA_GRID
    n_repeats: int = 3
    n_folds: int = DEFAULT_FOLDS
    scoring: str = "uar"
    seed: int = 0
    by: str = "speaker"


class VoiceModel:
    """StandardScaler + RBF SVM on clip statistics, tuned on speaker-grouped splits.

    Parameters
    ----------
    feature_set : which clip statistics ``X`` holds (:data:`emocli.voice.features.FEATURE_SETS`)
    frames : the analysis window, hop and sample rate the features were computed with (:class:`Frames`)
    class_weight : ``"balanced"`` (weights inversely proportional to class frequency) or None
    selection : how C and gamma are chosen (:class:`Selection`)

    Attributes (after ``fit``)
    --------------------------
    labels_ : emotion names of the probability columns; C_, gamma_ : chosen values;
    validation_ : accuracy, UAR, per-class recall and confusion of the speaker-grouped
    validation predictions; validation_recall_ : its per-class recall; settings_ : feature
    settings (:func:`emocli.voice.features.settings`); estimator_ : the calibrated pipeline.
    """
    def __init__(self, *, feature_set: str = "rich", frames: Frames = Frames(), class_weight: str | None = "balanced",
                 selection: Selection = Selection()):
        self.feature_set = feature_set
        self.frames = frames
        self.class_weight = class_weight
        self.selection = selection
        self.window, self.step, self.sample_rate = frames.window, frames.step, frames.sample_rate
        self.C_grid, self.gamma_grid = selection.C_grid, selection.gamma_grid
        self.n_repeats, self.n_folds = selection.n_repeats, selection.n_folds
        self.scoring, self.seed, self.select_by = selection.scoring, selection.seed, selection.by

    # -- fitting -------------------------------------------------------------------------

    def _svm(self, C: float, gamma: float):
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        return Pipeline([("scale", StandardScaler()),
                         ("svm", SVC(C=C, kernel="rbf", gamma=gamma, class_weight=self.class_weight))])

    def _check_params(self) -> None:
        if self.scoring not in ("uar", "accuracy"):
            raise ParameterError(f"scoring must be 'uar' or 'accuracy', got {self.scoring!r}")
        if self.class_weight not in (None, "balanced"):
            raise ParameterError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if not self.C_grid or not self.gamma_grid or any(v <= 0 for v in (*self.C_grid, *self.gamma_grid)):
            raise ParameterError("C_grid and gamma_grid must be non-empty lists of positive numbers")
        if self.n_repeats < 1 or self.n_folds < 2:
            raise ParameterError("n_repeats must be >= 1 and n_folds >= 2")
        if self.select_by not in ("speaker", "corpus"):
            raise ParameterError(f"selection by must be 'speaker' or 'corpus', got {self.select_by!r}")

    def fit(self, X: np.ndarray, y: Sequence[str], groups: Sequence[str], *,
            augmented: Sequence[bool] | None = None, corpora: Sequence[str] | None = None,
            progress=None) -> "VoiceModel":
        """Choose C and gamma on speaker-grouped splits, then fit on everything.

        Parameters
        ----------
        X : float (n_samples, n_features) clip statistics
        y : emotion names, each one of :data:`emocli.labels.LABELS`
        groups : speaker of each sample; a speaker is never on both sides of a split
        augmented : True for rows computed from an altered copy of a clip (e.g. speed
            perturbation): they are trained on, never scored, so validation scores describe
            real recordings only
        corpora : corpus of each sample; needed when the selection is by corpus (leave one corpus out)
        progress : optional callable(message) for progress lines

        Returns
        -------
        self
        """
        from sklearn.calibration import CalibratedClassifierCV

        self._check_params()
        feature_settings = settings(feature_set=self.feature_set, window=self.window, step=self.step,
                                    sr=self.sample_rate)
        X, groups, labels, yi, real = _fit_inputs(X, y, groups, augmented, self.feature_set,
                                                  feature_settings["dimension"])
        k = len(labels)
        gamma_unit = 1.0 / X.shape[1]

        # Each repeat's out-of-fold predictions are pooled, then scored (not GridSearchCV's mean of
        # per-fold scores: speaker folds differ in size, and on the shipped recipe that mean picks
        # other settings, so README's train-audio command would stop reproducing the shipped models).
        rng = np.random.default_rng(self.seed)
        if self.select_by == "corpus":
            corpora = _corpora(corpora, len(X))
            splits = [group_folds(corpora)]  # one deterministic pass: each corpus left out once
        else:
            splits = [speaker_folds(groups, self.n_folds, rng) for _ in range(self.n_repeats)]
        grid = _validation_grid(self, X, yi, labels, splits, real, gamma_unit, progress)
        best = max(grid, key=lambda g: (round(g[self.scoring], 6), round(g["accuracy" if self.scoring == "uar"
                                                                            else "uar"], 6), -g["C"]))
        self.C_ = best["C"]
        self.gamma_ = best["gamma_x"] * gamma_unit
        self.gamma_x_ = best["gamma_x"]
        self.labels_ = labels
        self.n_features_in_ = X.shape[1]
        # the matrix pools every repeat: each real clip is predicted once per repeat
        self.validation_ = classification_report(np.tile(yi[real], len(splits)), best["pred"], labels, absent=None)
        self.validation_["clips"] = int(real.sum())
        self.validation_["repeats"] = len(splits)
        self.validation_["folds"] = len(splits[0])
        self.validation_["by"] = self.select_by
        if self.select_by == "corpus":
            self.validation_["per_corpus"] = left_out_table(yi[real], best["pred"], corpora[real], labels)
        self.validation_recall_ = dict(self.validation_["recall"])
        self.grid_ = [{k2: v for k2, v in g.items() if k2 != "pred"} for g in grid]
        self.n_speakers_ = int(len(np.unique(groups)))
        self.n_augmented_ = int((~real).sum())
        self.settings_ = feature_settings

        # Temperature scaling on decisions of SVMs that never saw the speaker; every training
        # side must hold every emotion, so use fewer folds when a speaker lacks some.
        for n_cal in range(CALIBRATION_FOLDS, 1, -1):
            cal_folds = speaker_folds(groups, n_cal, np.random.default_rng(self.seed + 1))
            if all(len(np.unique(yi[tr])) == k for tr, _ in cal_folds):
                break
        else:
            raise ModelError("no speaker-grouped split leaves every emotion on the training side; add speakers "
                             "who act every emotion")
        self.calibration_folds_ = len(cal_folds)
        cal = CalibratedClassifierCV(self._svm(self.C_, self.gamma_), method="temperature", cv=cal_folds,
                                     ensemble=False, n_jobs=available_cpus() if len(X) >= PARALLEL_FROM else None)
        self.estimator_ = cal.fit(X, yi)
        return self


    # -- prediction ----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("this VoiceModel is not fitted yet; call fit() or VoiceModel.load(bundle)")

    @property
    def labels(self) -> list[str]:
        """Emotion names of :meth:`predict_proba`'s columns, in :data:`emocli.labels.LABELS` order."""
        self._check_fitted()
        return list(self.labels_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities, float64 (n_samples, len(labels)); columns follow :attr:`labels`; rows sum to 1."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ParameterError(f"X must be (n, {self.n_features_in_}) voice features, got {X.shape}; "
                             f"compute them with the model's feature settings ({self.settings_})")
        X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
        p = np.zeros((len(X), len(self.labels_)))
        p[:, self.estimator_.classes_.astype(int)] = self.estimator_.predict_proba(X)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable emotion name per row."""
        return np.asarray(self.labels_)[self.predict_proba(X).argmax(axis=1)]

    # -- persistence ---------------------------------------------------------------------

    def metadata(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels_),
            "features": dict(self.settings_),
            "n_features": int(self.n_features_in_),
            "svm": {"kernel": "rbf", "C": self.C_, "gamma": self.gamma_, "gamma_x_per_feature": self.gamma_x_,
                    "class_weight": self.class_weight, "probabilities": "temperature scaling on "
                    f"{getattr(self, 'calibration_folds_', CALIBRATION_FOLDS)} speaker-grouped folds"},
            "n_augmented": int(getattr(self, "n_augmented_", 0)),
            "selection": {"by": self.select_by, "scoring": self.scoring, "repeats": self.n_repeats,
                          "folds": self.n_folds,
                          "seed": self.seed, "C_grid": [float(c) for c in self.C_grid],
                          "gamma_grid_x": [float(g) for g in self.gamma_grid], "grid": self.grid_,
                          "n_speakers": self.n_speakers_},
            "validation_recall": dict(self.validation_recall_),
            "validation": self.validation_,
            "versions": library_versions(),
            **(extra or {}),
        }

    def save(self, directory: Path | str, *, extra: dict[str, Any] | None = None, name: str = "voice",
             packed: bool = False) -> None:
        """Write ``voice.npz`` and ``voice.json`` into ``directory``, each atomically, and remove an
        earlier model's ``voice.skops`` there (it would describe another model).

        ``extra`` (held-out speakers, test scores, corpora) is merged into voice.json; ``name``
        replaces the file stem ``voice`` (the speaker-normalised model is ``voice_speaker``).
        ``packed`` writes the support vectors as byte planes, compressed: 14 % smaller, 0.12 s more
        to read (30 MB), for a model read once per run (the adapted one), not for every clip.
        """
        if self.estimator_ is None:
            raise NotFittedError("fit the voice model before saving it")
        meta = self.metadata(extra)
        directory = Path(directory)
        weights, runtime, meta_file = _files(name)
        est = self.estimator_
        arrays = (est if isinstance(est, CompactSVM) else CompactSVM.from_estimator(est)).arrays(packed=packed)
        bad = [k for k, v in arrays.items() if np.issubdtype(np.asarray(v).dtype, np.floating)
               and not np.isfinite(v).all()]
        if bad:  # a NaN feature slipped through: nothing is written
            raise ModelError(f"{directory}: not saved: the voice model has non-finite values in {', '.join(bad)}; "
                             "check the training clips' features")
        with atomic_path(directory / runtime, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                (np.savez_compressed if packed else np.savez)(fh, **arrays)
        atomic_write_text(directory / meta_file, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (directory / weights).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path | str, *, runtime: bool = False, name: str = "voice") -> "VoiceModel":
        """Load a model written by :meth:`save` (with the same ``name``).

        The model is read from ``voice.npz`` (see :class:`CompactSVM`: numpy alone); a bundle made
        before 2026-12 that has only ``voice.skops`` is read from that, with scikit-learn.
        ``runtime`` is accepted for compatibility and changes nothing.

        Raises
        ------
        ModelError
            If a file is missing or malformed, or ``voice.skops`` holds any type outside
            :data:`TRUSTED_TYPES` (a crafted file is refused before anything in it runs).
        """
        directory = Path(directory)
        weights, runtime_file, meta_file = _files(name)
        meta_path = directory / meta_file
        meta, labels, n_in = _read_meta(meta_path)
        est = _read_estimator(directory / runtime_file, directory / weights, meta, meta_path, labels, n_in)
        st, (window, step, sr) = _feature_settings(meta, meta_path, n_in)
        try:
            return cls._from_meta(meta, st, est, labels, n_in, window=window, step=step, sr=sr)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"{meta_path}: unusable SVM or selection settings ({type(exc).__name__}: {exc}); "
                             "restore the bundle or retrain with `emo train-audio`") from None

    @classmethod
    def _from_meta(cls, meta: dict, st: dict, est, labels: list, n_in: int, *, window: float, step: float,
                   sr: int) -> "VoiceModel":
        """The model object around a loaded estimator, from voice.json's settings (raises on malformed values)."""
        svm = meta.get("svm", {})
        sel = meta.get("selection", {})
        model = cls(feature_set=st["feature_set"], frames=Frames(window, step, sr), class_weight=svm.get("class_weight"),
                    selection=Selection(C_grid=tuple(sel.get("C_grid", DEFAULT_C_GRID)),
                                        gamma_grid=tuple(sel.get("gamma_grid_x", DEFAULT_GAMMA_GRID)),
                                        n_repeats=int(sel.get("repeats", 3)),
                                        n_folds=int(sel.get("folds", DEFAULT_FOLDS)),
                                        scoring=sel.get("scoring", "uar"), seed=int(sel.get("seed", 0)),
                                        by=sel.get("by", "speaker")))
        model.settings_ = dict(st)
        model.estimator_ = est
        model.labels_ = list(labels)
        model.n_features_in_ = n_in
        model.C_ = float(svm.get("C", np.nan))
        model.gamma_ = float(svm.get("gamma", np.nan))
        model.gamma_x_ = float(svm.get("gamma_x_per_feature", np.nan))
        model.validation_ = meta.get("validation", {})
        model.validation_recall_ = dict(meta.get("validation_recall", {}))
        model.grid_ = sel.get("grid", [])
        model.n_speakers_ = int(sel.get("n_speakers", 0))
        model.metadata_ = meta
        return model


def _read_meta(meta_path: Path) -> tuple[dict, list, int]:
    """voice.json (or voice_speaker.json): its document, labels and feature count, each checked."""
    meta = read_json_document(
        meta_path, fmt=FORMAT, what="an emo voice-model description",
        missing="not found; this bundle has no voice model (train one with `emo train-audio CORPUS --out DIR`)",
        invalid="not valid JSON ({exc}); restore the bundle or retrain")
    check_format_version(meta, meta_path, what="voice-model", newest=FORMAT_VERSION,
                         fix="restore the bundle or retrain with `emo train-audio`")
    labels = meta.get("labels")
    if (not isinstance(labels, list) or len(labels) < 2 or any(lab not in LABELS for lab in labels)
            or len(set(labels)) != len(labels)):
        raise ModelError(f"{meta_path}: 'labels' must list at least two distinct names of {', '.join(LABELS)}")
    n_in = meta.get("n_features")
    if not (isinstance(n_in, int) and not isinstance(n_in, bool) and 0 < n_in < 1 << 20):
        raise ModelError(f"{meta_path}: 'n_features' must be a positive whole number, got {n_in!r}; restore the "
                         "bundle or retrain with `emo train-audio`")
    return meta, labels, n_in


def _read_estimator(compact_path: Path, weights_path: Path, meta: dict, meta_path: Path, labels: list, n_in: int):
    """The SVM from voice.npz (numpy alone), else from a former bundle's voice.skops; checked against voice.json."""
    if compact_path.is_file():
        est = load_npz_weights(compact_path, CompactSVM,
                               what="compact voice model", missing="retrain with `emo train-audio`",
                               rebuild="restore the bundle or retrain with `emo train-audio`")
        source = compact_path
    else:
        est = _load_skops(weights_path, meta)
        source = weights_path
    classes = getattr(est, "classes_", None)
    if (classes is None or list(np.asarray(classes).astype(int)) != list(range(len(labels)))
            or getattr(est, "n_features_in_", None) != n_in):
        raise ModelError(f"{source}: does not match {meta_path} (classes or feature count differ); "
                         "the two files come from different trainings: retrain or restore both")
    return est


def _feature_settings(meta: dict, meta_path: Path, n_in: int) -> tuple[dict, tuple[float, float, int]]:
    """voice.json's feature settings and (window, step, sample rate), checked against this emo."""
    st = meta.get("features")
    try:
        if st["feature_set"] not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {st['feature_set']!r} (this emo knows {', '.join(FEATURE_SETS)})")
        if feature_dimension(st["feature_set"]) != n_in:
            raise ValueError(f"feature set {st['feature_set']!r} has {feature_dimension(st['feature_set'])} "
                             f"values, the model expects {n_in}")
        window, step, sr = float(st["window_s"]), float(st["step_s"]), int(st["sample_rate"])
        if not (0 < step <= window <= 10.0 and 8000 <= sr <= 192000):
            raise ValueError(f"window {window} s, step {step} s, sample rate {sr} Hz out of range")
        if "encoder_sha256" in st and st["encoder_sha256"] not in SAME_ENCODER_SHA256:
            raise ValueError(f"trained on speech encoder {st.get('encoder')} with sha256 "
                             f"{str(st['encoder_sha256'])[:12]}..., this emo ships {ENCODER_SHA256[:12]}...")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"{meta_path}: unusable feature settings ({exc}); retrain with `emo train-audio` "
                         "or upgrade emo") from None
    return st, (window, step, sr)


def _load_skops(weights_path: Path, meta: dict):
    """A voice model saved before 2026-12 as voice.skops (scikit-learn), its types checked first."""
    import skops.io as sio
    from sklearn.calibration import CalibratedClassifierCV

    if not weights_path.is_file():
        raise ModelError(f"{weights_path}: not found; restore the bundle or retrain with `emo train-audio`")
    check_skops_types(weights_path, TRUSTED_TYPES, what="voice model",
                      fix="Restore the bundle or retrain with `emo train-audio`")
    try:
        est = sio.load(weights_path, trusted=TRUSTED_TYPES)
    except Exception as exc:
        saved = (meta.get("versions") or {}).get("scikit-learn", "?")
        raise ModelError(f"{weights_path}: could not be loaded ({type(exc).__name__}: {exc}); it was saved with "
                         f"scikit-learn {saved}: install that version or retrain with `emo train-audio`") from None
    if not isinstance(est, CalibratedClassifierCV):
        raise ModelError(f"{weights_path}: holds a {type(est).__name__}, not an emo voice model; "
                         "restore the bundle or retrain with `emo train-audio`")
    return est


def _fit_idx(est, X, yi, tr):
    if len(np.unique(yi[tr])) < 2:
        raise ModelError("a speaker-grouped training fold has a single emotion; add more speakers")
    return est.fit(X[tr], yi[tr])


PARALLEL_FROM = 2000  # rows from which the grid's fits run in worker processes, one per CPU


def _fold_predictions(model: VoiceModel, X: np.ndarray, yi: np.ndarray, tasks: list, gamma_unit: float) -> list:
    """Each task's (C, gamma multiple, training rows, validation rows) validation predictions. On a large
    training set the fits run in worker processes (libsvm fits on one core); small ones here."""
    jobs = min(available_cpus(), len(tasks)) if len(X) >= PARALLEL_FROM else 1
    if jobs <= 1:
        return [_fit_predict(X, yi, tr, va, model._svm(C, gm * gamma_unit)) for C, gm, tr, va in tasks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, backend="loky")(
        delayed(_fit_predict)(X, yi, tr, va, model._svm(C, gm * gamma_unit)) for C, gm, tr, va in tasks)


def _fit_predict(X, yi, tr, va, est) -> np.ndarray:
    return _fit_idx(est, X, yi, tr).predict(X[va]) if len(va) else np.empty(0, yi.dtype)


def _validation_grid(model: VoiceModel, X: np.ndarray, yi: np.ndarray, labels: list, splits, real: np.ndarray,
                     gamma_unit: float, progress) -> list[dict]:
    """Every (C, gamma) of ``model``'s grids scored on the grouped ``splits``: each repeat's out-of-fold
    predictions of the real recordings are pooled, then scored (accuracy, UAR, their spread, and the
    predictions, for the winner's validation report)."""
    grid = []
    for C in model.C_grid:
        for gm in model.gamma_grid:
            folds = [(tr, va[real[va]]) for repeat in splits for tr, va in repeat]
            got = iter(_fold_predictions(model, X, yi, [(C, gm, tr, va) for tr, va in folds], gamma_unit))
            preds = []
            for repeat in splits:
                pred = np.empty_like(yi)
                for tr, va in repeat:
                    pred[va[real[va]]] = next(got)
                preds.append(pred[real])
            sc = [classification_report(yi[real], p, labels, absent=None) for p in preds]
            grid.append({"C": float(C), "gamma_x": float(gm),
                         "accuracy": float(np.mean([s["accuracy"] for s in sc])),
                         "uar": float(np.mean([s["uar"] for s in sc])),
                         "accuracy_sd": float(np.std([s["accuracy"] for s in sc])),
                         "pred": np.concatenate(preds)})
            if progress:
                progress(f"C {C:g}, gamma {gm:g}/d: validation accuracy {grid[-1]['accuracy']:.3f}, "
                         f"UAR {grid[-1]['uar']:.3f}")
    return grid


def _corpora(corpora, n: int) -> np.ndarray:
    """fit's ``corpora``, checked for a selection by corpus: one name per sample, two corpora or more."""
    if corpora is None or len(corpora) != n:
        raise ParameterError("a selection by corpus needs the corpus of every sample (corpora=...)")
    corpora = np.asarray(corpora).astype(str)
    if len(np.unique(corpora)) < 2:
        raise ModelError("leave-one-corpus-out selection needs at least 2 corpora; add one, or select by speaker")
    return corpora


def left_out_table(y: np.ndarray, pred: np.ndarray, corpora: np.ndarray, labels: list) -> dict:
    """Each left-out corpus's figures: clips, accuracy, UAR over the emotions it has, and the largest
    share of its predictions one emotion takes (a share far above 1/7 is a sink)."""
    out = {}
    for c in dict.fromkeys(corpora.tolist()):
        m = corpora == c
        rep = classification_report(y[m], pred[m], labels)
        top = largest_prediction(rep)
        out[c] = {"n": int(m.sum()), "accuracy": rep["accuracy"], "uar": rep["uar"], "top_share": top["share"],
                  "top_class": top["label"]}
    return out


def _fit_inputs(X, y, groups, augmented, feature_set: str, dimension: int):
    """:meth:`VoiceModel.fit`'s inputs, checked: (X float64, groups, the labels present in LABELS order,
    each row's label index, which rows are real recordings)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray([str(v) for v in y])
    groups = np.asarray([str(g) for g in groups])
    if X.ndim != 2 or len(X) != len(y) or len(y) != len(groups):
        raise ParameterError(f"X must be (n, d) with one label and one speaker per row; got X {X.shape}, "
                             f"{len(y)} labels, {len(groups)} speakers")
    if X.shape[1] != dimension:
        raise ParameterError(f"X has {X.shape[1]} columns but feature set {feature_set!r} has {dimension}")
    if not np.isfinite(X).all():
        raise ParameterError("X has non-finite values; voice features must be finite")
    unknown = sorted(set(y) - set(LABELS))
    if unknown:
        raise ParameterError(f"unknown labels {unknown}; use {', '.join(LABELS)}")
    labels = [lab for lab in LABELS if lab in set(y)]
    if len(labels) < 2:
        raise ModelError(f"the voice model needs at least two emotions to learn from, got {labels}")
    yi = np.array([labels.index(v) for v in y])
    real = np.ones(len(y), bool) if augmented is None else ~np.asarray(augmented, bool)
    if real.shape != yi.shape or not real.any():
        raise ParameterError("augmented must have one flag per row, and some rows must be real recordings")
    return X, groups, labels, yi, real
