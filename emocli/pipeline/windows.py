"""Windows: a clip's or a stream's consecutive ``--window`` segments (and a stream's blocks), each
scored by face and voice and fused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from emocli.errors import NoAudioError
from emocli.fusion import normalize
from emocli.media.ffmpeg import SAMPLE_RATE
from emocli.pipeline.faces import FaceAccumulator, pool_frames, pool_weights
from emocli.pipeline.options import LIVE_MAX_LAG, VAD_NOTE, Result, scores_dict, zero_nan
from emocli.pipeline.voice import StreamAdapter, VoiceInput
from emocli.voice.activity import at_level
from emocli.voice.features import STEP

if TYPE_CHECKING:
    from emocli.pipeline.core import Pipeline


def segment_bounds(total: float, window: float) -> list[tuple[float, float]]:
    """[start, end) of each ``window``-second segment of a clip ``total`` seconds long.

    A sliver at the end (audio a few ms longer than the video: under min(1 s, window / 2)) joins
    the last segment, and the last end is a hair past ``total`` so that it includes the final frame.
    """
    edges = [k * window for k in range(max(1, int(np.ceil(total / window))))] + [total]
    if len(edges) > 2 and edges[-1] - edges[-2] < min(1.0, window / 2):
        del edges[-2]
    return [(start, total + 1e-6 if end >= total else end) for start, end in zip(edges[:-1], edges[1:])]


def file_segments(pipe: "Pipeline", times: np.ndarray, scores: np.ndarray, voice_frames: VoiceInput | None,
                  duration: float | None, *, adapter: StreamAdapter | None = None
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-window scores of a whole clip: (segments, notes); nothing else is read or changed but
    the ``adapter``'s running statistics.

    ``times`` (n,) seconds and ``scores`` (n, K) of the clip's scored face frames (face model
    order); ``voice_frames`` its voice windows. Face frames and voice windows whose time falls
    in [start, end) make a segment (see :func:`segment_bounds`); a segment past the end of one
    modality (audio shorter than the video, or no face in it) uses the other alone, and the
    notes say so.
    """
    w = float(pipe.options.window)
    step = float(pipe.voice.settings["step_s"]) if pipe.has_voice else STEP
    sr = pipe.voice.sample_rate if pipe.has_voice else SAMPLE_RATE
    limit = pipe.options.max_seconds if pipe.options.max_seconds is not None else float("inf")
    ends = [min(duration or 0.0, limit)]
    if times.size:
        ends.append(float(times[-1]) + 1e-6)
    if voice_frames is not None:
        ends.append(voice_frames.frames.shape[1] * step)
    total = max(ends)
    labels = pipe.fusion.labels
    out = []
    one_sided: set[str] = set()
    for start, end in segment_bounds(total, w):
        sel = (times >= start) & (times < end)
        face = (pipe.face.to_fusion(pool_frames(scores[sel], method=pipe.options.pooling, labels=pipe.face_model.labels))
                if sel.any() else None)
        voice, adapted, seg_notes = None, False, []
        if voice_frames is not None:
            part = voice_frames.frames[:, int(start / step):int(end / step)]  # short or empty past the audio's end
            emb = voice_frames.segment_embedding(start, w)
            if part.shape[1] >= 2 and not voice_frames.segment_has_speech(start, end, sr):
                seg_notes.append("no speech (voice activity): " + ("face alone" if face is not None
                                                                   else "nothing scored"))
            elif part.shape[1] >= 2 and (emb is not None or voice_frames.embedding is None):
                probs, _, adapted = pipe.voice.window_scores(part, emb, adapter, part.shape[1] * step)
                voice = pipe.voice.to_fusion(probs)
            elif face is not None:
                one_sided.add("segments past the end of the audio use the face alone")
        if voice is not None and face is None and times.size:
            one_sided.add("segments without a face use the voice alone")
        if face is None and voice is None and not seg_notes:
            continue
        fused = None if face is None and voice is None else pipe.fusion.fuse(face, voice)
        out.append({"start": round(start, 3), "end": round(min(end, total), 3),
                    "label": None if fused is None else labels[int(np.argmax(fused))],
                    "scores": None if fused is None else scores_dict(normalize(fused), labels),
                    "face_scores": scores_dict(zero_nan(face), labels),
                    "voice_scores": scores_dict(zero_nan(voice), labels), "frames_used": int(sel.sum())})
        if adapter is not None:
            out[-1]["adapted"] = adapted
        if seg_notes:
            out[-1]["notes"] = seg_notes
    return out, sorted(one_sided)


