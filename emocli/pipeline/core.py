"""Inference pipeline: decode -> detect -> batch-score faces -> voice -> fuse.

``Pipeline`` holds the loaded models and frozen ``Options``; ``Pipeline.run(path)`` returns a
``Result`` for one input (a video, a still image or an audio file). Models are loaded once
and reused for every input of a bulk run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from emocli.voice.features import STEP
from emocli.choices import DEFAULT_DETECTOR
from emocli.errors import EmoError, MediaError, ModelError, NoAudioError, NoFaceError, ParameterError
from emocli.face.experts import EXPERT_MIN_FACE
from emocli.labels import LABELS
from emocli.media.ffmpeg import SAMPLE_RATE, MediaInfo
from emocli.voice.activity import SAMPLE_RATE as VAD_RATE, VAD_FILE

VAD_NOTE = "no speech detected (voice activity:"  # how the note of a clip the VAD gated begins
NO_FACE_NOTE = "no face found"  # how the note of a video, stream or image without a face begins
# How a result's note begins when a modality was tried and left out (the voice gate, a face never
# found, audio that would not decode), as opposed to absent (an image has no voice): evaluate counts them.
REJECTED_NOTES = {"face": (NO_FACE_NOTE,), "voice": ("no speech detected", "voice unusable", "audio undecodable")}

DEFAULT_FPS = 5.0  # frames per second scored: expressions change over ~0.2 s, frames closer are near-duplicates
DEFAULT_BATCH = 64  # face crops per network call
_ENDED_EARLY = "video stream ended early (damaged file): scored the frames decoded"
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
    # model against the stream's running statistics. Needs a bundle trained with --speaker-norm.
    adapt: bool = False
    # Faces scored per frame: "main" (the main speaker's; other faces are only counted, in a note) or
    # "all" (every face large enough, linked into tracks and reported per track in Result.faces;
    # the clip's face score stays the main face's).
    faces: str = "main"

    def __post_init__(self) -> None:
        """Numbers out of range (inf, nan, a negative count) are refused here, not by ffmpeg later."""
        import math

        limits = {"fps": (0.0, 1000.0), "window": (0.0, 86400.0), "max_seconds": (0.0, 1e6),
                  "margin": (0.0, 1.0), "batch_size": (1, 1 << 20), "min_face": (1, 1 << 16),
                  "max_side": (16, 1 << 16)}
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if v is None or isinstance(v, bool):
                continue
            strict = name in ("window", "max_seconds")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if strict else v >= lo) and v <= hi):
                raise ParameterError(f"Options.{name} must be a finite number {'above' if strict else 'from'} {lo:g} "
                                     f"{'and at most' if strict else 'to'} {hi:g}, got {v!r}")


FACE_MODES = ("main", "all")


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


def _as_dict(p: np.ndarray | None, labels=LABELS) -> dict[str, float] | None:
    return None if p is None else {lab: round(float(v), 6) for lab, v in zip(labels, p)}


# A worker keeps up to this many bytes of one input's prepared faces in memory; later chunks wait in
# files under the run's spool folder, so --workers memory does not grow with a clip's length.
SPOOL_AFTER_BYTES = 32 * 2**20


class FaceChunks:
    """Stage 1's faces of one input, in chunks as they were decoded.

    Each chunk holds, for its n faces: ``times`` (n,) seconds of their frames; ``inputs`` (n, size,
    size, C) float32 network input; ``aligned`` (n, 112, 112, 3) uint8 aligned faces for the rafdb
    expert and ``mask`` (n,) bool, the faces it scores (or both None); ``boxes`` (n, 4) float32 face
    boxes in the input's pixels (NaN: no box); ``tracks`` (n,) int and ``main`` (n,) bool with
    ``--faces all`` (else None). Chunks stay in memory up to :data:`SPOOL_AFTER_BYTES`, then go to
    .npz files in ``spool`` (a folder the caller owns and removes); :meth:`drain` reads each back
    and deletes it.
    """

    FIELDS = ("times", "inputs", "aligned", "mask", "boxes", "tracks", "main")

    def __init__(self, spool: Path | None = None):
        self.spool, self.chunks, self.nbytes = spool, [], 0

    def add(self, *arrays: np.ndarray | None) -> None:
        chunk = dict(zip(self.FIELDS, arrays, strict=True))
        size = sum(a.nbytes for a in arrays if a is not None)
        if self.spool is None or self.nbytes + size <= SPOOL_AFTER_BYTES:
            self.chunks.append(chunk)
            self.nbytes += size
            return
        import os
        import tempfile

        fd, name = tempfile.mkstemp(suffix=".npz", dir=self.spool)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: v for k, v in chunk.items() if v is not None})
        self.chunks.append(Path(name))

    def drain(self) -> Iterator[dict[str, np.ndarray | None]]:
        """Each chunk in order; a chunk read back from the spool is deleted there."""
        while self.chunks:
            chunk = self.chunks.pop(0)
            if isinstance(chunk, Path):
                with np.load(chunk) as z:
                    arrays = {k: (z[k] if k in z.files else None) for k in self.FIELDS}
                chunk.unlink(missing_ok=True)
                chunk = arrays
            yield chunk

    def discard(self) -> None:
        """Drop the chunks not drained (their spool files too)."""
        for chunk in self.chunks:
            if isinstance(chunk, Path):
                chunk.unlink(missing_ok=True)
        self.chunks = []


@dataclass
class Prepared:
    """Stage 1's output for one input: everything but the neural network and the SVM.

    Made in worker processes in bulk mode (``--workers``) and sent to the main process.
    """

    path: Path
    display: str
    info: Any = None
    faces: FaceChunks | None = None  # the faces found, chunk by chunk
    voice_frames: "VoiceInput | None" = None  # window features (and speech-encoder embeddings)
    frames_seen: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0


@dataclass
class VoiceInput:
    """A clip's voice, ready to score: window features and, for speech-encoder models, embeddings."""

    frames: np.ndarray  # (34 or 36, m) per-window features (34 short-term [+ pitch + voicing])
    embedding: np.ndarray | None = None  # (768,) the whole clip's speech-encoder vector
    window_embeddings: list[np.ndarray | None] | None = None  # one per --window segment, in order
    speech: np.ndarray | None = None  # (ceil(n / 512),) speech probability per 32 ms chunk; None without a VAD

    def segment_has_speech(self, start: float, end: float, sr: int) -> bool:
        """Whether the voice-activity gate passes the audio in [start, end) s (True without a VAD)."""
        from emocli.voice.activity import CHUNK, has_speech

        if self.speech is None:
            return True
        return has_speech(self.speech[int(start * sr) // CHUNK:-(-int(round(end * sr)) // CHUNK)])

    def segment_embedding(self, start: float, window: float) -> np.ndarray | None:
        """The speech-encoder vector of the segment starting at ``start`` s (None if it has none)."""
        if self.window_embeddings is None:
            return None
        k = int(round(start / window))
        return self.window_embeddings[k] if k < len(self.window_embeddings) else None


class Pipeline:
    """Loaded models + options.

    ``run(path)`` analyses one input, streaming its frames through the face network in
    batches (memory does not grow with the clip's length). Bulk mode splits the work:
    ``prepare(path)`` (decode, detect, crop, voice frames; no neural network, so it runs in
    worker processes) and ``complete(prepared)`` (batched scoring, SVM, fusion).
    """

    def __init__(self, bundle: Path | None = None, options: Options = Options(), *, role: str = "full"):
        from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
        from emocli.fusion import FusionModel

        self.bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
        self.options = options
        self.role = role
        self.gpu = False
        self.manifest = verify_bundle(self.bundle)
        files = self.manifest.get("files", {})
        self.face_model = self.voice_model = None
        self.experts_used: tuple[str, ...] = ()
        self.expert_net = None
        self.has_face = options.use_face and "face.keras" in files
        self.has_voice = options.use_voice and ("voice.npz" in files or "voice.skops" in files)
        if not self.has_face and not self.has_voice:
            raise ModelError(f"{self.bundle}: the bundle has no usable face or voice model "
                             "(or both were switched off); train one with `emo train-video`/`emo train-audio`")
        if self.has_voice:
            from emocli.voice.model import VoiceModel

            self.voice_model = VoiceModel.load(self.bundle, runtime=True)
            self._speaker_model = None
            self.voice_settings = dict(self.voice_model.settings_)  # VoiceModel.load checked every setting
        self.vad = None  # the bundle's voice-activity model (voice_activity.py); without it, the level gate only
        if self.has_voice and VAD_FILE in files and int(self.voice_settings["sample_rate"]) == VAD_RATE:
            from emocli.voice.activity import SileroVAD

            self.vad = SileroVAD.load(self.bundle / VAD_FILE)
        if self.has_face:
            from emocli.face.model import Preprocessing, read_face_meta

            self.face_pre = Preprocessing.from_dict(read_face_meta(self.bundle)["preprocessing"])
            if role == "full":
                from emocli.quiet_imports import gpu_available
                from emocli.face.model import FaceModel

                # On a GPU, Keras scores the batches there; on a CPU the bundle's face.tflite
                # runs on LiteRT, and TensorFlow is never imported (seconds of start-up).
                self.gpu = gpu_available()
                self.face_model = FaceModel.load(self.bundle, runtime=not self.gpu)
            self._load_experts(files)
        self.fusion = FusionModel.load(self.bundle) if "fusion.json" in files else FusionModel(method="equal").fit()
        self._detector = None

    def _load_experts(self, files) -> None:
        """The face experts in use (``--face-experts``) and their calibration (experts.json)."""
        from emocli.bundle import read_json_document
        from emocli.face.experts import EMBEDDING_SIZE, EXPERTS_FILE, HEAD_FILE, RAFDB_FILE, ExpertSet, parse_experts

        self.experts = ExpertSet(names=("emo-cnn",))
        if EXPERTS_FILE in files and RAFDB_FILE in files:
            doc = read_json_document(self.bundle / EXPERTS_FILE, fmt="emo-experts", what="face-expert settings",
                                     missing="missing", invalid="not valid JSON ({exc}); restore the bundle")
            self.experts = ExpertSet.from_dict(doc, self.bundle / EXPERTS_FILE)
        try:
            self.experts_used = parse_experts(self.options.face_experts, self.experts.names, self.experts.default_)
        except ValueError as exc:
            raise ModelError(f"{self.bundle}: {exc}") from None
        self.expert_net = self._landmarker = None
        if "rafdb" in self.experts_used and self.role == "full":
            from emocli.face.experts import OnnxExpert

            self.expert_net = OnnxExpert(self.bundle / RAFDB_FILE)
            head = self.experts.head_
            if head is not None and head.n_inputs != EMBEDDING_SIZE + self.face_model.n_features:
                raise ModelError(f"{self.bundle / HEAD_FILE}: the face head takes {head.n_inputs} inputs but the "
                                 f"experts give {EMBEDDING_SIZE} + {self.face_model.n_features}; rerun "
                                 "`emo train-head DATA --model BUNDLE --write` for this bundle")

    @property
    def face_head(self):
        """The experts' learned head when both experts are in use and the bundle has one, else None."""
        if self.experts.head_ is None or not {"emo-cnn", "rafdb"} <= set(self.experts_used):
            return None
        return self.experts.head_

    @property
    def landmarker(self):
        if self._landmarker is None:
            from emocli.bundle import models_dir
            from emocli.face.experts import get_landmarker
            from emocli.face.detect import YUNET_FILE

            self._landmarker = get_landmarker(str(models_dir() / "detectors" / YUNET_FILE))
        return self._landmarker

    @property
    def detector(self):
        if self._detector is None:
            from emocli.face.detect import get_detector

            self._detector = get_detector(self.options.detector)
        return self._detector

    # ----------------------------------------------------------------------------------
    def run(self, path: Path | str, *, display_name: str | None = None, progress: Progress | None = None) -> Result:
        """Analyse one input; expected failures become ``status="error"`` results.

        ``progress(what, done, total)`` is called as each pass goes through the media: ``what`` is
        "faces" or "voice", ``done`` and ``total`` seconds (``total`` None when unknown).
        """
        t0 = time.perf_counter()
        res = Result(file=display_name or str(path), gpu=self.gpu)
        try:
            self._run(Path(path), res, progress)
        except EmoError as exc:
            _fail(res, exc)
        res.seconds = time.perf_counter() - t0
        return res

    def run_stream(self, source, *, on_segment=None, on_frame=None, stop=None) -> Result:
        """Analyse a live input (:class:`emocli.media.ffmpeg.LiveSource`: a pipe, FIFO, URL or capture device) in one pass.

        Frames and audio come from one ffmpeg read and are scored as they arrive; with
        ``--window`` each segment goes to ``on_segment(dict)`` as soon as its window has closed
        and been scored; with ``--frames`` each scored frame goes to ``on_frame(dict)`` just before
        its window's segment. ``stop`` (a ``threading.Event``): once set, the stream ends there and
        the result covers what arrived (a note says so). Expected failures become
        ``status="error"`` results, as in :meth:`run`.
        """
        t0 = time.perf_counter()
        res = Result(file=source.name, gpu=self.gpu)
        try:
            self._run_stream(source, res, on_segment, on_frame, stop)
        except EmoError as exc:
            _fail(res, exc)
        res.seconds = time.perf_counter() - t0
        return res

    def _run_stream(self, source, res: Result, on_segment, on_frame, stop) -> None:
        from emocli.face.detect import FaceLinker, FaceTracker
        from emocli.media.ffmpeg import LiveDecode, probe_live, spool_unseekable
        from emocli.face.model import prepare_faces

        opt = self.options
        whole = spool_unseekable(source)
        if whole is not None:  # an MP4 with its index at the end: only readable once it is all there
            try:
                self._run(whole, res)
            finally:
                whole.unlink()
            res.error = res.error.replace(str(whole), source.name) if res.error else None
            res.notes = [n.replace(str(whole), source.name) for n in res.notes]
            res.notes.append("an MP4/MOV with its index after its media data cannot be decoded as it arrives: "
                             "read to the end first (write it with -movflags +faststart to stream it)")
            return
        info, head, reader = probe_live(source)
        use_video, use_audio = self.has_face and info.has_video, self.has_voice and info.has_audio
        if info.has_video and not self.has_face:
            res.notes.append("face model not loaded")
        if not info.has_audio:
            res.notes.append("no audio track")
        elif not self.has_voice:
            res.notes.append("voice model not loaded")
        elif info.audio_streams > 1:
            res.notes.append(f"voice from audio stream {info.audio_stream + 1} of {info.audio_streams}")
        if not use_video and not use_audio:
            if reader is not None:
                reader.close()
            raise NoFaceError(f"{source.name}: nothing to score ({'; '.join(res.notes)}); check that the stream "
                              "carries video or audio the model bundle can score")
        sr = int(self.voice_settings["sample_rate"]) if self.has_voice else SAMPLE_RATE
        live = _LiveWindows(self, res, block=float(opt.window or STREAM_BLOCK), sr=sr, video=use_video,
                            audio=use_audio, on_segment=on_segment if opt.window else None,
                            on_frame=on_frame if opt.frames else None)
        tracker, linker = FaceTracker(min_face=opt.min_face), FaceLinker()
        dec = LiveDecode(source, info, head=head, reader=reader, fps=opt.fps, max_side=opt.max_side, sr=sr,
                         max_seconds=opt.max_seconds, video=use_video, audio=use_audio)
        with dec:
            for item in dec.items(stop):
                if item.kind == "video":
                    res.frames_seen += 1
                    frame = item.frame
                    _, crops, boxes, tracks, main = self._find_faces([frame], tracker, linker)
                    if crops:
                        aligned, mask = self._aligned([frame] * len(crops), boxes, crops)
                        live.acc.add(np.full(len(crops), item.time), prepare_faces(crops, self.face_pre), aligned,
                                     mask, boxes=box_array(boxes, info.width / frame.shape[1] if info.width else 1.0),
                                     tracks=tracks, main=main)
                    live.video_time = item.time + dec.step
                elif item.kind == "audio":
                    live.add_audio(item.audio)
                else:
                    live.ended(item.what)
                live.close_ready()
        dec.check(produced=res.frames_seen > 0 or dec.samples > 0)
        live.close_all()
        res.duration = round(live.covered, 3)
        if stop is not None and stop.is_set():
            res.notes.append(f"interrupted after {live.covered:.1f} s of the stream: the result covers what arrived")
        if dec.stalled or dec.watchdog_fired:
            res.notes.append(f"the stream stalled (nothing arrived for {dec.stall_timeout:.0f} s): scored what "
                             "arrived before")
        if use_video:
            self._face_notes(res, res.frames_used)  # one main face per frame at most
            self._other_faces_note(linker, res)
        face, voice, stats68 = live.totals()
        res.notes.extend(live.stream_notes())
        if live.adapter is not None:
            live.adapter.report(res, what="stream")
        self._fuse(source.name, res, live.acc, face, voice, stats68, has_video=info.has_video, still=False)

    def prepare(self, path: Path | str, *, display_name: str | None = None, spool: Path | None = None) -> Prepared:
        """Stage 1 (worker-safe): decode, find faces, make network inputs, voice frames.

        With ``spool`` (a folder the caller removes), faces beyond :data:`SPOOL_AFTER_BYTES` wait
        there in files instead of in memory (see :class:`FaceChunks`).
        """
        t0 = time.perf_counter()
        prep = Prepared(Path(path), display_name or str(path))
        try:
            prep.info, audio = self._probe(prep.path)
            prep.faces = FaceChunks(spool)
            prep.voice_frames = self._decode(prep.info, prep, prep.faces.add, audio=audio)
        except EmoError as exc:
            prep.error, prep.error_type = str(exc), type(exc).__name__
        prep.seconds = time.perf_counter() - t0
        return prep

    def complete(self, prep: Prepared) -> Result:
        """Stage 2 (main process): score the prepared faces in batches, classify the voice, fuse."""
        t0 = time.perf_counter()
        res = Result(file=prep.display, frames_seen=prep.frames_seen, notes=list(prep.notes), gpu=self.gpu)
        try:
            if prep.error is not None:
                res.status, res.error, res.error_type = "error", prep.error, prep.error_type
            else:
                res.duration = prep.info.duration
                acc = _FaceAccumulator(self, res, still=prep.info.is_image)
                b = self.options.batch_size
                for c in prep.faces.drain():
                    for i in range(0, len(c["inputs"]), b):
                        part = {k: None if v is None else v[i:i + b] for k, v in c.items()}
                        acc.add(part["times"], part["inputs"], part["aligned"], part["mask"],
                                boxes=part["boxes"], tracks=part["tracks"], main=part["main"])
                self._finish(prep.path, prep.info, res, acc, prep.voice_frames)
        except EmoError as exc:
            _fail(res, exc)
        finally:
            if prep.faces is not None:
                prep.faces.discard()
        res.seconds = prep.seconds + time.perf_counter() - t0
        return res

    # ----------------------------------------------------------------------------------
    def _probe(self, path: Path) -> tuple[MediaInfo, np.ndarray | None]:
        """The file's description, and an audio file's samples when the voice is scored (one ffmpeg
        run: :func:`emocli.media.ffmpeg.probe_and_load_audio`), else None (decoded later, as usual)."""
        from emocli.media.ffmpeg import probe, probe_and_load_audio

        if self.has_voice:
            both = probe_and_load_audio(path, sr=int(self.voice_settings["sample_rate"]),
                                        max_seconds=self.options.max_seconds)
            if both is not None:
                return both
        return probe(path), None

    def _run(self, path: Path, res: Result, progress: Progress | None = None) -> None:
        """:meth:`prepare` then :meth:`complete` in one process, each chunk of faces scored as it is
        decoded (memory does not grow with the clip's length)."""
        info, audio = self._probe(path)
        res.duration = info.duration
        acc = _FaceAccumulator(self, res, still=info.is_image)
        voice_frames = self._decode(info, res, lambda t, x, a, m, b, k, mf: acc.add(t, x, a, m, boxes=b, tracks=k,
                                                                                  main=mf), progress, audio=audio)
        self._finish(path, info, res, acc, voice_frames)

    def _decode(self, info, rec, on_faces: Callable[..., None], progress: Progress | None = None, *,
                audio: np.ndarray | None = None) -> "VoiceInput | None":
        """Stage 1 of one input, shared by :meth:`run` and :meth:`prepare`: each chunk of faces
        (see :meth:`_face_chunks`) goes to ``on_faces(times, inputs, aligned, mask, boxes, tracks,
        main)`` as it is decoded; returns the voice frames (None without a voice to score).
        ``rec`` (a Result or Prepared) receives ``frames_seen`` and notes; ``audio``: the samples
        :meth:`_probe` already decoded, if it did."""
        if self.has_face and info.has_video:
            for chunk in self._face_chunks(info, rec, progress):
                on_faces(*chunk)
        if not (self.has_voice and info.has_audio and not info.is_image):
            return None
        total = media_seconds(info, self.options.max_seconds)
        if progress is not None:
            progress("voice", 0.0, total)
        voice_frames = self._voice_frames(info, rec.notes, audio=audio)
        if progress is not None:
            progress("voice", total or 0.0, total)
        return voice_frames

    def _finish(self, path: Path, info, res: Result, acc: "_FaceAccumulator", voice_frames) -> None:
        """Turn per-frame face scores and voice frames into the clip's result (and segments)."""
        face = acc.clip_scores()
        voice = stats68 = None
        if voice_frames is not None:
            voice, stats68 = self._voice_scores(voice_frames.frames, res, embedding=voice_frames.embedding)
        if info.has_video and not self.has_face:
            res.notes.append("face model not loaded")
        if not info.is_image:
            if not info.has_audio:
                res.notes.append("no audio track")
            elif not self.has_voice:
                res.notes.append("voice model not loaded")
        self._fuse(path, res, acc, face, voice, stats68, has_video=info.has_video, still=info.is_image)
        if self.options.keep_frames:
            acc.keep(res)
            if voice_frames is not None:
                res.voice_stats68 = stats68
        if self.options.frames:
            res.frames = acc.take_frames()
        if self.options.adapt and not self.options.window:
            res.adaptation_asked = True
            res.notes.append("--adapt adapts --window segments and live streams; this file's voice is scored as a "
                             "whole with the plain model (bulk runs: --speaker-of)")
        if self.options.window:
            adapter = self.stream_adapter()
            times = np.concatenate(acc.times) if acc.times else np.zeros(0)
            scores = np.concatenate(acc.scores) if acc.scores else np.zeros((0, len(self.fusion.labels)))
            res.segments, notes = self._segments(times, scores, voice_frames, info.duration, adapter=adapter)
            res.notes.extend(notes)
            if adapter is not None:
                adapter.report(res, what="segments")

    def _fuse(self, path, res: Result, acc: "_FaceAccumulator", face, voice, stats68, *, has_video: bool,
              still: bool) -> None:
        """The input's face and voice scores (model label order) fused into ``res``."""
        if face is None and voice is None:
            reasons = "; ".join(res.notes) or "nothing to analyse"
            raise NoFaceError(f"{path}: no face and no usable voice ({reasons}); "
                              "check that the file shows a face or has speech")
        labels = self.fusion.labels
        face_a = None if face is None else self._align(face, self.face_model.labels)
        voice_a = None if voice is None else self._align(voice, self.voice_model.labels)
        face_features = acc.mean_features()
        fused = self.fusion.fuse_clip(face_a, voice_a, face_features=face_features, voice_stats68=stats68)
        if voice_a is not None:
            res.fusion_inputs = {"face": face_a, "face_features": face_features, "voice_stats68": stats68}
        res.face_scores, res.voice_scores = _as_dict(_zero_nan(face_a), labels), _as_dict(_zero_nan(voice_a), labels)
        res.faces = acc.face_tracks()
        experts = acc.expert_scores()
        skipped = res.frames_used - acc.expert_counts.get("rafdb", 0)
        if "rafdb" in self.experts_used and res.frames_used and skipped:
            why = f"under {EXPERT_MIN_FACE} px" if self.face_head is not None else f"grey, or under {EXPERT_MIN_FACE} px"
            res.notes.append(f"rafdb face expert skipped {skipped} of {res.frames_used} face(s) ({why}): emo-cnn "
                             "scored them alone")
        if experts:
            res.face_experts = {name: _as_dict(_zero_nan(self._align(p, self.face_model.labels)), labels)
                                for name, p in experts.items()}
        res.scores = _as_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.modalities = [m for m, v in (("face", face_a), ("voice", voice_a)) if v is not None]
        if res.modalities == ["face"] and not still:
            res.notes.append("face only")
        elif res.modalities == ["voice"] and has_video:
            res.notes.append("voice only")

    def _align(self, scores: np.ndarray, labels) -> np.ndarray:
        """Scores in the fusion's label order; NaN for emotions the model was not trained on."""
        from emocli.fusion import align, normalize_present

        return normalize_present(align(scores, labels, self.fusion.labels))

    # -- faces -------------------------------------------------------------------------
    def _face_chunks(self, info, rec, progress: Progress | None = None,
                     ) -> "Iterator[tuple[np.ndarray, np.ndarray, Any, Any, np.ndarray, Any, Any]]":
        """(times, network inputs, aligned faces, mask, boxes, tracks, main) for the faces of each decoded frame
        (see :meth:`_find_faces`), by chunk.

        Boxes are float32 (n, 4) x0, y0, x1, y1 in the input's own pixels (NaN where there is none).
        With ``--faces all``, tracks are int (n,) track ids and main bool (n,) marks each frame's
        main face; else both are None.

        Aligned faces (uint8 (n, 112, 112, 3)) and the mask of those the rafdb expert scores are
        made only when it is in use (else both are None); see :meth:`_aligned`. ``rec`` (a
        Result or Prepared) receives ``frames_seen`` and notes; ``progress`` (see :meth:`run`) the
        seconds of video decoded.
        """
        from emocli.face.detect import FaceLinker, FaceTracker
        from emocli.media.ffmpeg import check_frame_size, ended_early, iter_frames, read_image
        from emocli.face.model import prepare_faces

        opt = self.options
        tracker, linker = FaceTracker(min_face=opt.min_face), FaceLinker()
        if info.is_image:
            rec.frames_seen = 1
            check_frame_size(info)
            problems: list[str] = []
            img = read_image(info.path, problems=problems)
            if problems:
                rec.notes.append(f"image damaged ({problems[0]}): scored what decoded")
            _, crops, boxes, tracks, main = self._find_faces([img], tracker, linker)
            if not crops and opt.detect is None and min(img.shape[:2]) <= CROP_MAX_SIDE:
                crops, boxes, tracks, main = self._whole([img])
                rec.notes.append(f"no face found in the {img.shape[1]}x{img.shape[0]} image ({opt.detector}): "
                                 "scored it whole as a face crop")
            elif crops and opt.detect is not False:
                rec.notes.append(f"face found by {opt.detector}")
            if not crops:
                damaged = f" (the image is damaged: {problems[0]})" if problems else ""
                raise NoFaceError(f"{info.path}: no face found in the image{damaged}; if the image is already a "
                                  f"cropped face, pass --no-detect (images up to {CROP_MAX_SIDE} px are taken whole "
                                  "without --detect)")
            self._other_faces_note(linker, rec)
            yield (np.zeros(len(crops)), prepare_faces(crops, self.face_pre),
                   *self._aligned([img] * len(crops), boxes, crops), box_array(boxes, 1.0), tracks, main)
            return
        n_frames_found = 0
        step = 1.0 / (opt.fps or info.fps or 25.0)
        total = media_seconds(info, opt.max_seconds)
        try:
            for ts, frames in iter_frames(info.path, fps=opt.fps, info=info, max_side=opt.max_side,
                                          max_seconds=opt.max_seconds):
                rec.frames_seen += len(frames)
                if progress is not None:
                    progress("faces", min(float(ts[-1]) + step, total or float("inf")), total)
                idx, crops, boxes, tracks, main = self._find_faces(frames, tracker, linker)
                if crops:
                    n_frames_found += len(set(idx))
                    aligned, mask = self._aligned([frames[i] for i in idx], boxes, crops)
                    yield (np.asarray(ts)[idx], prepare_faces(crops, self.face_pre), aligned, mask,
                           box_array(boxes, info.width / frames.shape[2] if info.width else 1.0), tracks, main)
        except MediaError:
            if rec.frames_seen == 0:
                raise
            rec.notes.append(_ENDED_EARLY)
        if rec.frames_seen and _ENDED_EARLY not in rec.notes and ended_early(
                info, rec.frames_seen * step, step=step, max_seconds=opt.max_seconds):
            rec.notes.append(_ENDED_EARLY)
        self._face_notes(rec, n_frames_found)
        self._other_faces_note(linker, rec)

    def _find_faces(self, frames, tracker, linker) -> tuple[list[int], list[np.ndarray], list, Any, Any]:
        """(frame indices, crops, detections, tracks, main) of the faces to score in a chunk of frames.

        ``--faces main``: the main face of each frame (the ``linker`` counts the others); tracks and
        main are None. ``--faces all``: every face large enough, with int track ids and bool main
        flags (n,). With ``--no-detect`` each frame is a face crop (``--faces all``: track 0).
        """
        opt = self.options
        if opt.detect is False:
            crops, boxes, tracks, main = self._whole(frames)
            return list(range(len(frames))), crops, boxes, tracks, main
        if opt.faces == "all":
            from emocli.face.detect import every_face_in_frames

            idx, crops, boxes, tracks, main = every_face_in_frames(frames, detector=self.detector, tracker=tracker,
                                                                   linker=linker, margin=opt.margin)
            return idx, crops, boxes, np.array(tracks, np.int64), np.array(main, bool)
        from emocli.face.detect import faces_in_frames

        return (*faces_in_frames(frames, detector=self.detector, tracker=tracker, margin=opt.margin, linker=linker),
                None, None)

    def _whole(self, frames) -> tuple[list[np.ndarray], list, Any, Any]:
        """Each frame taken whole as a face crop: (crops, boxes, tracks, main) as :meth:`_find_faces` gives them."""
        n = len(frames)
        if self.options.faces != "all":
            return list(frames), [None] * n, None, None
        return list(frames), [None] * n, np.zeros(n, np.int64), np.ones(n, bool)

    def _face_notes(self, rec, with_face: int) -> None:
        """After a video's (or stream's) frames: none decoded, or how many held a face and which detector
        found them (nothing with ``--no-detect``)."""
        det = self.options.detector
        if rec.frames_seen == 0:
            rec.notes.append("no video frames decoded")
        elif self.options.detect is False:
            return
        elif with_face == 0:
            rec.notes.append(f"{NO_FACE_NOTE} in {rec.frames_seen} frame(s) ({det})")
        else:
            rec.notes.append(f"faces found by {det} in {with_face} of {rec.frames_seen} frame(s)")

    def _other_faces_note(self, linker, rec) -> None:
        """``--faces main``: say how many other faces were seen (tracks that never held the main face)."""
        if linker.others and self.options.faces == "main":
            rec.notes.append(f"{linker.others} other face(s) seen and ignored; --faces all scores them")

    def _aligned(self, frames, boxes, crops) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Faces aligned by five landmarks for the rafdb expert, and the mask of those it scores.

        The expert learned from colour faces of 100 px and more: crops under ``EXPERT_MIN_FACE``
        pixels (FER2013-style crops) and, unless the bundle's face head is in use, grey faces
        (black-and-white film) are left to emo-cnn (mask False, image left black). YuNet looks for the landmarks around each
        chosen box (the whole image when there is no box: an already-cropped face); where it
        finds none, the crop is warped by the landmarks of an average crop (CROP_LANDMARKS).
        Returns (None, None) when the expert is not in use.
        """
        if "rafdb" not in self.experts_used:
            return None, None
        from emocli.face.experts import CROP_LANDMARKS, EXPERT_SIZE, expert_applies, align_face

        out = np.zeros((len(crops), EXPERT_SIZE, EXPERT_SIZE, 3), np.uint8)
        mask = np.zeros(len(crops), bool)
        colour = self.face_head is None  # the head scores grey faces of the size too
        for k, (frame, box, crop) in enumerate(zip(frames, boxes, crops)):
            if not expert_applies(crop, colour=colour):
                continue
            mask[k] = True
            if box is not None and box.landmarks is not None:  # the detector found them (YuNet)
                lm = np.asarray(box.landmarks, np.float32)
            else:
                lm = self.landmarker(frame, None if box is None else (box.x0, box.y0, box.x1, box.y1))
            if lm is not None:
                out[k] = align_face(frame, lm)
            else:
                h, w = crop.shape[:2]
                out[k] = align_face(crop, CROP_LANDMARKS * np.float32([w, h]))
        return out, mask

    def score_face_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face scores (n, face labels) of images that already are face crops.

        Scored as ``predict --no-detect`` scores a still image: every face expert in use, the
        bundle's head, the still-image test-time views; in batches, for corpora of crops.
        """
        from emocli.face.model import prepare_faces

        if not crops:
            return np.zeros((0, len(self.face_model.labels)), np.float32)
        acc = _FaceAccumulator(self, Result(file=""), still=True)
        aligned, mask = self._aligned(crops, [None] * len(crops), crops)
        acc.add(np.zeros(len(crops)), prepare_faces(crops, self.face_pre), aligned, mask)
        acc.flush()
        return np.concatenate(acc.scores)

    # -- voice -------------------------------------------------------------------------
    def _voice_frames(self, info, notes: list[str], *, audio: np.ndarray | None = None) -> "VoiceInput | None":
        """Decode the audio (unless ``audio`` holds it already): window features (and, for speech-encoder
        models, embeddings); None (with a note) if unusable.

        Speech-encoder embeddings are computed here, while the audio is in memory: one for the
        clip and, with ``--window``, one per window, so the audio is never kept.
        """
        from emocli.media.ffmpeg import load_audio

        sr = int(self.voice_settings["sample_rate"])
        try:
            if audio is None:
                audio = load_audio(info.path, sr=sr, info=info, max_seconds=self.options.max_seconds)
            if info.audio_streams > 1:
                notes.append(f"voice from audio stream {info.audio_stream + 1} of {info.audio_streams}")
            return self._voice_input(audio, notes, windows=True)
        except NoAudioError as exc:
            notes.append(f"voice unusable ({_short(exc, info.path)})")
        except MediaError as exc:
            notes.append(f"audio undecodable ({_short(exc, info.path)})")
        return None

    def _voice_input(self, audio: np.ndarray, notes: list[str], *, windows: bool,
                     speech: np.ndarray | None = None) -> "VoiceInput | None":
        """Window features (and embeddings) of decoded audio; None, with a note, when it is silent
        or, with the bundle's voice-activity model, holds too little speech (music, noise).

        ``windows``: also one speech-encoder vector per ``--window`` segment. ``speech``: the
        audio's speech probabilities when the caller ran the VAD (a stream carries its state).

        Raises
        ------
        NoAudioError
            If the audio is shorter than one analysis window.
        """
        from emocli.voice.features import (ENCODER_SETS, NEEDS_PITCH, SILENCE_DBFS, loudest_window_dbfs,
                                     short_term_features, window_features, window_levels_dbfs)

        st = self.voice_settings
        sr = int(st["sample_rate"])
        audio = _finite_audio(audio, notes)
        if audio is None:
            return None
        if self.vad is not None:  # the gate: a level floor relative to the clip, and the VAD at one level
            from emocli.voice.activity import at_level, gate_reason

            levels = window_levels_dbfs(audio, sr)
            if speech is None:
                speech, _ = self.vad.probabilities(at_level(audio, levels, sr=sr))
            why = gate_reason(speech, levels)
            if why is not None:
                notes.append(f"{VAD_NOTE} {why}): voice not used")
                return None
        elif len(audio) >= int(float(st["window_s"]) * sr) and loudest_window_dbfs(audio, sr) < SILENCE_DBFS:
            notes.append(f"no speech detected (the audio never rises above {SILENCE_DBFS:.0f} dBFS): "
                         "voice not used")
            return None
        # sets without pitch statistics need only the 34 short-term features: skip the pitch track
        features = window_features if st["feature_set"] in NEEDS_PITCH else short_term_features
        frames = features(audio, sr, window=float(st["window_s"]), step=float(st["step_s"]))
        vin = VoiceInput(frames, speech=speech)
        if st["feature_set"] in ENCODER_SETS:
            from emocli.voice.encoder import embed, shipped_encoder

            enc = shipped_encoder()
            vin.embedding = embed(audio, sr, enc)
            if windows and self.options.window:
                n = int(float(self.options.window) * sr)
                vin.window_embeddings = [embed(audio[k:k + n], sr, enc) if len(audio[k:k + n]) >= sr // 10
                                         else None for k in range(0, len(audio), n)]
        return vin

    def _voice_scores(self, frames: np.ndarray, res: Result | None = None, *, embedding: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(voice model probabilities, the 68 thesis statistics) for window frames (34+, m).

        ``embedding``: the speech-encoder vector of the same audio, for encoder feature sets.
        """
        feats, stats68 = self._voice_vector(frames, embedding)
        if res is not None:
            res.voice_vector = feats
            if self.options.keep_frames:
                res.voice_features = feats
        return self.voice_model.predict_proba(feats[None])[0], stats68

    def _voice_vector(self, frames: np.ndarray, embedding: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(the voice model's feature vector, the 68 thesis statistics) of window frames (34+, m)."""
        from emocli.voice.features import clip_vector, frame_statistics

        feats = clip_vector(self.voice_settings["feature_set"], frames=frames, embedding=embedding)
        return feats, frame_statistics(frames, feature_set="thesis68")  # the 68: feature-level fusion input

    def _window_voice(self, frames: np.ndarray, embedding: np.ndarray | None, adapter: "_StreamAdapter | None",
                      seconds: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """A window's (voice probabilities, 68 statistics, adapted): with an ``adapter``, the window joins
        the stream's running statistics and, once they are warm, is scored against them."""
        feats, stats68 = self._voice_vector(frames, embedding)
        if adapter is not None:
            probs = adapter.score(feats, seconds)
            if probs is not None:
                return probs, stats68, True
        return self.voice_model.predict_proba(feats[None])[0], stats68, False

    def stream_adapter(self) -> "_StreamAdapter | None":
        """Running speaker statistics for one stream or clip's windows, when ``options.adapt`` asks for them."""
        return _StreamAdapter(self) if self.options.adapt and self.has_voice else None

    # -- speaker adaptation (speaker.py) ------------------------------------------------
    @property
    def speaker_model(self):
        """The bundle's speaker-normalised voice model (``train-audio --speaker-norm``), or None."""
        if self._speaker_model is None and self.has_voice and self.has_speaker_model:
            from emocli.voice.model import VoiceModel
            from emocli.voice.speaker import MODEL_NAME

            self._speaker_model = VoiceModel.load(self.bundle, runtime=True, name=MODEL_NAME)
            if (self._speaker_model.settings_ != self.voice_model.settings_
                    or self._speaker_model.labels != self.voice_model.labels):
                raise ModelError(f"{self.bundle}: {MODEL_NAME}.json was trained on other voice features or labels than "
                                 "voice.json; retrain the bundle with `emo train-audio --speaker-norm`")
        return self._speaker_model

    @property
    def has_speaker_model(self) -> bool:
        from emocli.voice.speaker import MODEL_NAME

        return self.has_voice and f"{MODEL_NAME}.npz" in self.manifest.get("files", {})

    def adapt(self, res: Result, stats, *, speaker: str | None = None) -> bool:
        """Rescore ``res``'s voice with the speaker-normalised model and fuse again.

        ``stats``: the speaker's :class:`emocli.voice.speaker.SpeakerStats` (or None: the result keeps
        its plain scores, and ``res.adaptation`` stays None). Returns whether it was adapted.
        """
        res.adaptation_asked = True
        res.speaker = speaker
        if stats is None or res.voice_vector is None or res.fusion_inputs is None or self.speaker_model is None:
            return False
        sm = self.speaker_model
        voice_a = self._align(sm.predict_proba(stats.normalise(res.voice_vector)[None])[0], sm.labels)
        fi = res.fusion_inputs
        fused = self.fusion.fuse_clip(fi["face"], voice_a, face_features=fi["face_features"],
                                      voice_stats68=fi["voice_stats68"])
        labels = self.fusion.labels
        res.voice_scores = _as_dict(_zero_nan(voice_a), labels)
        res.scores = _as_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.adaptation = "speaker"
        return True

    # -- segments (--window) -----------------------------------------------------------
    def _segments(self, times: np.ndarray, scores: np.ndarray, voice_frames: "VoiceInput | None",
                  duration: float | None, *, adapter: "_StreamAdapter | None" = None
                  ) -> tuple[list[dict[str, Any]], list[str]]:
        """Per-window scores of a whole clip: (segments, notes); nothing else is read or changed but
        the ``adapter``'s running statistics.

        ``times`` (n,) seconds and ``scores`` (n, K) of the clip's scored face frames (face model
        order); ``voice_frames`` its voice windows. Face frames and voice windows whose time falls
        in [start, end) make a segment (see :func:`segment_bounds`); a segment past the end of one
        modality (audio shorter than the video, or no face in it) uses the other alone, and the
        notes say so.
        """
        from emocli.fusion import normalize

        w = float(self.options.window)
        step = float(self.voice_settings["step_s"]) if self.has_voice else STEP
        sr = int(self.voice_settings["sample_rate"]) if self.has_voice else SAMPLE_RATE
        limit = self.options.max_seconds if self.options.max_seconds is not None else float("inf")
        ends = [min(duration or 0.0, limit)]
        if times.size:
            ends.append(float(times[-1]) + 1e-6)
        if voice_frames is not None:
            ends.append(voice_frames.frames.shape[1] * step)
        total = max(ends)
        labels = self.fusion.labels
        out = []
        one_sided: set[str] = set()
        for start, end in segment_bounds(total, w):
            sel = (times >= start) & (times < end)
            face = (self._align(pool_frames(scores[sel], method=self.options.pooling, labels=self.face_model.labels),
                                self.face_model.labels) if sel.any() else None)
            voice, adapted, seg_notes = None, False, []
            if voice_frames is not None:
                part = voice_frames.frames[:, int(start / step):int(end / step)]  # short or empty past the audio's end
                emb = voice_frames.segment_embedding(start, w)
                if part.shape[1] >= 2 and not voice_frames.segment_has_speech(start, end, sr):
                    seg_notes.append("no speech (voice activity): " + ("face alone" if face is not None
                                                                       else "nothing scored"))
                elif part.shape[1] >= 2 and (emb is not None or voice_frames.embedding is None):
                    probs, _, adapted = self._window_voice(part, emb, adapter, part.shape[1] * step)
                    voice = self._align(probs, self.voice_model.labels)
                elif face is not None:
                    one_sided.add("segments past the end of the audio use the face alone")
            if voice is not None and face is None and times.size:
                one_sided.add("segments without a face use the voice alone")
            if face is None and voice is None and not seg_notes:
                continue
            fused = None if face is None and voice is None else self.fusion.fuse(face, voice)
            out.append({"start": round(start, 3), "end": round(min(end, total), 3),
                        "label": None if fused is None else labels[int(np.argmax(fused))],
                        "scores": None if fused is None else _as_dict(normalize(fused), labels),
                        "face_scores": _as_dict(_zero_nan(face), labels),
                        "voice_scores": _as_dict(_zero_nan(voice), labels), "frames_used": int(sel.sum())})
            if adapter is not None:
                out[-1]["adapted"] = adapted
            if seg_notes:
                out[-1]["notes"] = seg_notes
        return out, sorted(one_sided)


def segment_bounds(total: float, window: float) -> list[tuple[float, float]]:
    """[start, end) of each ``window``-second segment of a clip ``total`` seconds long.

    A sliver at the end (audio a few ms longer than the video: under min(1 s, window / 2)) joins
    the last segment, and the last end is a hair past ``total`` so that it includes the final frame.
    """
    edges = [k * window for k in range(max(1, int(np.ceil(total / window))))] + [total]
    if len(edges) > 2 and edges[-1] - edges[-2] < min(1.0, window / 2):
        del edges[-2]
    return [(start, total + 1e-6 if end >= total else end) for start, end in zip(edges[:-1], edges[1:])]


def media_seconds(info, max_seconds: float | None = None) -> float | None:
    """Seconds of an input that are analysed: its duration, at most ``max_seconds`` (None when unknown)."""
    if info.duration is None:
        return max_seconds
    return info.duration if max_seconds is None else min(info.duration, max_seconds)


POOLINGS = ("mean", "expressive")
NEUTRAL_FLOOR = 0.05  # the least weight a frame gets under "expressive" pooling


def pool_frames(scores: np.ndarray, *, method: str = "mean", labels=LABELS) -> np.ndarray:
    """A clip's face score from its frames' scores (n, K), rows summing to 1.

    ``mean``: the thesis's average. ``expressive``: a weighted average whose weight per frame
    is its probability of *not* being neutral (at least ``NEUTRAL_FLOOR``), so that the many
    neutral frames of a person talking do not outvote the few that show the emotion, while a
    clip that is neutral throughout (all weights equally small) stays neutral.
    """
    scores = np.asarray(scores, np.float64)
    if method == "mean" or "neutral" not in labels:
        return scores.mean(0)
    w = pool_weights(scores, method=method, labels=labels)
    return (w[:, None] * scores).sum(0) / w.sum()


def pool_weights(scores: np.ndarray, *, method: str = "mean", labels=LABELS) -> np.ndarray:
    """Each frame's weight in :func:`pool_frames`: float64 (n,) (a stream pools by running sums of these)."""
    scores = np.asarray(scores, np.float64)
    if method not in POOLINGS:
        raise ParameterError(f"pooling must be one of {', '.join(POOLINGS)}, got {method!r}")
    if method == "mean" or "neutral" not in labels:
        return np.ones(len(scores))
    return np.maximum(1.0 - scores[:, list(labels).index("neutral")], NEUTRAL_FLOOR)


class _StreamAdapter:
    """Speaker adaptation of one stream's (or clip's) windows, in order: their voice vectors feed
    :class:`emocli.voice.speaker.RunningStats`; once it is warm, each window is scored with the bundle's
    speaker-normalised model against it (the window itself included, as a corpus speaker's clips are)."""

    def __init__(self, pipe: Pipeline):
        from emocli.voice import speaker

        self.model = pipe.speaker_model if pipe.has_speaker_model else None
        self.stats = speaker.RunningStats(warmup=speaker.WARMUP_SECONDS)
        self.windows = self.adapted = 0

    def score(self, feats: np.ndarray, seconds: float) -> np.ndarray | None:
        """Probabilities of the adapted model (voice model's label order), or None before the warm-up."""
        self.windows += 1
        if self.model is None:
            return None
        self.stats.update(feats, seconds)
        if not self.stats.ready:
            return None
        self.adapted += 1
        return self.model.predict_proba(self.stats.stats().normalise(feats)[None])[0]

    def report(self, res: Result, *, what: str) -> None:
        WARMUP_SECONDS = self.stats.warmup  # noqa: N806

        res.adaptation_asked = True
        if self.model is None:
            res.notes.append("--adapt: the bundle has no speaker-normalised voice model (emo train-audio "
                             "--speaker-norm): plain voice model")
        elif self.adapted:
            res.notes.append(f"--adapt: {self.adapted} of {self.windows} voiced window(s) scored against the "
                             f"{what}'s own running voice baseline (after {WARMUP_SECONDS:g} s of voice)")
            if what == "stream":  # the whole stream's voice is the mean of its windows', adapted ones included
                res.adaptation = "speaker"
        else:
            res.notes.append(f"--adapt: under {WARMUP_SECONDS:g} s of voiced windows, none was adapted")


class _LiveWindows:
    """A live stream's windows: each closes when both modalities have passed its end (or ended),
    is scored, and is then forgotten; only running sums are kept for the whole-stream result.

    Face frames wait in the accumulator and audio samples in a buffer until their window closes,
    so memory holds at most a window (plus :data:`LIVE_MAX_LAG`) of either.
    """

    def __init__(self, pipe: Pipeline, res: Result, *, block: float, sr: int, video: bool, audio: bool,
                 on_segment=None, on_frame=None):
        self.pipe, self.res, self.block, self.sr, self.on_segment = pipe, res, block, sr, on_segment
        self.on_frame = on_frame
        self.acc = _FaceAccumulator(pipe, res)
        self.video, self.audio = video, audio
        self.video_time = 0.0  # stream time the decoded frames cover
        self.video_done, self.audio_done = not video, not audio
        self.k = 0  # index of the next window to close
        self.chunks: list[np.ndarray] = []  # audio samples [buf_start, samples)
        self.buf_start = self.samples = 0
        self.face_sum, self.face_weight = 0.0, 0.0  # weighted sum of frame scores, in the face model's order
        self.voice_sum, self.voice_weight, self.stats_sum = None, 0.0, None
        self.voice_blocks = self.silent_blocks = self.segments = 0
        self.adapter = pipe.stream_adapter() if audio else None
        self.vad_state = None  # the voice-activity model's state, carried from window to window
        self.adapted = False  # whether the window being closed was scored adapted

    @property
    def covered(self) -> float:
        return max(self.video_time if self.video else 0.0, self.samples / self.sr if self.audio else 0.0)

    def add_audio(self, x: np.ndarray) -> None:
        start = self.samples
        self.samples += len(x)
        if self.samples <= self.buf_start:  # its window was closed without it (the audio lagged)
            return
        self.chunks.append(x[max(0, self.buf_start - start):])

    def ended(self, what: str) -> None:
        if what == "video":
            self.video_done = True
        else:
            self.audio_done = True

    def close_ready(self) -> None:
        """Score every window both modalities have passed (or one has passed by LIVE_MAX_LAG)."""
        while not (self.video_done and self.audio_done):
            end = (self.k + 1) * self.block
            v = self.video_done or self.video_time >= end - 1e-6
            a = self.audio_done or self.samples >= round(end * self.sr)
            lag = end + LIVE_MAX_LAG
            if not (v and a) and not (self.video and self.video_time >= lag) and not (
                    self.audio and self.samples >= round(lag * self.sr)):
                return
            self._close(self.k * self.block, end)
            self.k += 1

    def close_all(self) -> None:
        """At the end of the stream: the windows left, the last one as long as the stream went."""
        total = self.covered
        while self.k * self.block < total - 1e-6 or (self.k == 0 and total > 0):
            end = min((self.k + 1) * self.block, total)
            self._close(self.k * self.block, end, last=end >= total - 1e-6)
            self.k += 1
            if end >= total - 1e-6:
                break

    def _close(self, start: float, end: float, *, last: bool = False) -> None:
        from emocli.fusion import normalize

        pipe = self.pipe
        face = voice = None
        notes = []
        n_face = 0
        self.adapted = False
        if self.video:
            self.acc.flush()
            if self.on_frame is not None:
                for f in self.acc.take_frames(float("inf") if last else end):
                    self.on_frame(f)
            times = np.concatenate(self.acc.times) if self.acc.times else np.zeros(0)
            scores = (np.concatenate(self.acc.scores) if self.acc.scores
                      else np.zeros((0, len(pipe.face_model.labels))))
            sel = (times >= start) & ((times < end) | last)
            n_face = int(sel.sum())
            if n_face:
                w = pool_weights(scores[sel], method=pipe.options.pooling, labels=pipe.face_model.labels)
                self.face_sum = self.face_sum + (w[:, None] * scores[sel]).sum(0)
                self.face_weight += float(w.sum())
                face = pipe._align(pool_frames(scores[sel], method=pipe.options.pooling,
                                               labels=pipe.face_model.labels), pipe.face_model.labels)
            keep = ~sel & (times >= end)  # frames of later windows (the video ran ahead)
            self.acc.times = [times[keep]] if keep.any() else []
            self.acc.scores = [scores[keep]] if keep.any() else []
            if not n_face:
                notes.append("no face")
        if self.audio:
            s0, s1 = round(start * self.sr), round(end * self.sr)
            buf = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
            seg = buf[max(0, s0 - self.buf_start):max(0, s1 - self.buf_start)] if not last else \
                buf[max(0, s0 - self.buf_start):]
            rest = buf[max(0, s1 - self.buf_start):] if not last else buf[:0]
            self.chunks, self.buf_start = ([rest] if len(rest) else []), s1
            probs = self._voice(seg, notes)
            if probs is not None:
                voice = pipe._align(probs, pipe.voice_model.labels)
        self.segments += 1
        gated = "no speech (voice activity)" in notes  # a window of music or noise: said, not dropped
        if self.on_segment is None or (last and face is None and voice is None and not gated):
            return  # a sliver at the end that nothing scored (the longer stream's last packet) is no segment
        labels = pipe.fusion.labels
        seg_out: dict[str, Any] = {"start": round(start, 3), "end": round(end, 3), "label": None, "scores": None,
                                   "face_scores": _as_dict(_zero_nan(face), labels),
                                   "voice_scores": _as_dict(_zero_nan(voice), labels), "frames_used": n_face}
        if self.adapter is not None:
            seg_out["adapted"] = bool(voice is not None and self.adapted)
        if face is not None or voice is not None:
            fused = pipe.fusion.fuse(face, voice)
            seg_out["label"] = labels[int(np.argmax(fused))]
            seg_out["scores"] = _as_dict(normalize(fused), labels)
        if notes:
            used = "face" if face is not None else "voice" if voice is not None else None
            seg_out["notes"] = [", ".join(notes) + (f": {used} alone" if used and (self.video and self.audio)
                                                   else "" if used else ": nothing scored")]
        self.on_segment(seg_out)

    def _voice(self, seg: np.ndarray, notes: list[str]) -> np.ndarray | None:
        """The window's voice probabilities (model order), added to the running sums; None with a note."""
        pipe = self.pipe
        own: list[str] = []
        audible = len(seg) >= self.sr // 10  # a tenth of a second at least, else "no audio"
        speech = None
        if pipe.vad is not None and audible:
            from emocli.voice.activity import at_level

            speech, self.vad_state = pipe.vad.probabilities(at_level(seg, sr=self.sr), state=self.vad_state)
        try:
            vin = pipe._voice_input(seg, own, windows=False, speech=speech) if audible else None
        except NoAudioError:
            vin = None
        if vin is None:
            self.silent_blocks += 1
            vad = any(n.startswith(VAD_NOTE) for n in own)
            notes.append(("no speech (voice activity)" if vad else "no speech") if audible else "no audio")
            return None
        weight = len(seg) / self.sr
        probs, stats68, self.adapted = pipe._window_voice(vin.frames, vin.embedding, self.adapter, weight)
        self.voice_sum = probs * weight if self.voice_sum is None else self.voice_sum + probs * weight
        self.stats_sum = stats68 * weight if self.stats_sum is None else self.stats_sum + stats68 * weight
        self.voice_weight += weight
        self.voice_blocks += 1
        return probs

    def totals(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """The whole stream's (face, voice, 68 voice statistics), in the models' label orders."""
        face = self.face_sum / self.face_weight if self.face_weight else None
        if self.voice_weight:
            return face, self.voice_sum / self.voice_weight, self.stats_sum / self.voice_weight
        return face, None, None

    def stream_notes(self) -> list[str]:
        notes = []
        if self.audio and self.voice_blocks == 0:
            notes.append("no speech detected in the stream: voice not used")
        elif self.audio and self.voice_blocks > 1:
            notes.append(f"voice: the mean of {self.voice_blocks} {self.block:g}-s blocks' voice scores "
                         "(a stream is scored as it arrives)")
        return notes


class _FaceAccumulator:
    """Scores face inputs in batches and keeps per-frame scores (and running sums) for a clip.

    Each frame's face score combines the experts in use (calibrated, see experts.ExpertSet);
    each expert's own frame scores are summed for the result's ``face_experts``. With
    ``--faces all`` the faces other than each frame's main one go to a second accumulator
    (``others``) and every scored face to the tracks' running sums (``pool``): the clip's own
    scores stay the main face's.
    """

    def __init__(self, pipe: Pipeline, res: Result, *, still: bool = False, pool: "_TrackPool | None" = None):
        self.pipe, self.res, self.still = pipe, res, still
        tta = pipe.options.tta
        self.views = ("bundle" if still else "spread") if tta == "auto" else tta
        self.n_scored = 0  # faces scored so far: where the next face is in the cycle of "spread" views
        self.main = pool is None  # False for the ``others`` of a main accumulator
        self.pool = pool if pool is not None else _TrackPool(pipe) if pipe.options.faces == "all" else None
        self.others: _FaceAccumulator | None = None
        self.pending_k: list[np.ndarray] = []
        self.pending_t: list[np.ndarray] = []
        self.pending: list[np.ndarray] = []
        self.pending_a: list[np.ndarray] = []
        self.pending_m: list[np.ndarray] = []
        self.expert_counts: dict[str, int] = {}
        self.n_pending = 0
        self.times: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.expert_sums: dict[str, np.ndarray] = {}
        self.expert_frames: dict[str, list[np.ndarray]] = {}  # kept for `extract` only
        self.expert_features: list[np.ndarray] = []
        self.feat_sum = None
        self.pending_b: list[np.ndarray] = []
        # --frames: (times, boxes, scores, track ids)
        self.frame_log: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, times: np.ndarray, inputs: np.ndarray, aligned: np.ndarray | None = None,
            mask: np.ndarray | None = None, *, boxes: np.ndarray | None = None, tracks: np.ndarray | None = None,
            main: np.ndarray | None = None) -> None:
        """Queue face inputs; ``aligned`` / ``mask``: the rafdb expert's faces and which it scores;
        ``boxes``: (n, 4) face boxes, kept for ``--frames``; ``tracks`` / ``main`` (``--faces all``):
        their track ids and which are their frame's main face (the others go to ``others``)."""
        if main is not None and not main.all():
            if self.others is None:
                self.others = _FaceAccumulator(self.pipe, Result(file=self.res.file), still=self.still, pool=self.pool)
            rest = ~main
            self.others.add(times[rest], inputs[rest], None if aligned is None else aligned[rest],
                            None if mask is None else mask[rest], boxes=None if boxes is None else boxes[rest],
                            tracks=tracks[rest])
            times, inputs, tracks = times[main], inputs[main], tracks[main]
            aligned, mask = (None, None) if aligned is None else (aligned[main], mask[main])
            boxes = None if boxes is None else boxes[main]
            if not len(times):
                return
        self.pending_t.append(times)
        self.pending.append(inputs)
        self.pending_b.append(np.full((len(times), 4), np.nan, np.float32) if boxes is None else boxes)
        self.pending_k.append(np.full(len(times), -1, np.int64) if tracks is None else tracks)
        if aligned is not None:
            self.pending_a.append(aligned[mask])
            self.pending_m.append(mask)
        self.n_pending += len(inputs)
        if self.n_pending >= self.pipe.options.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        from emocli.face.experts import EMBEDDING_SIZE, softmax
        from emocli.fusion import align

        pipe = self.pipe
        x, t = np.concatenate(self.pending), np.concatenate(self.pending_t)
        aligned = np.concatenate(self.pending_a) if self.pending_a else None
        mask = np.concatenate(self.pending_m) if self.pending_m else np.zeros(len(x), bool)
        boxes, tracks = np.concatenate(self.pending_b), np.concatenate(self.pending_k)
        self.pending, self.pending_t, self.pending_a, self.pending_m, self.n_pending = [], [], [], [], 0
        self.pending_b, self.pending_k = [], []
        head = pipe.face_head
        feats, cnn = self._score_cnn(x, mask if head is not None and pipe.expert_net is not None else None)
        # each expert's calibrated scores; rafdb's for the frames it scores, NaN elsewhere
        cnn_cal = pipe.experts.calibrate("emo-cnn", cnn)
        cal = {"emo-cnn": cnn_cal} if "emo-cnn" in pipe.experts_used else {}
        emb = None
        if pipe.expert_net is not None and mask.any():
            if pipe.options.keep_frames or head is not None:
                emb, logits = pipe.expert_net.logits(aligned, embeddings=True)
            else:
                logits = pipe.expert_net.logits(aligned)
            if pipe.options.keep_frames:
                full = np.zeros((len(x), emb.shape[1]), np.float32)
                full[mask] = emb
                self.expert_features.append(full)
            raf = align(softmax(logits), pipe.expert_net.labels, pipe.face_model.labels)
            cal["rafdb"] = np.full((len(x), raf.shape[1]), np.nan, np.float32)
            cal["rafdb"][mask] = pipe.experts.calibrate("rafdb", raf)
        elif pipe.expert_net is not None and pipe.options.keep_frames:
            self.expert_features.append(np.zeros((len(x), EMBEDDING_SIZE), np.float32))
        # frames no expert in use scored (rafdb alone asked for, grey or small faces): emo-cnn decides them
        scores = pipe.experts.mix(cal, fallback=cnn_cal)
        if head is not None and emb is not None:
            # frames both experts scored: the learned head on their features replaces the average;
            # it learned from emo-cnn features over mirror views (how video frames are scored)
            f = feats[mask] if self.views in ("mirror", "spread") else pipe.face_model.score_inputs(
                x[mask], batch_size=pipe.options.batch_size, features=True, views="mirror")[0]
            scores[mask] = head.predict_proba(np.hstack([emb, f]))
        for name, p in cal.items():
            ok = ~np.isnan(p[:, 0])
            self.expert_sums[name] = self.expert_sums.get(name, 0.0) + p[ok].sum(0)
            self.expert_counts[name] = self.expert_counts.get(name, 0) + int(ok.sum())
            if pipe.options.keep_frames:
                self.expert_frames.setdefault(name, []).append(p)
        self.feat_sum = feats.sum(0) if self.feat_sum is None else self.feat_sum + feats.sum(0)
        if self.pool is not None:
            self.pool.add(tracks, t, boxes, scores, main=self.main)
        if self.main:  # the other faces live on in their tracks' running sums (memory stays flat on a stream)
            self.times.append(t)
            self.scores.append(scores)  # 7 floats per frame: small, and needed for pooling and --window
        if pipe.options.frames:
            self.frame_log.append((t, boxes, scores, tracks))
        if pipe.options.keep_frames:
            self.features.append(feats)
        self.res.frames_used += len(x)

    def _score_cnn(self, x: np.ndarray, head_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """emo-cnn's (features, scores) of network inputs, over this accumulator's views.

        With ``"spread"`` views, the faces the face head will score (``head_rows``) get the crop and
        its mirror, the views the head learned from; the others take the bundle's views in turn.
        """
        fm, bs = self.pipe.face_model, self.pipe.options.batch_size
        if self.views != "spread" or head_rows is None or not head_rows.any():
            out = fm.score_inputs(x, batch_size=bs, features=True, views=self.views, view_offset=self.n_scored)
            self.n_scored += len(x)
            return out
        feats = np.empty((len(x), fm.n_features), np.float32)
        cnn = np.empty((len(x), len(fm.labels)), np.float32)
        feats[head_rows], cnn[head_rows] = fm.score_inputs(x[head_rows], batch_size=bs, features=True,
                                                           views="mirror")
        rest = ~head_rows
        if rest.any():
            feats[rest], cnn[rest] = fm.score_inputs(x[rest], batch_size=bs, features=True, views="spread",
                                                     view_offset=self.n_scored)
            self.n_scored += int(rest.sum())
        return feats, cnn

    def take_frames(self, before: float = float("inf")) -> list[dict[str, Any]]:
        """The ``--frames`` records of the scored frames earlier than ``before`` s, removed from the log.

        With ``--faces all`` a record per face, each with its ``track`` and whether it is the frame's
        ``main`` face, ordered by time and track.
        """
        self.flush()
        pipe = self.pipe
        out, left = [], []
        for t, boxes, scores, tracks in self.frame_log:
            now = t < before
            for ti, b, p, k in zip(t[now], boxes[now], scores[now], tracks[now]):
                out.append({"time": round(float(ti), 3),
                            "box": None if np.isnan(b[0]) else [round(float(v), 1) for v in b],
                            "face_scores": _as_dict(_zero_nan(pipe._align(p, pipe.face_model.labels)),
                                                    pipe.fusion.labels)})
                if k >= 0:
                    out[-1].update(track=int(k), main=self.main)
            if (~now).any():
                left.append((t[~now], boxes[~now], scores[~now], tracks[~now]))
        self.frame_log = left
        if self.others is not None:
            out += self.others.take_frames(before)
        return sorted(out, key=lambda f: (f["time"], f.get("track", 0)))

    def face_tracks(self) -> list[dict[str, Any]] | None:
        """``--faces all``: the result's ``faces`` (see :meth:`_TrackPool.report`); None otherwise."""
        if self.pool is None:
            return None
        self.flush()
        if self.others is not None:
            self.others.flush()
        return self.pool.report()

    def clip_scores(self) -> np.ndarray | None:
        self.flush()
        if not self.res.frames_used:
            return None
        return pool_frames(np.concatenate(self.scores), method=self.pipe.options.pooling,
                           labels=self.pipe.face_model.labels)

    def expert_scores(self) -> dict[str, np.ndarray]:
        """Each expert's clip score (the mean of its calibrated frame scores), when more than one ran."""
        if len(self.pipe.experts_used) < 2:
            return {}
        return {name: total / self.expert_counts[name] for name, total in self.expert_sums.items()
                if self.expert_counts.get(name)}

    def mean_features(self) -> np.ndarray | None:
        return None if self.feat_sum is None else self.feat_sum / self.res.frames_used

    def keep(self, res: Result) -> None:
        if self.scores:
            res.frame_times = np.concatenate(self.times)
            res.frame_scores = np.concatenate(self.scores)
            res.face_features = np.concatenate(self.features)
            res.expert_frame_scores = {k: np.concatenate(v) for k, v in self.expert_frames.items()}
            if self.expert_features:
                res.expert_features = np.concatenate(self.expert_features)


class _TrackPool:
    """``--faces all``: per face track, the running sums its face score is pooled from (as a clip's
    frames are, see :func:`pool_frames`), its boxes, its first and last time, and how many of its
    frames were their frame's main face."""

    def __init__(self, pipe: Pipeline):
        self.pipe = pipe
        self.tracks: dict[int, dict[str, Any]] = {}

    def add(self, tracks: np.ndarray, times: np.ndarray, boxes: np.ndarray, scores: np.ndarray, *,
            main: bool) -> None:
        """Scored faces: int (n,) track ids, (n,) seconds, float32 (n, 4) boxes, (n, K) face scores."""
        opt, labels = self.pipe.options, self.pipe.face_model.labels
        w = pool_weights(scores, method=opt.pooling, labels=labels)
        for k in np.unique(tracks):
            sel = tracks == k
            tr = self.tracks.setdefault(int(k), {"sum": 0.0, "weight": 0.0, "boxes": [], "first": float("inf"),
                                                 "last": float("-inf"), "n": 0, "main": 0})
            tr["sum"] = tr["sum"] + (w[sel, None] * scores[sel]).sum(0)
            tr["weight"] += float(w[sel].sum())
            tr["boxes"].append(boxes[sel])
            tr["first"] = min(tr["first"], float(times[sel].min()))
            tr["last"] = max(tr["last"], float(times[sel].max()))
            tr["n"] += int(sel.sum())
            tr["main"] += int(sel.sum()) if main else 0

    def report(self) -> list[dict[str, Any]]:
        """One entry per track, in the order they started: ``track``, ``main`` (the main face in most of its
        frames), ``box`` (median [x, y, w, h] in the input's pixels; None for whole-frame crops), ``label``,
        ``scores`` (pooled face scores), ``frames_used``, ``first`` and ``last`` (seconds)."""
        pipe = self.pipe
        labels = pipe.fusion.labels
        out = []
        for k in sorted(self.tracks):
            tr = self.tracks[k]
            p = _zero_nan(pipe._align(tr["sum"] / tr["weight"], pipe.face_model.labels))
            x0, y0, x1, y1 = np.median(np.concatenate(tr["boxes"]), axis=0)
            out.append({"track": k, "main": tr["main"] * 2 > tr["n"],
                        "box": None if np.isnan(x0) else [round(float(v), 1) for v in (x0, y0, x1 - x0, y1 - y0)],
                        "label": labels[int(np.argmax(p))], "scores": _as_dict(p, labels), "frames_used": tr["n"],
                        "first": round(tr["first"], 3), "last": round(tr["last"], 3)})
        return out


def _finite_audio(audio: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """Audio with its NaN and infinite samples (a damaged float WAV) filled in from their finite
    neighbours, with a note; None (and a note) when fewer than half the samples are finite."""
    audio = np.asarray(audio)
    bad = ~np.isfinite(audio)
    n = int(bad.sum())
    if n == 0:
        return audio
    if n > len(audio) // 2:
        notes.append(f"voice unusable ({n} of {len(audio)} audio samples are NaN or infinite: a damaged file)")
        return None
    idx = np.arange(len(audio))
    fixed = audio.astype(np.float32, copy=True)
    fixed[bad] = np.interp(idx[bad], idx[~bad], fixed[~bad])
    notes.append(f"{n} of {len(audio)} audio samples were NaN or infinite (a damaged file): filled in from their "
                 "neighbours")
    return fixed


def box_array(boxes, scale: float) -> np.ndarray:
    """float32 (n, 4) x0, y0, x1, y1 of detections (NaN for None), times ``scale`` (analysed -> input pixels)."""
    return np.array([[np.nan] * 4 if b is None else [b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale]
                     for b in boxes], np.float32).reshape(-1, 4)


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
