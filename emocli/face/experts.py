"""Face experts: more than one network scores each face, and their calibrated scores are combined.

``emo-cnn`` (the bundle's own network, FER2013, 48x48 grey crops) and ``rafdb`` (opencv_zoo's
facial-expression MobileFaceNet, trained on RAF-DB, 112x112 colour faces aligned by five
landmarks) learned from different corpora and err on different faces, so their average is
right more often than either. Each expert's probabilities are calibrated by a temperature
fitted on held-out faces neither network trained on (``p_T = softmax(log p / T)``), then the
face score of a frame is the weighted average of the calibrated probabilities; or, when the
bundle has one, the face head's: a softmax layer on both networks' features, trained on
AffectNet, SFEW and RAF-DB faces (:class:`FaceHead`, ``emo train-head``), which beats the
average by 15-18 points on those corpora's held-out faces.

Alignment: YuNet (opencv_zoo, 5 landmarks: right eye, left eye, nose tip, right and left
mouth corner) runs on a square region around the face the main detector chose; the landmarks
are mapped onto the ArcFace 112x112 template by a similarity transform. When YuNet finds no
face there, the crop is warped by the mean landmark positions of a face crop framed like
``faces.crop_face`` does (measured on held-out faces, :data:`CROP_LANDMARKS`).

Pure functions on arrays; the ONNX networks run in OpenCV's dnn module (already a dependency).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emocli.errors import ModelError, ParameterError
from emocli.files import atomic_path

RAFDB_FILE = "face_expert_rafdb.onnx"  # opencv_zoo facial_expression_recognition_mobilefacenet_2022july_int8
RAFDB_LABELS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # its 7 logits, in order
EXPERT_SIZE = 112  # pixels: the MobileFaceNet's input side
# ArcFace's 112x112 five-point template (eyes, nose tip, mouth corners), as opencv_zoo aligns.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
# Landmarks as shares of the side of a square face crop (`faces.crop_face`, 10 % margin), the
# mean of YuNet's landmarks over held-out face crops where it found the face
# (emocli.train.calibration.crop_landmarks measures them); used when YuNet finds nothing in a crop.
CROP_LANDMARKS = np.array([[0.335, 0.395], [0.665, 0.395], [0.500, 0.575],
                           [0.365, 0.735], [0.635, 0.735]], np.float32)
# The rafdb expert learned from colour faces of 100 px and more (RAF-DB): grey faces and faces
# under this side (pixels, in the frame) are left to emo-cnn.
EXPERT_MIN_FACE = 64
YUNET_REGION = 1.6  # YuNet looks at a square this many face-box sides wide around the chosen face
YUNET_SIDE = 160  # pixels: that region is resized to this side before YuNet runs
YUNET_MIN_SCORE = 0.5
EXPERT_NAMES = ("emo-cnn", "rafdb")
EXPERT_BATCH = 16  # aligned faces per call of the expert network
EMBEDDING = "embedding"  # the expert network's second output: its face embedding
EMBEDDING_SIZE = 512  # values in that embedding (the MobileFaceNet's last layer input)
EXPERTS_FILE = "experts.json"
HEAD_FILE = "face_head.npz"  # the learned combination of both experts' features (emo train-head)


def align_face(image: np.ndarray, landmarks: np.ndarray, *, size: int = EXPERT_SIZE) -> np.ndarray:
    """Warp ``image`` so the five ``landmarks`` (5, 2) land on the ArcFace template.

    Returns uint8 (size, size, 3) RGB.
    """
    import cv2

    dst = ARCFACE_TEMPLATE * (size / EXPERT_SIZE)
    m, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), dst, method=cv2.LMEDS)
    if m is None:  # degenerate points: fall back to the crop template on the whole image
        h, w = image.shape[:2]
        m, _ = cv2.estimateAffinePartial2D(CROP_LANDMARKS * np.float32([w, h]), dst, method=cv2.LMEDS)
    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class YuNetLandmarks:
    """Five facial landmarks near a given face box, from OpenCV's YuNet."""
    def __init__(self, model_path: Path, *, min_score: float = YUNET_MIN_SCORE):
        import cv2

        if not Path(model_path).is_file():
            raise ModelError(f"{model_path}: YuNet weights missing; reinstall emo (they ship in models/detectors)")
        self.model_path = Path(model_path)
        try:
            self._net = cv2.FaceDetectorYN.create(str(model_path), "", (YUNET_SIDE, YUNET_SIDE), min_score, 0.3, 50)
        except cv2.error:
            raise ModelError(f"{model_path}: not a usable YuNet model; reinstall emo (it ships in models/detectors)") \
                from None

    def __call__(self, image: np.ndarray, box: Sequence[float] | None = None) -> np.ndarray | None:
        """Landmarks (5, 2) in ``image`` pixels of the face nearest the centre of ``box``.

        ``box`` (x0, y0, x1, y1): where the main detector found the face; ``None``: the image
        is itself a face crop. Returns None when YuNet finds no face there.
        """
        import cv2

        h, w = image.shape[:2]
        if box is None:
            cx, cy, side = w / 2, h / 2, float(max(h, w))
        else:
            x0, y0, x1, y1 = box
            cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, YUNET_REGION * max(x1 - x0, y1 - y0)
        scale = YUNET_SIDE / side
        # region -> YuNet input: an affine map (crop, pad and resize in one warp)
        m = np.float32([[scale, 0, YUNET_SIDE / 2 - cx * scale], [0, scale, YUNET_SIDE / 2 - cy * scale]])
        region = cv2.warpAffine(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), m,
                                (YUNET_SIDE, YUNET_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        _, faces = self._net.detect(cv2.cvtColor(region, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return None
        centres = faces[:, 0:2] + faces[:, 2:4] / 2
        best = faces[int(np.argmin(((centres - YUNET_SIDE / 2) ** 2).sum(1)))]
        pts = best[4:14].reshape(5, 2)
        return ((pts - m[:, 2]) / scale).astype(np.float32)


class OnnxExpert:
    """An ONNX facial-expression network in OpenCV's dnn module: aligned uint8 RGB faces -> probabilities."""
    def __init__(self, model_path: Path, *, labels: Sequence[str] = RAFDB_LABELS, size: int = EXPERT_SIZE):
        import cv2

        if not Path(model_path).is_file():
            raise ModelError(f"{model_path}: face expert weights missing; reinstall emo or pass --face-experts emo-cnn")
        self.model_path = Path(model_path)
        self.labels = tuple(labels)
        self.size = size
        try:
            self._net = cv2.dnn.readNet(str(model_path))
        except cv2.error as exc:  # truncated or not an ONNX graph
            why = str(exc).strip().splitlines()[-1][:160]
            raise ModelError(f"{model_path}: not a usable ONNX face expert ({why}); restore the bundle, or pass "
                             "--face-experts emo-cnn") from None
        self._has_embedding = EMBEDDING in self._net.getUnconnectedOutLayersNames()

    def logits(self, faces: np.ndarray, *, embeddings: bool = False):
        """Logits (N, n_labels) float32 for aligned faces, uint8 (N, size, size, 3) RGB.

        With ``embeddings``, returns ``(embeddings (N, D), logits)``: D = 512, the input of the
        network's last layer (exposed by scripts/dequantize_onnx.py).
        """
        faces = np.asarray(faces)
        out_l, out_e = [], []
        for start in range(0, len(faces), EXPERT_BATCH):
            x = (faces[start:start + EXPERT_BATCH].astype(np.float32) / 255.0 - 0.5) / 0.5
            self._net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            if self._has_embedding:
                e, logit = self._net.forward([EMBEDDING, "label"])
                out_e.append(e.reshape(len(x), -1))
            else:
                logit = self._net.forward()
            out_l.append(logit.reshape(len(x), -1))
        n_lab = len(self.labels)
        logits = np.concatenate(out_l).astype(np.float32) if out_l else np.zeros((0, n_lab), np.float32)
        if not embeddings:
            return logits
        emb = np.concatenate(out_e).astype(np.float32) if out_e else np.zeros((0, 0), np.float32)
        return emb, logits


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``p`` (..., K) recalibrated by a temperature: softmax(log p / T)."""
    return softmax(np.log(np.clip(np.asarray(p, np.float64), 1e-12, None)) / float(temperature))


def fit_temperature(p: np.ndarray, y: np.ndarray, *, grid: Sequence[float] | None = None) -> float:
    """The temperature minimising the negative log-likelihood of labels ``y`` (indices) under ``p``.

    A bounded one-dimensional search (golden section on log T over [0.2, 10]); ``grid`` (if
    given) restricts it to those values.
    """
    logp = np.log(np.clip(np.asarray(p, np.float64), 1e-12, None))
    y = np.asarray(y, int)

    def nll(t: float) -> float:
        q = softmax(logp / t)
        return float(-np.log(np.clip(q[np.arange(len(y)), y], 1e-12, None)).mean())

    if grid is not None:
        return float(min(grid, key=nll))
    lo, hi = math.log(0.2), math.log(10.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(math.exp(a)), nll(math.exp(b))
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(math.exp(b))
    return float(math.exp((lo + hi) / 2))


@dataclass
class FaceHead:
    """A linear softmax head on both experts' features: [MobileFaceNet embedding, emo-cnn fc2].

    ``p = softmax(((x - mean) / scale) @ coef.T + intercept) / temperature)``; fitted by
    ``emo train-head`` on colour faces of AffectNet, SFEW and RAF-DB's training parts.
    """
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_labels, n_inputs)
    intercept: np.ndarray  # (n_labels,)
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(self.coef.shape[1])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, n_labels) float32 for head inputs x (N, n_inputs)."""
        z = ((np.asarray(x, np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
        return softmax(z / self.temperature).astype(np.float32)

    def save(self, path: Path) -> None:
        """The arrays only (npz, no pickle); temperature and info live in experts.json."""
        with atomic_path(Path(path), suffix=".npz") as tmp:
            np.savez(tmp, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, path: Path, *, temperature: float = 1.0, info: dict | None = None) -> "FaceHead":
        try:
            with np.load(path, allow_pickle=False) as d:
                head = cls(mean=d["mean"].astype(np.float32), scale=d["scale"].astype(np.float32),
                           coef=d["coef"].astype(np.float32), intercept=d["intercept"].astype(np.float32),
                           temperature=float(temperature), info=dict(info or {}))
        except FileNotFoundError:
            raise ModelError(f"{path}: face head missing; restore the bundle or rerun "
                             "`emo train-head DATA --model BUNDLE --write`") from None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: unreadable face head ({exc}); restore the bundle or rerun "
                             "`emo train-head DATA --model BUNDLE --write`") from None
        n = head.coef.shape[1] if head.coef.ndim == 2 else -1
        if not (head.mean.shape == head.scale.shape == (n,) and head.intercept.shape == (head.coef.shape[0],)
                and head.temperature > 0 and np.all(head.scale > 0)):
            raise ModelError(f"{path}: inconsistent face head shapes; restore the bundle or rerun "
                             "`emo train-head DATA --model BUNDLE --write`")
        if not (np.isfinite(head.temperature) and all(np.isfinite(a).all() for a in (head.mean, head.scale, head.coef,
                                                                                     head.intercept))):
            raise ModelError(f"{path}: the face head holds non-finite values; restore the bundle or rerun "
                             "`emo train-head DATA --model BUNDLE --write`")
        return head


@dataclass
class ExpertSet:
    """How the face experts' scores become one face score: a temperature and a weight each.

    ``temperatures_`` and ``weights_`` map expert name -> value; the face score of a frame is
    ``sum_e w_e * temper(p_e, T_e)`` over the experts in use, renormalised. ``head_``, when
    the bundle has one, replaces that average for the frames both experts score.
    """
    names: tuple[str, ...] = EXPERT_NAMES
    temperatures_: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in EXPERT_NAMES})
    weights_: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in EXPERT_NAMES})
    info_: dict[str, Any] = field(default_factory=dict)
    head_: FaceHead | None = None
    # the experts ``--face-experts all`` uses (None: every one in ``names``); ``emo train-video --features``
    # sets it to emo-cnn alone, whose retrained softmax the face head does not read
    default_: tuple[str, ...] | None = None
    # faces under EXPERT_MIN_FACE px (emo calibrate-small-faces): None = emo-cnn alone, else
    # {"temperatures": {kind: {expert: T}}, "cnn_weight": {kind: w}, "info": {...}}, kind colour or grey
    small_: dict[str, Any] | None = None

    def small_weight(self, grey: bool) -> float:
        """emo-cnn's weight for a small face (the expert has 1 - it); 1.0 without small-face settings."""
        if self.small_ is None:
            return 1.0
        return float(self.small_["cnn_weight"]["grey" if grey else "colour"])

    def small_mix(self, cnn: np.ndarray, raf: np.ndarray, grey: np.ndarray, *, use: Sequence[str] = EXPERT_NAMES
                  ) -> np.ndarray:
        """Small faces' score: emo-cnn's and the expert's probabilities (N, K), each tempered by its
        small-face temperature, averaged with the weight of the face's kind (``grey``: (N,) bool).
        With one of the two experts in ``use``, that one alone."""
        temps = self.small_["temperatures"] if self.small_ is not None else {}
        grey = np.asarray(grey, bool)[:, None]
        c, r = (np.where(grey, temper(p, temps.get("grey", {}).get(e, 1.0)), temper(p, temps.get("colour", {}).get(e, 1.0)))
                for e, p in (("emo-cnn", cnn), ("rafdb", raf)))
        if "rafdb" not in use:
            return c.astype(np.float32)
        w = np.where(grey, self.small_weight(True), self.small_weight(False)) if "emo-cnn" in use else 0.0
        return (w * c + (1 - w) * r).astype(np.float32)

    def calibrate(self, name: str, p: np.ndarray) -> np.ndarray:
        """One expert's probabilities (N, K) recalibrated by its temperature; float32."""
        return temper(p, self.temperatures_.get(name, 1.0)).astype(np.float32)

    def combine(self, scores: dict[str, np.ndarray], use: Sequence[str] | None = None) -> np.ndarray:
        """Weighted average of calibrated probabilities (N, K), over the experts in ``use``."""
        use = [n for n in (use or self.names) if n in scores]
        if not use:
            raise ModelError("no face expert scored these faces")
        calibrated = {n: self.calibrate(n, scores[n]) for n in use}
        return self.mix(calibrated, fallback=calibrated[use[0]])

    def mix(self, calibrated: dict[str, np.ndarray], *, fallback: np.ndarray) -> np.ndarray:
        """Weighted average of already-calibrated scores (N, K) whose rows may be NaN (expert did not score).

        Rows no expert scored take ``fallback``'s row.
        """
        num = np.zeros_like(fallback, dtype=np.float64)
        den = np.zeros((len(fallback), 1))
        for name, p in calibrated.items():
            ok = ~np.isnan(p[:, :1])
            w = self.weights_.get(name, 1.0)
            num += np.where(ok, w * np.nan_to_num(p), 0.0)
            den += w * ok
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), fallback).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": "emo-experts", "format_version": 1, "experts": list(self.names),
             "temperatures": self.temperatures_, "weights": self.weights_, "info": self.info_}
        if self.head_ is not None:
            d["head"] = {"file": HEAD_FILE, "temperature": self.head_.temperature, "info": self.head_.info}
        if self.default_ is not None:
            d["default"] = list(self.default_)
        if self.small_ is not None:
            d["small_faces"] = self.small_
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | str = EXPERTS_FILE) -> "ExpertSet":
        try:
            names = tuple(str(n) for n in d["experts"])
            temps = {str(k): float(v) for k, v in d["temperatures"].items()}
            weights = {str(k): float(v) for k, v in d["weights"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{path}: malformed face-expert settings ({exc}); rerun "
                             "`emo calibrate-experts DATA --model BUNDLE --write`") from None
        unknown = sorted(set(names) - set(EXPERT_NAMES))
        bad = [n for n in names if not (math.isfinite(temps.get(n, 1.0)) and math.isfinite(weights.get(n, 1.0))
                                        and temps.get(n, 1.0) > 0 and weights.get(n, 1.0) >= 0)]
        if unknown or bad:
            raise ModelError(f"{path}: unknown experts {unknown} or non-positive or non-finite temperatures/weights {bad}; "
                             "rerun `emo calibrate-experts DATA --model BUNDLE --write`")
        head = None
        if isinstance(d.get("head"), dict):
            h = d["head"]
            try:
                temperature = float(h.get("temperature", 1.0))
            except (TypeError, ValueError):
                temperature = -1.0
            head = FaceHead.load(Path(path).parent / HEAD_FILE, temperature=temperature, info=h.get("info"))
        default = d.get("default")
        if default is not None and (not isinstance(default, list) or not default
                                    or not set(map(str, default)) <= set(names)):
            raise ModelError(f"{path}: \"default\" must list experts of {list(names)}, got {default!r}; restore "
                             "the bundle, or rerun `emo train-video --features ... --out` into it")
        return cls(names=names, temperatures_=temps, weights_=weights, info_=dict(d.get("info", {})), head_=head,
                   default_=None if default is None else tuple(map(str, default)),
                   small_=_small_settings(d.get("small_faces"), path))


def _small_settings(d: Any, path: Path | str) -> dict[str, Any] | None:
    """experts.json's ``small_faces`` checked: temperatures > 0 and emo-cnn weights in [0, 1] for colour and grey."""
    if d is None:
        return None
    try:
        temps = {kind: {str(e): float(t) for e, t in d["temperatures"][kind].items()} for kind in ("colour", "grey")}
        weights = {kind: float(d["cnn_weight"][kind]) for kind in ("colour", "grey")}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: malformed small_faces settings ({exc}); rerun "
                         "`emo calibrate-small-faces DATA --bundle BUNDLE --write`") from None
    if not (all(math.isfinite(t) and t > 0 for kind in temps.values() for t in kind.values())
            and all(0 <= w <= 1 for w in weights.values())):
        raise ModelError(f"{path}: small_faces temperatures must be > 0 and weights in [0, 1], got {temps} {weights}; "
                         "rerun `emo calibrate-small-faces DATA --bundle BUNDLE --write`")
    return {**d, "temperatures": temps, "cnn_weight": weights}


