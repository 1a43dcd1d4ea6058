"""Inference pipeline: decode -> detect -> batch-score faces -> voice -> fuse.

``Pipeline`` holds the loaded models and frozen ``Options``; ``Pipeline.run(path)`` returns a
``Result`` for one input (a video, a still image or an audio file). Models are loaded once
and reused for every input of a bulk run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

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
    window: float | None = None  # seconds: also score consecutive segments of this length
    # Test-time views per face: "auto" = the bundle's views for still images and mirror-only
    # for video frames (a clip already averages many frames; half the network passes), or
    # "bundle", "mirror", "none" for every input.
    tta: str = "auto"


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
    gpu: bool = False  # whether the face network ran on a GPU
    # Not serialised to JSON lines: arrays for `extract`.
    frame_times: np.ndarray | None = field(default=None, repr=False)
    frame_scores: np.ndarray | None = field(default=None, repr=False)
    face_features: np.ndarray | None = field(default=None, repr=False)
    voice_features: np.ndarray | None = field(default=None, repr=False)
    voice_stats68: np.ndarray | None = field(default=None, repr=False)
    error_type: str | None = None
    segments: list[dict[str, Any]] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("frame_times", "frame_scores", "face_features", "voice_features", "voice_stats68", "segments"):
            d.pop(k)
        d["seconds"] = round(self.seconds, 3)
        if self.error is None:
            d.pop("error")
            d.pop("error_type")
        return d


def _as_dict(p: np.ndarray | None, labels=LABELS) -> dict[str, float] | None:
    return None if p is None else {lab: round(float(v), 6) for lab, v in zip(labels, p)}


@dataclass
class Prepared:
    """Stage 1's output for one input: everything but the neural network and the SVM.

    Made in worker processes in bulk mode (``--workers``) and sent to the main process.
    """

    path: Path
    display: str
    info: Any = None
    face_times: np.ndarray | None = None  # (n,) seconds of the frames that had a face
    face_inputs: np.ndarray | None = None  # (n, size, size, C) float32 network input
    voice_frames: np.ndarray | None = None  # (36, m) per-window features (34 short-term + pitch + voicing)
    frames_seen: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0


class Pipeline:
    """Loaded models + options.

    ``run(path)`` analyses one input, streaming its frames through the face network in
    batches (memory does not grow with the clip's length). Bulk mode splits the work:
    ``prepare(path)`` (decode, detect, crop, voice frames; no neural network, so it runs in
    worker processes) and ``complete(prepared)`` (batched scoring, SVM, fusion).
    """

    def __init__(self, bundle: Path | None = None, options: Options = Options(), *, role: str = "full"):
        import json

        from .bundle import DEFAULT_BUNDLE, verify_bundle
        from .fusion import FusionModel

        self.bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
        self.options = options
        self.role = role
        self.gpu = False
        self.manifest = verify_bundle(self.bundle)
        files = self.manifest.get("files", {})
        self.face_model = self.voice_model = None
        self.has_face = options.use_face and "face.keras" in files
        self.has_voice = options.use_voice and "voice.skops" in files
        if not self.has_face and not self.has_voice:
            raise ModelError(f"{self.bundle}: the bundle has no usable face or voice model "
                             "(or both were switched off); train one with `emo train-video`/`emo train-audio`")
        if self.has_voice:
            from .audio_model import VoiceModel

            self.voice_model = VoiceModel.load(self.bundle, runtime=True)
            from .audio_features import ENCODER_SETS

            if self.voice_model.settings_.get("feature_set") in ENCODER_SETS:
                raise ModelError(f"{self.bundle}: its voice model uses speech-encoder features "
                                 f"({self.voice_model.settings_['feature_set']}), which emo predict cannot score yet; "
                                 "use a bundle trained with --feature-set rich or thesis68")
            self.voice_settings = {"sample_rate": 16000, "window_s": 0.05, "step_s": 0.025,
                                   "feature_set": "thesis68", **self.voice_model.settings_}
        if self.has_face:
            from .video_model import Preprocessing

            self.face_pre = Preprocessing.from_dict(json.loads((self.bundle / "face.json").read_text())["preprocessing"])
            if role == "full":
                from .video_model import FaceModel

                # On a GPU, Keras scores the batches there; on a CPU the bundle's face.tflite
                # runs on LiteRT, and TensorFlow is never imported (seconds of start-up).
                self.gpu = gpu_available()
                self.face_model = FaceModel.load(self.bundle, runtime=not self.gpu)
        self.fusion = FusionModel.load(self.bundle) if "fusion.json" in files else FusionModel(method="equal").fit()
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
        res = Result(file=display_name or str(path), gpu=self.gpu)
        try:
            self._run(Path(path), res)
        except EmoError as exc:
            _fail(res, exc)
        res.seconds = time.perf_counter() - t0
        return res

    def prepare(self, path: Path | str, *, display_name: str | None = None) -> Prepared:
        """Stage 1 (worker-safe): decode, find faces, make network inputs, voice frames."""
        t0 = time.perf_counter()
        prep = Prepared(Path(path), display_name or str(path))
        try:
            prep.info = info = self._probe(prep.path)
            if self.has_face and info.has_video:
                times, inputs = [], []
                for t, x in self._face_chunks(info, prep):
                    times.append(t)
                    inputs.append(x)
                if inputs:
                    prep.face_times, prep.face_inputs = np.concatenate(times), np.concatenate(inputs)
            if self.has_voice and info.has_audio and not info.is_image:
                prep.voice_frames = self._voice_frames(info, prep.notes)
        except EmoError as exc:
            prep.error, prep.error_type = str(exc), type(exc).__name__
        prep.seconds = time.perf_counter() - t0
        return prep

    def complete(self, prep: Prepared) -> Result:
        """Stage 2 (main process): score the prepared faces in batches, classify the voice, fuse."""
        t0 = time.perf_counter()
        res = Result(file=prep.display, frames_seen=prep.frames_seen, notes=list(prep.notes), gpu=self.gpu)
        if prep.error is not None:
            res.status, res.error, res.error_type = "error", prep.error, prep.error_type
        else:
            try:
                res.duration = prep.info.duration
                acc = _FaceAccumulator(self, res, still=prep.info.is_image)
                if prep.face_inputs is not None:
                    for i in range(0, len(prep.face_inputs), self.options.batch_size):
                        acc.add(prep.face_times[i:i + self.options.batch_size],
                                prep.face_inputs[i:i + self.options.batch_size])
                self._finish(prep.path, prep.info, res, acc, prep.voice_frames)
            except EmoError as exc:
                _fail(res, exc)
        res.seconds = prep.seconds + time.perf_counter() - t0
        return res

    # ----------------------------------------------------------------------------------
    def _probe(self, path: Path):
        from .media import probe

        return probe(path)

    def _run(self, path: Path, res: Result) -> None:
        info = self._probe(path)
        res.duration = info.duration
        acc = _FaceAccumulator(self, res, still=info.is_image)
        if self.has_face and info.has_video:
            for t, x in self._face_chunks(info, res):
                acc.add(t, x)
        voice_frames = None
        if self.has_voice and info.has_audio and not info.is_image:
            voice_frames = self._voice_frames(info, res.notes)
        self._finish(path, info, res, acc, voice_frames)

    def _finish(self, path: Path, info, res: Result, acc: "_FaceAccumulator", voice_frames) -> None:
        """Turn per-frame face scores and voice frames into the clip's result (and segments)."""
        face = acc.clip_scores()
        voice = stats68 = None
        if voice_frames is not None:
            voice, stats68 = self._voice_scores(voice_frames, res)
        if info.has_video and not self.has_face:
            res.notes.append("face model not loaded")
        if not info.is_image:
            if not info.has_audio:
                res.notes.append("no audio track")
            elif not self.has_voice:
                res.notes.append("voice model not loaded")
        if face is None and voice is None:
            reasons = "; ".join(res.notes) or "nothing to analyse"
            raise NoFaceError(f"{path}: no face and no usable voice ({reasons}); "
                              "check that the file shows a face or has speech")
        labels = self.fusion.labels
        face_a = None if face is None else self._align(face, self.face_model.labels)
        voice_a = None if voice is None else self._align(voice, self.voice_model.labels)
        fused = self.fusion.fuse_clip(face_a, voice_a, face_features=acc.mean_features(), voice_stats68=stats68)
        res.face_scores, res.voice_scores = _as_dict(_zero_nan(face_a), labels), _as_dict(_zero_nan(voice_a), labels)
        res.scores = _as_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.modalities = [m for m, v in (("face", face_a), ("voice", voice_a)) if v is not None]
        if res.modalities == ["face"] and not info.is_image:
            res.notes.append("face only")
        elif res.modalities == ["voice"] and info.has_video:
            res.notes.append("voice only")
        if self.options.keep_frames:
            acc.keep(res)
            if voice_frames is not None:
                res.voice_stats68 = stats68
        if self.options.window:
            res.segments = self._segments(acc, voice_frames, info)

    def _align(self, scores: np.ndarray, labels) -> np.ndarray:
        """Scores in the fusion's label order; NaN for emotions the model was not trained on."""
        from .fusion import align, normalize_present

        return normalize_present(align(scores, labels, self.fusion.labels))

    # -- faces -------------------------------------------------------------------------
    def _face_chunks(self, info, rec) -> "Iterator[tuple[np.ndarray, np.ndarray]]":
        """(times, network inputs) for the main face of each decoded frame, chunk by chunk.

        ``rec`` (a Result or Prepared) receives ``frames_seen`` and notes.
        """
        from .datasets import read_image
        from .faces import FaceTracker, faces_in_frames
        from .media import iter_frames
        from .video_model import prepare_faces

        opt = self.options
        tracker = FaceTracker(min_face=opt.min_face)
        if info.is_image:
            rec.frames_seen = 1
            img = read_image(info.path)
            crops = faces_in_frames([img], detector=self.detector, tracker=tracker, margin=opt.margin)[1] \
                if opt.detect else [img]
            if not crops:
                raise NoFaceError(f"{info.path}: no face found in the image; if the image is already a cropped "
                                  "face, pass --no-detect")
            yield np.zeros(1), prepare_faces(crops[:1], self.face_pre)
            return
        found = 0
        try:
            for ts, frames in iter_frames(info.path, fps=opt.fps, info=info, max_side=opt.max_side,
                                          max_seconds=opt.max_seconds):
                rec.frames_seen += len(frames)
                if opt.detect:
                    idx, crops, _ = faces_in_frames(frames, detector=self.detector, tracker=tracker, margin=opt.margin)
                else:
                    idx, crops = list(range(len(frames))), list(frames)
                if crops:
                    found += len(crops)
                    yield np.asarray(ts)[idx], prepare_faces(crops, self.face_pre)
        except MediaError:
            if rec.frames_seen == 0:
                raise
            rec.notes.append("video stream ended early (damaged file): scored the frames decoded")
        if rec.frames_seen == 0:
            rec.notes.append("no video frames decoded")
        elif found == 0:
            rec.notes.append(f"no face found in {rec.frames_seen} frame(s)")

    # -- voice -------------------------------------------------------------------------
    def _voice_frames(self, info, notes: list[str]) -> np.ndarray | None:
        """Decode the audio; per-window features (34 short-term + pitch rows, m); None (with a note) if unusable."""
        from .audio_features import short_term_features, window_features
        from .media import load_audio

        st = self.voice_settings
        sr = int(st["sample_rate"])
        try:
            audio = load_audio(info.path, sr=sr, info=info, max_seconds=self.options.max_seconds)
            # thesis68 needs only the 34 short-term features: skip the pitch track it never uses
            features = short_term_features if st["feature_set"] == "thesis68" else window_features
            return features(audio, sr, window=float(st["window_s"]), step=float(st["step_s"]))
        except NoAudioError as exc:
            notes.append(f"voice unusable ({_short(exc, info.path)})")
        except MediaError as exc:
            notes.append(f"audio undecodable ({_short(exc, info.path)})")
        return None

    def _voice_scores(self, frames: np.ndarray, res: Result | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(voice model probabilities, the 68 thesis statistics) for short-term frames (34, m)."""
        from .audio_features import frame_statistics

        feats = frame_statistics(frames, feature_set=self.voice_settings["feature_set"])
        stats68 = frame_statistics(frames, feature_set="thesis68")  # feature-level fusion input
        if res is not None and self.options.keep_frames:
            res.voice_features = feats
        return self.voice_model.predict_proba(feats[None])[0], stats68

    # -- segments (--window) -----------------------------------------------------------
    def _segments(self, acc: "_FaceAccumulator", voice_frames, info) -> list[dict[str, Any]]:
        """Per-window scores: face frames and voice windows whose time falls in [start, end)."""
        from .fusion import normalize

        w = float(self.options.window)
        step = float(self.voice_settings["step_s"]) if self.has_voice else 0.025
        ends = [info.duration or 0.0]
        if acc.times:
            ends.append(float(np.concatenate(acc.times)[-1]) + 1e-6)
        if voice_frames is not None:
            ends.append(voice_frames.shape[1] * step)
        total = max(ends)
        times = np.concatenate(acc.times) if acc.times else np.zeros(0)
        scores = np.concatenate(acc.scores) if acc.scores else np.zeros((0, len(self.fusion.labels)))
        labels = self.fusion.labels
        out = []
        edges = [k * w for k in range(max(1, int(np.ceil(total / w))))] + [total]
        if len(edges) > 2 and edges[-1] - edges[-2] < min(1.0, w / 2):
            del edges[-2]  # a sliver at the end (audio a few ms longer than the video) joins the last segment
        for start, end in zip(edges[:-1], edges[1:]):
            if end >= total:
                end = total + 1e-6  # the last segment includes the final frame
            sel = (times >= start) & (times < end)
            face = self._align(scores[sel].mean(0), self.face_model.labels) if sel.any() else None
            voice = None
            if voice_frames is not None:
                a, b = int(start / step), int(end / step)
                if b - a >= 2:
                    voice = self._align(self._voice_scores(voice_frames[:, a:b])[0], self.voice_model.labels)
            if face is None and voice is None:
                continue
            fused = self.fusion.fuse(face, voice)
            out.append({"start": round(start, 3), "end": round(min(end, total), 3), "label": labels[int(np.argmax(fused))],
                        "scores": _as_dict(normalize(fused), labels), "face_scores": _as_dict(_zero_nan(face), labels),
                        "voice_scores": _as_dict(_zero_nan(voice), labels), "frames_used": int(sel.sum())})
        return out


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU; TensorFlow is imported only where an NVIDIA device exists."""
    import glob

    if os.environ.get("EMO_NO_GPU") or not glob.glob("/dev/nvidia[0-9]*"):
        return False
    from ._tf import import_keras

    import_keras()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class _FaceAccumulator:
    """Scores face inputs in batches and keeps running sums (and per-frame scores) for a clip."""

    def __init__(self, pipe: Pipeline, res: Result, *, still: bool = False):
        self.pipe, self.res = pipe, res
        tta = pipe.options.tta
        self.views = ("bundle" if still else "mirror") if tta == "auto" else tta
        self.pending_t: list[np.ndarray] = []
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        self.times: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.total = None
        self.feat_sum = None

    def add(self, times: np.ndarray, inputs: np.ndarray) -> None:
        self.pending_t.append(times)
        self.pending.append(inputs)
        self.n_pending += len(inputs)
        if self.n_pending >= self.pipe.options.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        x, t = np.concatenate(self.pending), np.concatenate(self.pending_t)
        self.pending, self.pending_t, self.n_pending = [], [], 0
        feats, scores = self.pipe.face_model.score_inputs(x, batch_size=self.pipe.options.batch_size, features=True,
                                                          views=self.views)
        self.total = scores.sum(0) if self.total is None else self.total + scores.sum(0)
        self.feat_sum = feats.sum(0) if self.feat_sum is None else self.feat_sum + feats.sum(0)
        self.times.append(t)
        self.scores.append(scores)  # 7 floats per frame: small, and needed for --window
        if self.pipe.options.keep_frames:
            self.features.append(feats)
        self.res.frames_used += len(x)

    def clip_scores(self) -> np.ndarray | None:
        self.flush()
        if not self.res.frames_used:
            return None
        return self.total / self.res.frames_used  # the thesis: average the frame scores over the clip

    def mean_features(self) -> np.ndarray | None:
        return None if self.feat_sum is None else self.feat_sum / self.res.frames_used

    def keep(self, res: Result) -> None:
        if self.scores:
            res.frame_times = np.concatenate(self.times)
            res.frame_scores = np.concatenate(self.scores)
            res.face_features = np.concatenate(self.features)


def _zero_nan(p: np.ndarray | None) -> np.ndarray | None:
    return None if p is None else np.nan_to_num(p, nan=0.0)


def _fail(res: Result, exc: EmoError) -> None:
    res.status, res.error, res.error_type = "error", str(exc), type(exc).__name__
    res.label = res.scores = res.face_scores = res.voice_scores = None
    res.modalities = []


def _short(exc: Exception, path: Path) -> str:
    """The message without its leading file name (the result already names the file)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