class LiveWindows:
    """A live stream's windows: each closes when both modalities have passed its end (or ended),
    is scored, and is then forgotten; only running sums are kept for the whole-stream result.

    Face frames wait in the accumulator and audio samples in a buffer until their window closes,
    so memory holds at most a window (plus :data:`LIVE_MAX_LAG`) of either.
    """

    def __init__(self, pipe: "Pipeline", res: Result, *, block: float, sr: int, video: bool, audio: bool,
                 on_segment=None, on_frame=None):
        self.pipe, self.res, self.block, self.sr, self.on_segment = pipe, res, block, sr, on_segment
        self.on_frame = on_frame
        self.acc = FaceAccumulator(pipe.face, res)
        self.video, self.audio = video, audio
        self.video_time = 0.0  # stream time the decoded frames cover
        self.video_done, self.audio_done = not video, not audio
        self.k = 0  # index of the next window to close
        self.chunks: list[np.ndarray] = []  # audio samples [buf_start, samples)
        self.buf_start = self.samples = 0
        self.face_sum, self.face_weight = 0.0, 0.0  # weighted sum of frame scores, in the face model's order
        self.voice_sum, self.voice_weight, self.stats_sum = None, 0.0, None
        self.voice_blocks = self.silent_blocks = self.segments = 0
        self.adapter = pipe.voice.stream_adapter() if audio else None
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
                face = pipe.face.to_fusion(pool_frames(scores[sel], method=pipe.options.pooling,
                                                       labels=pipe.face_model.labels))
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
                voice = pipe.voice.to_fusion(probs)
        self.segments += 1
        gated = "no speech (voice activity)" in notes  # a window of music or noise: said, not dropped
        if self.on_segment is None or (last and face is None and voice is None and not gated):
            return  # a sliver at the end that nothing scored (the longer stream's last packet) is no segment
        labels = pipe.fusion.labels
        seg_out: dict[str, Any] = {"start": round(start, 3), "end": round(end, 3), "label": None, "scores": None,
                                   "face_scores": scores_dict(zero_nan(face), labels),
                                   "voice_scores": scores_dict(zero_nan(voice), labels), "frames_used": n_face}
        if self.adapter is not None:
            seg_out["adapted"] = bool(voice is not None and self.adapted)
        if face is not None or voice is not None:
            fused = pipe.fusion.fuse(face, voice)
            seg_out["label"] = labels[int(np.argmax(fused))]
            seg_out["scores"] = scores_dict(normalize(fused), labels)
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
        if pipe.voice.vad is not None and audible:
            speech, self.vad_state = pipe.voice.vad.probabilities(at_level(seg, sr=self.sr), state=self.vad_state)
        try:
            vin = pipe.voice.read(seg, own, windows=False, speech=speech) if audible else None
        except NoAudioError:
            vin = None
        if vin is None:
            self.silent_blocks += 1
            vad = any(n.startswith(VAD_NOTE) for n in own)
            notes.append(("no speech (voice activity)" if vad else "no speech") if audible else "no audio")
            return None
        weight = len(seg) / self.sr
        probs, stats68, self.adapted = pipe.voice.window_scores(vin.frames, vin.embedding, self.adapter, weight)
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
