"""Inference pipeline: decode -> detect -> batch-score faces -> voice -> fuse.

``Pipeline`` holds the loaded models and frozen ``Options``; ``Pipeline.run(path)`` returns a
``Result`` for one input (a video, a still image or an audio file). Models are loaded once
and reused for every input of a bulk run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmoError, MediaError, ModelError, NoAudioError, NoFaceError
from .labels import LABELS

DEFAULT_FPS = 5.0  # frames per second scored: expressions change over ~0.2 s, frames closer are near-duplicates
DEFAULT_BATCH = 64  # face crops per network call


@dataclass(frozen=True)
class Options:
    """Inference settings (all have defaults; the CLI exposes each one)."""

    fps: float | None = DEFAULT_FPS  # None: every frame
    batch_size: int = DEFAULT_BATCH
    detector: str = "blazeface"  # or "haar" (the thesis's detector)
    detect: bool = True  # False: inputs are already face crops (FER2013-style images)
    min_face: int = 24  # pixels
    margin: float = 0.1  # crop margin per side, as a share of the face box
    max_side: int = 1280  # frames are downscaled to this longer side before detection
    max_seconds: float | None = None  # analyse at most this much of each input
    use_face: bool = True
    use_voice: bool = True
    keep_frames: bool = False  # keep per-frame scores and face features in the result (extract)


@dataclass
class Result:
    """What emo found in one input. ``scores`` are fused; absent modalities are ``None``."""

    file: str
    status: str = "ok"
    label: str | None = None
    scores: dict[str, float] | None = None
    face_scores: dict[str, float] | None = None
    voice_scores: dict[str, float] | None = None
    modalities: list[str] = field(default_factory=list)
    frames_used: int = 0
    frames_seen: int = 0
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    # Not serialised to JSON lines: arrays for `extract`.
    frame_times: np.ndarray | None = field(default=None, repr=False)
    frame_scores: np.ndarray | None = field(default=None, repr=False)
    face_features: np.ndarray | None = field(default=None, repr=False)
    voice_features: np.ndarray | None = field(default=None, repr=False)
    voice_stats68: np.ndarray | None = field(default=None, repr=False)
    error_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("frame_times", "frame_scores", "face_features", "voice_features", "voice_stats68"):
            d.pop(k)
        d["seconds"] = round(self.seconds, 3)
        if self.error is None:
            d.pop("error")
            d.pop("error_type")
        return d


def _as_dict(p: np.ndarray | None, labels=LABELS) -> dict[str, float] | None:
    return None if p is None else {lab: round(float(v), 6) for lab, v in zip(labels, p)}


class Pipeline:
    """Loaded models + options; ``run`` one input at a time."""

    def __init__(self, bundle: Path | None = None, options: Options = Options()):
        from ._tf import import_keras
        from .bundle import DEFAULT_BUNDLE, verify_bundle
        from .fusion import FusionModel

        import_keras()

        self.bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
        self.options = options
        self.manifest = verify_bundle(self.bundle)
        files = self.manifest.get("files", {})
        self.face_model = self.voice_model = None
        if options.use_face and "face.keras" in files:
            from .video_model import FaceModel

            self.face_model = FaceModel.load(self.bundle)
        if options.use_voice and "voice.skops" in files:
            from .audio_model import VoiceModel

            self.voice_model = VoiceModel.load(self.bundle)
        if self.face_model is None and self.voice_model is None:
            raise ModelError(f"{self.bundle}: the bundle has no usable face or voice model "
                             "(or both were switched off); train one with `emo train-video`/`emo train-audio`")
        if "fusion.json" in files:
            self.fusion = FusionModel.load(self.bundle)
        else:
            self.fusion = FusionModel(method="equal").fit()
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            from .faces import get_detector

            self._detector = get_detector(self.options.detector)
        return self._detector

    # ----------------------------------------------------------------------------------
    def run(self, path: Path | str, *, display_name: str | None = None) -> Result:
        """Analyse one input; expected failures become ``status="error"`` results."""
        t0 = time.perf_counter()
        res = Result(file=display_name or str(path))
        try:
            self._run(Path(path), res)
        except EmoError as exc:
            res.status, res.error, res.error_type = "error", str(exc), type(exc).__name__
            res.label = res.scores = None
        res.seconds = time.perf_counter() - t0
        return res

    def _run(self, path: Path, res: Result) -> None:
        from .media import probe

        info = probe(path)
        res.duration = info.duration
        self._face_mean = self._stats68 = None  # clip-level inputs of feature-level fusion
        face = voice = None
        if self.face_model is not None and info.has_video:
            if info.is_image:
                face = self._score_image(path, res)
            else:
                face = self._score_video(info, res)
        elif info.has_video and self.face_model is None:
            res.notes.append("face model not loaded")
        if self.voice_model is not None and info.has_audio and not info.is_image:
            voice = self._score_voice(info, res)
        elif not info.has_audio and not info.is_image:
            res.notes.append("no audio track")
        elif info.has_audio and self.voice_model is None:
            res.notes.append("voice model not loaded")
        if face is None and voice is None:
            reasons = "; ".join(res.notes) or "nothing to analyse"
            raise NoFaceError(f"{path}: no face and no usable voice ({reasons}); "
                              "check that the file shows a face or has speech")
        labels = self.fusion.labels
        face_a = None if face is None else self._align(face, self.face_model.labels)
        voice_a = None if voice is None else self._align(voice, self.voice_model.labels)
        fused = self.fusion.fuse_clip(face_a, voice_a, face_features=self._face_mean, voice_stats68=self._stats68)
        res.face_scores, res.voice_scores = _as_dict(face_a, labels), _as_dict(voice_a, labels)
        res.scores = _as_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.modalities = [m for m, s in (("face", face_a), ("voice", voice_a)) if s is not None]
        if res.modalities == ["face"] and not info.is_image:
            res.notes.append("face only")
        elif res.modalities == ["voice"] and info.has_video:
            res.notes.append("voice only")

    def _align(self, scores: np.ndarray, labels) -> np.ndarray:
        from .fusion import align, normalize

        return normalize(align(scores, labels, self.fusion.labels))

    # -- faces -------------------------------------------------------------------------
    def _score_image(self, path: Path, res: Result) -> np.ndarray | None:
        from .datasets import read_image

        img = read_image(path)
        res.frames_seen = 1
        crops = self._faces([img])[1] if self.options.detect else [img]
        if not crops:
            raise NoFaceError(f"{path}: no face found in the image; if the image is already a cropped face, "
                              "pass --no-detect")
        feats, scores = self.face_model.features(crops[:1], batch_size=1)
        res.frames_used = 1
        self._face_mean = feats[0]
        if self.options.keep_frames:
            res.frame_times, res.frame_scores, res.face_features = np.zeros(1), scores, feats
        return scores[0]

    def _faces(self, frames) -> tuple[list[int], list[np.ndarray]]:
        from .faces import FaceTracker, faces_in_frames

        if not hasattr(self, "_tracker") or self._tracker is None:
            self._tracker = FaceTracker(min_face=self.options.min_face)
        idx, crops, _ = faces_in_frames(frames, detector=self.detector, tracker=self._tracker,
                                        margin=self.options.margin)
        return idx, crops

    def _score_video(self, info, res: Result) -> np.ndarray | None:
        from .faces import FaceTracker
        from .media import iter_frames

        opt = self.options
        self._tracker = FaceTracker(min_face=opt.min_face)
        pending_t: list[float] = []
        pending: list[np.ndarray] = []
        times, score_chunks, feat_chunks = [], [], []
        total = np.zeros(len(self.face_model.labels))
        feat_sum = 0.0

        def flush():
            nonlocal total, feat_sum
            if not pending:
                return
            feats, scores = self.face_model.features(pending, batch_size=opt.batch_size)
            total += scores.sum(0)
            feat_sum = feat_sum + feats.sum(0)
            if opt.keep_frames:
                times.extend(pending_t)
                score_chunks.append(scores)
                feat_chunks.append(feats)
            res.frames_used += len(pending)
            pending.clear()
            pending_t.clear()

        try:
            for ts, frames in iter_frames(info.path, fps=opt.fps, info=info, max_side=opt.max_side,
                                          max_seconds=opt.max_seconds):
                res.frames_seen += len(frames)
                if opt.detect:
                    idx, crops = self._faces(frames)
                else:
                    idx, crops = list(range(len(frames))), list(frames)
                pending.extend(crops)
                pending_t.extend(float(ts[i]) for i in idx)
                if len(pending) >= opt.batch_size:
                    flush()
        except MediaError:
            if res.frames_seen == 0:
                raise
            res.notes.append("video stream ended early (damaged file): scored the frames decoded")
        flush()
        if res.frames_seen == 0:
            res.notes.append("no video frames decoded")
            return None
        if res.frames_used == 0:
            res.notes.append(f"no face found in {res.frames_seen} frame(s)")
            return None
        if opt.keep_frames:
            res.frame_times = np.asarray(times)
            res.frame_scores = np.concatenate(score_chunks)
            res.face_features = np.concatenate(feat_chunks)
        self._face_mean = feat_sum / res.frames_used
        return total / res.frames_used  # the thesis: average the frame scores over the clip

    # -- voice -------------------------------------------------------------------------
    def _score_voice(self, info, res: Result) -> np.ndarray | None:
        from .media import load_audio

        from .audio_features import frame_statistics, short_term_features

        vm = self.voice_model
        st = {"sample_rate": 16000, "window_s": 0.05, "step_s": 0.025, "feature_set": "thesis68",
              **(vm.feature_settings or {})}
        sr = int(st["sample_rate"])
        try:
            audio = load_audio(info.path, sr=sr, info=info, max_seconds=self.options.max_seconds)
            frames = short_term_features(audio, sr, window=float(st["window_s"]), step=float(st["step_s"]))
        except NoAudioError as exc:
            res.notes.append(f"voice unusable ({_short(exc, info.path)})")
            return None
        except MediaError as exc:
            res.notes.append(f"audio undecodable ({_short(exc, info.path)})")
            return None
        feats = frame_statistics(frames, feature_set=st["feature_set"])
        self._stats68 = frame_statistics(frames, feature_set="thesis68")  # feature-level fusion input
        if self.options.keep_frames:
            res.voice_features = feats
            res.voice_stats68 = self._stats68
        return vm.predict_proba(feats[None])[0]


def _short(exc: Exception, path: Path) -> str:
    """The message without its leading file name (the result already names the file)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
