"""Inference pipeline: decode -> detect -> batch-score faces -> voice -> fuse.

``Pipeline`` holds the loaded models and frozen ``Options``; ``Pipeline.run(path)`` returns a
``Result`` for one input (a video, a still image or an audio file). Models are loaded once
and reused for every input of a bulk run.
"""


from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
from emocli.errors import EmoError, ModelError, NoFaceError
from emocli.face.detect import FaceLinker, FaceTracker
from emocli.face.model import prepare_faces
from emocli.fusion import FusionModel
from emocli.media.ffmpeg import SAMPLE_RATE, MediaInfo, media_seconds, probe, probe_and_load_audio
from emocli.media.live import DecodeSettings, LiveDecode, probe_live, spool_unseekable
from emocli.pipeline.faces import FaceAccumulator, FaceBatch, FaceChunks, FaceStage, box_array
from emocli.pipeline.options import STREAM_BLOCK, Options, Progress, Result, fail, scores_dict, zero_nan
from emocli.pipeline.voice import VoiceInput, VoiceStage
from emocli.pipeline.windows import Closer, Timeline, clip_voice, file_segments, file_voice


@dataclass
class Prepared:
    """Stage 1's output for one input: everything but the neural network and the SVM.

    Made in worker processes in bulk mode (``--workers``) and sent to the main process.
    """

    path: Path
    display: str
    info: Any = None
    faces: FaceChunks | None = None  # the faces found, chunk by chunk
    voice: VoiceInput | None = None  # the voice's blocks and windows, read (see voice.py)
    frames_seen: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0


