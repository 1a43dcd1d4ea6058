"""Decision-level fusion of face and voice scores.

``fused[c] = w_face[c] * face[c] + w_voice[c] * voice[c]``, renormalised to sum to 1.

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

from .errors import ModelError, NotFittedError
from .labels import LABELS

METHODS = ("equal", "confusion")


def align(scores: np.ndarray, labels: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Reorder score columns from ``labels`` to ``target`` order, by name.

    Raises
    ------
    ModelError
        If the two label sets differ.
    """
    if set(labels) != set(target):
        raise ModelError(f"label sets differ: model has {sorted(labels)}, expected {sorted(target)}; "
                         "retrain the model on the seven emo classes")
    idx = [list(labels).index(lab) for lab in target]
    return np.asarray(scores, np.float64)[..., idx]


def normalize(p: np.ndarray) -> np.ndarray:
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
    face_weights_: np.ndarray | None = None
    face_recall_: dict[str, float] = field(default_factory=dict)
    voice_recall_: dict[str, float] = field(default_factory=dict)

    def fit(self, face_recall: Mapping[str, float] | None = None,
            voice_recall: Mapping[str, float] | None = None) -> "FusionModel":
        """Set the weights: equal, or from the two modalities' validation recall per class."""
        if self.method not in METHODS:
            raise ModelError(f"unknown fusion method {self.method!r}; use one of {', '.join(METHODS)}")
        n = len(self.labels)
        if self.method == "equal":
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

    @property
    def voice_weights_(self) -> np.ndarray:
        return 1.0 - self._weights()

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
            raise ValueError("nothing to fuse: both face and voice scores are missing")
        if face is None:
            return normalize(voice)
        if voice is None:
            return normalize(face)
        return normalize(wf * normalize(face) + (1.0 - wf) * normalize(voice))

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict:
        wf = self._weights()
        return {"method": self.method, "labels": list(self.labels),
                "face_weights": {lab: float(w) for lab, w in zip(self.labels, wf)},
                "voice_weights": {lab: float(1 - w) for lab, w in zip(self.labels, wf)},
                "face_validation_recall": self.face_recall_, "voice_validation_recall": self.voice_recall_}

    def save(self, directory: Path) -> None:
        from .bundle import atomic_write_text

        atomic_write_text(Path(directory) / "fusion.json", json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "FusionModel":
        path = Path(directory) / "fusion.json"
        try:
            d = json.loads(path.read_text())
            labels = tuple(d["labels"])
            model = cls(method=d["method"], labels=labels)
            model.face_weights_ = np.array([float(d["face_weights"][lab]) for lab in labels])
        except FileNotFoundError:
            raise ModelError(f"{path}: missing; run `emo fuse {directory}` to compute fusion weights") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: malformed fusion file ({exc}); rerun `emo fuse {directory}`") from None
        if np.any(~np.isfinite(model.face_weights_)) or np.any((model.face_weights_ < 0) | (model.face_weights_ > 1)):
            raise ModelError(f"{path}: fusion weights must lie in [0, 1]; rerun `emo fuse {directory}`")
        model.face_recall_ = d.get("face_validation_recall", {})
        model.voice_recall_ = d.get("voice_validation_recall", {})
        return model
