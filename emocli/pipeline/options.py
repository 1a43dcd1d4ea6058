"""What a pipeline is told and what it returns: ``Options`` (frozen inference settings) and ``Result``
(one input's scores, notes and, for ``extract``, arrays), with the notes' shared wording."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emocli.choices import DEFAULT_BATCH, DEFAULT_DETECTOR, DEFAULT_FPS, DETECTORS, FACE_MODES, POOLINGS, TTA_CHOICES
from emocli.errors import EmoError, ParameterError
from emocli.labels import LABELS

VAD_NOTE = "no speech detected (voice activity:"  # how the note of a clip the VAD gated begins
NO_FACE_NOTE = "no face found"  # how the note of a video, stream or image without a face begins
# How a result's note begins when a modality was tried and left out (the voice gate, a face never
# found, audio that would not decode), as opposed to absent (an image has no voice): evaluate counts them.
REJECTED_NOTES = {"face": (NO_FACE_NOTE,), "voice": ("no speech detected", "voice unusable", "audio undecodable")}

# A still image whose shorter side is at most this many pixels is taken for a face crop when the
# detector finds no face in it (FER2013 is 48 px, RAF-DB 100, AffectNet 96, SFEW 143): detectors
# miss faces that fill the whole image.
CROP_MAX_SIDE = 160
# A live stream is scored window by window as it arrives (memory does not grow with its length):
# without --window its voice is scored in blocks of this many seconds and the blocks averaged.
STREAM_BLOCK = 10.0
# seconds: a window closes at most this long after one modality has passed its end while the
# other has not (a stream whose audio stalls or lags must not hold every result back)
LIVE_MAX_LAG = 5.0
# progress(what, done, total): a pass ("faces", "voice") has gone through ``done`` of ``total`` seconds
Progress = Callable[[str, float, "float | None"], None]

@dataclass(frozen=True)
class Options:
    """Inference settings (all have defaults; the CLI exposes each one)."""

    fps: float | None = DEFAULT_FPS  # None: every frame
    batch_size: int = DEFAULT_BATCH
    detector: str = DEFAULT_DETECTOR  # choices.DETECTORS: yunet, blazeface, haar (the thesis's detector)
    # True: always detect faces; False: inputs are already face crops (FER2013-style images);
    # None (auto): detect, and score a face-sized still image whole when no face is found in it
    detect: bool | None = None
    min_face: int = 24  # pixels
    margin: float = 0.1  # crop margin per side, as a share of the face box
    max_side: int = 1280  # frames are downscaled to this longer side before detection
    max_seconds: float | None = None  # analyse at most this much of each input
    use_face: bool = True
    use_voice: bool = True
    keep_frames: bool = False  # keep per-frame scores and face features in the result (extract)
    frames: bool = False  # report each scored frame: its time, face box and face scores (--frames)
    window: float | None = None  # seconds: also score consecutive segments of this length
    # Test-time views per face: "auto" = the bundle's views for still images and "spread" for
    # video frames (frame k gets the bundle's view k mod n and its mirror: the clip averages every
    # view at the cost of two network passes a frame), or "bundle", "spread", "mirror", "none".
    tta: str = "auto"
    # Face experts that score each frame: "all" (those the bundle has, see experts.py; with both,
    # the bundle's face head combines them, else their calibrated scores are averaged) or a comma
    # list such as "emo-cnn" or "emo-cnn,rafdb".
    face_experts: str = "all"
    # How frame scores become the clip's face score: "mean" (the thesis) or "expressive"
    # (frames weighted by how far they are from neutral, see pool_frames).
    pooling: str = "mean"
    # Speaker adaptation of --window segments and live streams (speaker.py): once WARMUP_SECONDS
    # of voiced windows are in, each window's voice is scored with the bundle's speaker-normalised
    # model against the stream's running statistics. Needs a bundle trained with --adapted-model.
    adapt: bool = False
    # Faces scored per frame: "main" (the main speaker's; other faces are only counted, in a note) or
    # "all" (every face large enough, linked into tracks and reported per track in Result.faces;
    # the clip's face score stays the main face's).
    faces: str = "main"

    def __post_init__(self) -> None:
        """Numbers out of range (inf, nan, a negative count) are refused here, not by ffmpeg later."""
        limits = {"fps": (0.0, 1000.0), "window": (0.0, 86400.0), "max_seconds": (0.0, 1e6),
                  "margin": (0.0, 1.0), "batch_size": (1, 1 << 20), "min_face": (1, 1 << 16),
                  "max_side": (16, 1 << 16)}
        for name, choices in (("detector", DETECTORS), ("tta", TTA_CHOICES), ("pooling", POOLINGS),
                              ("faces", FACE_MODES)):
            if getattr(self, name) not in choices:
                raise ParameterError(f"Options.{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if v is None or isinstance(v, bool):
                continue
            strict = name in ("window", "max_seconds")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if strict else v >= lo) and v <= hi):
                raise ParameterError(f"Options.{name} must be a finite number {'above' if strict else 'from'} {lo:g} "
                                     f"{'and at most' if strict else 'to'} {hi:g}, got {v!r}")




@dataclass
class Result:
    """What emo found in one input. ``scores`` are fused; absent modalities are ``None``."""

    file: str
    status: str = "ok"
    label: str | None = None
    scores: dict[str, float] | None = None
    face_scores: dict[str, float] | None = None
    voice_scores: dict[str, float] | None = None
    # each face expert's clip score (calibrated probabilities) when more than one ran
    face_experts: dict[str, dict[str, float]] | None = None
    modalities: list[str] = field(default_factory=list)
    frames_used: int = 0
    frames_seen: int = 0
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    gpu: bool = False  # whether the face network ran on a GPU
    # Not serialised to JSON lines: arrays for `extract`.
    frame_times: np.ndarray | None = field(default=None, repr=False)
    frame_scores: np.ndarray | None = field(default=None, repr=False)
    face_features: np.ndarray | None = field(default=None, repr=False)
    voice_features: np.ndarray | None = field(default=None, repr=False)
    voice_stats68: np.ndarray | None = field(default=None, repr=False)
    expert_frame_scores: dict[str, np.ndarray] | None = field(default=None, repr=False)  # calibrated, per expert
    expert_features: np.ndarray | None = field(default=None, repr=False)  # (n, 512) rafdb embeddings
    error_type: str | None = None
    segments: list[dict[str, Any]] | None = field(default=None, repr=False)
    frames: list[dict[str, Any]] | None = field(default=None, repr=False)  # --frames: one per scored frame
    # Speaker adaptation (speaker.py), in JSON only when it was asked for: "speaker" when the
    # voice was scored with the speaker-normalised model, else None (a note says why).
    speaker: str | None = None
    adaptation: str | None = None
    adaptation_asked: bool = field(default=False, repr=False)
    # What re-scoring the voice needs: the clip's voice vector and the fusion's other inputs.
    voice_vector: np.ndarray | None = field(default=None, repr=False)
    fusion_inputs: dict[str, Any] | None = field(default=None, repr=False)
    # --faces all: one entry per face track (track, main, box [x, y, w, h], label, scores,
    # frames_used, first, last); in JSON only then
    faces: list[dict[str, Any]] | None = None

    def frames_table(self) -> list[dict[str, Any]]:
        """One row per scored face frame: ``time`` (s), the face box ``x``, ``y``, ``w``, ``h`` in the
        input's pixels (None without a box: a face crop taken whole), ``track`` and ``main`` with
        ``--faces all``, and the frame's face score per emotion. Needs ``Options(frames=True)``
        (:func:`emocli.load` sets it)."""
        if self.frames is None:
            raise ParameterError("this result has no frames: score with frames=True (emo predict --frames)")
        rows = []
        for f in self.frames:
            box = f.get("box")
            row = {"time": f["time"], "x": None, "y": None, "w": None, "h": None}
            if box is not None:
                row.update(zip("xywh", box))
            if "track" in f:
                row.update(track=f["track"], main=f["main"])
            row.update(f["face_scores"] or {})
            rows.append(row)
        return rows

    def to_pandas(self):
        """:meth:`frames_table` as a pandas DataFrame (``pip install pandas``), one row per face frame."""
        try:
            import pandas as pd
        except ImportError:
            raise ParameterError("to_pandas needs pandas: pip install pandas (frames_table() gives the same "
                                 "rows as dicts)") from None
        return pd.DataFrame(self.frames_table())

    def to_json(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in _NOT_JSON}
        if not self.adaptation_asked:
            d.pop("speaker")
            d.pop("adaptation")
        if self.faces is None:
            d.pop("faces")
        d["seconds"] = round(self.seconds, 3)
        if self.error is None:
            d.pop("error")
            d.pop("error_type")
        return d


# Result fields that hold arrays or internal state: never written to JSON lines.
_NOT_JSON = frozenset({"frame_times", "frame_scores", "face_features", "voice_features", "voice_stats68", "segments",
                       "expert_frame_scores", "expert_features", "frames", "adaptation_asked", "voice_vector",
                       "fusion_inputs"})


def scores_dict(p: np.ndarray | None, labels=LABELS) -> dict[str, float] | None:
    """Scores (K,) as {label: score rounded to 6 decimals}; None stays None."""
    return None if p is None else {lab: round(float(v), 6) for lab, v in zip(labels, p)}


def zero_nan(p: np.ndarray | None) -> np.ndarray | None:
    return None if p is None else np.nan_to_num(p, nan=0.0)


def fail(res: Result, exc: EmoError) -> None:
    """Turn ``res`` into the error result of ``exc`` (no scores, no modalities)."""
    res.status, res.error, res.error_type = "error", str(exc), type(exc).__name__
    res.label = res.scores = res.face_scores = res.voice_scores = None
    res.modalities = []


def short_message(exc: Exception, path: Path) -> str:
    """The message without its leading file name (the result already names the file)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