class Pipeline:
    """Loaded models + options: a :class:`FaceStage` (``face``), a :class:`VoiceStage` (``voice``, None
    without a voice model) and the fusion.

    ``run(path)`` analyses one input, streaming its frames through the face network in
    batches (memory does not grow with the clip's length). Bulk mode splits the work:
    ``prepare(path)`` (decode, detect, crop, voice frames; no neural network, so it runs in
    worker processes) and ``complete(prepared)`` (batched scoring, SVM, fusion).
    """

    def __init__(self, bundle: Path | None = None, options: Options = Options(), *, role: str = "full"):
        self.bundle = Path(bundle) if bundle else DEFAULT_BUNDLE
        self.options = options
        self.role = role
        self.manifest = verify_bundle(self.bundle)
        files = self.manifest.get("files", {})
        self.has_face = options.use_face and ("face.tflite" in files or "face.keras" in files)
        self.has_voice = options.use_voice and ("voice.npz" in files or "voice.skops" in files)
        if not self.has_face and not self.has_voice:
            raise ModelError(f"{self.bundle}: the bundle has no usable face or voice model "
                             "(or both were switched off); train one with `emo train-video`/`emo train-audio`")
        self.fusion = FusionModel.load(self.bundle) if "fusion.json" in files else FusionModel(method="equal").fit()
        labels = self.fusion.labels
        self.voice = VoiceStage(self.bundle, files, options, labels=labels) if self.has_voice else None
        self.face = FaceStage(self.bundle, files, options, labels=labels, role=role, load=self.has_face)
        self.face_model = self.face.model
        self.voice_model = self.voice.model if self.has_voice else None
        self.gpu = self.face.gpu

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
            fail(res, exc)
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
            fail(res, exc)
        res.seconds = time.perf_counter() - t0
        return res

    def _run_stream(self, source, res: Result, on_segment, on_frame, stop) -> None:
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
        sr = self.voice.sample_rate if self.has_voice else SAMPLE_RATE
        acc = self.face.accumulator(res)
        windows = Closer(self, res, length=float(opt.window or STREAM_BLOCK), acc=acc if use_video else None,
                         on_segment=on_segment if opt.window else None, on_frame=on_frame if opt.frames else None)
        timelines = [Timeline(windows, sr=sr, video=use_video, audio=use_audio)]
        blocks = windows  # the closer whose blocks make the stream's voice
        if opt.window and use_audio:
            blocks = Closer(self, res, length=STREAM_BLOCK)
            timelines.append(Timeline(blocks, sr=sr, video=False, audio=True))
        tracker, linker = FaceTracker(min_face=opt.min_face), FaceLinker()
        dec = LiveDecode(source, info, DecodeSettings(fps=opt.fps, max_side=opt.max_side, sr=sr,
                                                      max_seconds=opt.max_seconds, video=use_video, audio=use_audio),
                         head=head, reader=reader)
        with dec:
            for item in dec.items(stop):
                if item.kind == "video":
                    res.frames_seen += 1
                    frame = item.frame
                    _, crops, boxes, tracks, main = self.face.find([frame], tracker, linker)
                    if crops:
                        aligned, mask, small = self.face.aligned([frame] * len(crops), boxes, crops)
                        acc.add(FaceBatch(np.full(len(crops), item.time), prepare_faces(crops, self.face.pre), aligned,
                                          mask, box_array(boxes, info.width / frame.shape[1] if info.width else 1.0),
                                          tracks, main, small))
                    timelines[0].video_time = item.time + dec.step
                for line in timelines:
                    if item.kind == "audio":
                        line.add_audio(item.audio)
                    elif item.kind != "video":
                        line.ended(item.what)
                    line.close_ready()
        dec.check(produced=res.frames_seen > 0 or dec.samples > 0)
        for line in timelines:
            line.close_all()
        covered = timelines[0].covered
        res.duration = round(covered, 3)
        if stop is not None and stop.is_set():
            res.notes.append(f"interrupted after {covered:.1f} s of the stream: the result covers what arrived")
        if dec.stalled or dec.watchdog_fired:
            res.notes.append(f"the stream stalled (nothing arrived for {dec.stall_timeout:.0f} s): scored what "
                             "arrived before")
        if use_video:
            self.face.frame_notes(res, res.frames_used)  # one main face per frame at most
            self.face.other_faces_note(linker, res)
        if opt.window and windows.adapter is not None:
            windows.adapter.report(res, what="segments")
        voice, stats68 = clip_voice(self, res, blocks, what="stream") if use_audio else (None, None)
        self._fuse(source.name, res, acc, windows.face_total(), voice, stats68, has_video=info.has_video, still=False)

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
            prep.voice = self._decode(prep.info, prep, prep.faces.add, audio=audio)
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
                acc = self.face.accumulator(res, still=prep.info.is_image)
                b = self.options.batch_size
                for batch in prep.faces.drain():
                    for i in range(0, len(batch), b):
                        acc.add(batch.select(slice(i, i + b)))
                self._finish(prep.path, prep.info, res, acc, prep.voice)
        except EmoError as exc:
            fail(res, exc)
        finally:
            if prep.faces is not None:
                prep.faces.discard()
        res.seconds = prep.seconds + time.perf_counter() - t0
        return res

    def _probe(self, path: Path) -> tuple[MediaInfo, np.ndarray | None]:
        """The file's description, and an audio file's samples when the voice is scored (one ffmpeg
        run: :func:`emocli.media.ffmpeg.probe_and_load_audio`), else None (decoded later, as usual)."""
        if self.has_voice:
            both = probe_and_load_audio(path, sr=self.voice.sample_rate, max_seconds=self.options.max_seconds)
            if both is not None:
                return both
        return probe(path), None

    def _run(self, path: Path, res: Result, progress: Progress | None = None) -> None:
        """:meth:`prepare` then :meth:`complete` in one process, each chunk of faces scored as it is
        decoded (memory does not grow with the clip's length)."""
        info, audio = self._probe(path)
        res.duration = info.duration
        acc = self.face.accumulator(res, still=info.is_image)
        vin = self._decode(info, res, acc.add, progress, audio=audio)
        self._finish(path, info, res, acc, vin)

    def _decode(self, info, rec, on_faces: Callable[[FaceBatch], None], progress: Progress | None = None, *,
                audio: np.ndarray | None = None) -> VoiceInput | None:
        """Stage 1 of one input, shared by :meth:`run` and :meth:`prepare`: each batch of faces (see
        :meth:`FaceStage.chunks`) goes to ``on_faces`` as it is decoded; returns the voice, read
        (None without a voice to score). ``rec`` (a Result or Prepared) receives ``frames_seen`` and
        notes; ``audio``: the samples :meth:`_probe` already decoded, if it did."""
        if self.has_face and info.has_video:
            for batch in self.face.chunks(info, rec, progress):
                on_faces(batch)
        if not (self.has_voice and info.has_audio and not info.is_image):
            return None
        total = media_seconds(info, self.options.max_seconds)
        if progress is not None:
            progress("voice", 0.0, total)
        vin = self.voice.decode(info, rec.notes, audio=audio)
        if progress is not None:
            progress("voice", total or 0.0, total)
        return vin

    def _finish(self, path: Path, info, res: Result, acc: FaceAccumulator, vin: VoiceInput | None) -> None:
        """Turn per-frame face scores and the voice's blocks into the clip's result (and segments)."""
        voice, stats68 = file_voice(self, res, vin) if vin is not None else (None, None)
        if info.has_video and not self.has_face:
            res.notes.append("face model not loaded")
        if not info.is_image:
            if not info.has_audio:
                res.notes.append("no audio track")
            elif not self.has_voice:
                res.notes.append("voice model not loaded")
        self._fuse(path, res, acc, acc.clip_scores(), voice, stats68, has_video=info.has_video, still=info.is_image)
        if self.options.keep_frames:
            acc.keep(res)
            res.voice_stats68 = stats68
        if self.options.frames:
            res.frames = acc.take_frames()
        if self.options.window:
            res.segments = file_segments(self, info, res, acc, vin)

    def _fuse(self, path, res: Result, acc: "FaceAccumulator", face, voice, stats68, *, has_video: bool,
              still: bool) -> None:
        """The input's face and voice scores (model label order) fused into ``res``."""
        if face is None and voice is None:
            reasons = "; ".join(res.notes) or "nothing to analyse"
            raise NoFaceError(f"{path}: no face and no usable voice ({reasons}); "
                              "check that the file shows a face or has speech")
        labels = self.fusion.labels
        face_a = None if face is None else self.face.to_fusion(face)
        voice_a = None if voice is None else self.voice.to_fusion(voice)
        face_features = acc.mean_features()
        fused = self.fusion.fuse_clip(face_a, voice_a, face_features=face_features, voice_stats68=stats68)
        if voice_a is not None:
            res.fusion_inputs = {"face": face_a, "face_features": face_features, "voice_stats68": stats68}
        res.face_scores, res.voice_scores = scores_dict(zero_nan(face_a), labels), scores_dict(zero_nan(voice_a), labels)
        res.faces = acc.face_tracks()
        experts = acc.expert_scores()
        self.face.expert_notes(res, acc)
        if experts:
            res.face_experts = {name: scores_dict(zero_nan(self.face.to_fusion(p)), labels)
                                for name, p in experts.items()}
        res.scores = scores_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.modalities = [m for m, v in (("face", face_a), ("voice", voice_a)) if v is not None]
        if res.modalities == ["face"] and not still:
            res.notes.append("face only")
        elif res.modalities == ["voice"] and has_video:
            res.notes.append("voice only")

    def adapt(self, res: Result, stats, *, speaker: str | None = None, kind: str = "speaker") -> bool:
        """Rescore ``res``'s voice with the speaker-normalised model and fuse again.

        ``stats``: the :class:`emocli.voice.speaker.SpeakerStats` of the result's group, its speaker's
        (``kind`` "speaker") or its run's ("run"); None: the result keeps its plain scores, and
        ``res.adaptation`` stays None. Returns whether it was adapted.
        """
        res.adaptation_asked = True
        res.speaker = speaker
        if (stats is None or res.voice_vector is None or res.fusion_inputs is None or not self.has_voice
                or self.voice.speaker_model is None):
            return False
        sm = self.voice.speaker_model
        voice_a = self.voice.to_fusion(sm.predict_proba(stats.normalise(res.voice_vector)[None])[0], sm.labels)
        fi = res.fusion_inputs
        fused = self.fusion.fuse_clip(fi["face"], voice_a, face_features=fi["face_features"],
                                      voice_stats68=fi["voice_stats68"])
        labels = self.fusion.labels
        res.voice_scores = scores_dict(zero_nan(voice_a), labels)
        res.scores = scores_dict(fused, labels)
        res.label = labels[int(np.argmax(fused))]
        res.adaptation = kind
        return True