def is_grey(crop: np.ndarray) -> bool:
    """A grey image (one channel, or RGB with equal channels, as black-and-white film decodes)."""
    crop = np.asarray(crop)
    if crop.ndim < 3 or crop.shape[2] < 3:
        return True
    small = crop[::4, ::4].astype(np.int16)
    return not (np.abs(small[..., 0] - small[..., 1]).max() > 2 or np.abs(small[..., 1] - small[..., 2]).max() > 2)


def expert_applies(crop: np.ndarray, *, colour: bool = True) -> bool:
    """Whether the rafdb expert scores this face crop: at least EXPERT_MIN_FACE pixels and, with
    ``colour``, in colour (the expert's own scores on grey faces are poor; the face head, which
    learned from grey RAF-DB faces too, asks for size only)."""
    crop = np.asarray(crop)
    if min(crop.shape[:2]) < EXPERT_MIN_FACE:
        return False
    return not colour or not is_grey(crop)


def parse_experts(value: str | None, available: Sequence[str], default: Sequence[str] | None = None
                  ) -> tuple[str, ...]:
    """``--face-experts`` value -> expert names: ``all`` (the default: the bundle's ``default`` set when
    it names one, else every expert ``available``), or a comma list."""
    if value is None or value.strip() in ("", "all"):
        return tuple(default or available)
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in EXPERT_NAMES]
    if unknown:
        raise ParameterError(f"unknown face expert(s) {', '.join(unknown)}; use all, or a comma list of "
                         f"{', '.join(EXPERT_NAMES)}")
    missing = [n for n in names if n not in available]
    if missing:
        raise ParameterError(f"the bundle has no {', '.join(missing)} face expert (it has {', '.join(available)})")
    return names


@functools.lru_cache(maxsize=2)
def get_landmarker(path: str) -> YuNetLandmarks:
    return YuNetLandmarks(Path(path))
