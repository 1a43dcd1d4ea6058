"""Windows: the one closer that scores a clip's or a stream's consecutive stretches of time.

A file is read as a stream that ends (the stream is the general case): its audio is cut into the
same blocks and ``--window`` segments a stream's is, at the same samples, and each is closed by
the same :class:`Closer`. Two timelines run side by side:

- **blocks** of :data:`STREAM_BLOCK` seconds make the clip's voice: the mean of the blocks' voice
  scores, weighted by their length (a clip up to one block long: the voice of the whole clip);
- **segments** of ``--window`` seconds give a result each (face frames in the window, the voice
  of its audio, fused).

A stream closes each window as soon as both modalities have passed its end (see :class:`Timeline`);
a file closes them all once its faces are scored. The clip's face is the pooled score of all its
frames either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from emocli.fusion import normalise
from emocli.pipeline.faces import FaceAccumulator, pool_frames, pool_weights
from emocli.pipeline.options import LIVE_MAX_LAG, STREAM_BLOCK, Result, scores_dict, zero_nan
from emocli.pipeline.voice import BlockReader, VoiceBlock, VoiceInput

if TYPE_CHECKING:
    from emocli.pipeline.core import Pipeline

EDGE = 1e-6  # seconds: a window's end is compared with this tolerance (float times of frames and samples)


def window_edges(total: float, length: float) -> list[tuple[float, float]]:
    """[start, end) of each ``length``-second window of ``total`` seconds, as a stream closes them: the
    last ends where the media ends (a clip shorter than a window is one window)."""
    out = []
    k = 0
    while k * length < total - EDGE or (k == 0 and total > 0):
        out.append((k * length, min((k + 1) * length, total)))
        k += 1
    return out


class Closer:
    """Closes consecutive windows of one length, for files and streams alike.

    Window [start, end) gets the face frames of ``acc`` whose time falls in it (the last window:
    every frame left) and the voice of its audio (a :class:`VoiceBlock`); each is scored, the
    window's segment is fused and sent to ``on_segment`` (when given), and running sums make the
    whole clip's face and voice. ``acc`` None: this closer pools no faces (the clip has no video,
    or another closer pools them).
    """

    def __init__(self, pipe: Pipeline, res: Result, *, length: float, acc: FaceAccumulator | None = None,
                 on_segment: Callable[[dict], None] | None = None, on_frame: Callable[[dict], None] | None = None):
        self.pipe, self.res, self.length, self.acc = pipe, res, length, acc
        self.on_segment, self.on_frame = on_segment, on_frame
        self.adapter = pipe.voice.stream_adapter() if pipe.has_voice else None
        self.face_sum, self.face_weight = 0.0, 0.0  # weighted sum of frame scores, in the face model's order
        self.voice_sum = self.feats_sum = self.stats_sum = None  # length-weighted sums, the voice model's order
        self.voice_weight = 0.0
        self.heard = self.voiced = 0  # blocks with audio, blocks whose voice was scored
        self.first: VoiceBlock | None = None

    def close(self, start: float, end: float, voice: VoiceBlock | None, *, last: bool = False) -> None:
        """Score the window [start, end) (``voice`` None: no audio is scored here)."""
        notes: list[str] = []
        face, n_face = self._face(start, end, last, notes) if self.acc is not None else (None, 0)
        voice_p, adapted = self._voice(voice, notes) if voice is not None else (None, False)
        gated = "no speech (voice activity)" in notes  # a window of music or noise: said, not dropped
        if self.on_segment is None or (last and face is None and voice_p is None and not gated):
            return  # a sliver at the end that nothing scored (the longer modality's last packet) is no segment
        pipe, labels = self.pipe, self.pipe.fusion.labels
        seg: dict[str, Any] = {"start": round(start, 3), "end": round(end, 3), "label": None, "scores": None,
                               "face_scores": scores_dict(zero_nan(face), labels),
                               "voice_scores": scores_dict(zero_nan(voice_p), labels), "frames_used": n_face}
        if self.adapter is not None:
            seg["adapted"] = bool(voice_p is not None and adapted)
        if face is not None or voice_p is not None:
            fused = pipe.fusion.fuse(face, voice_p)
            seg["label"] = labels[int(np.argmax(fused))]
            seg["scores"] = scores_dict(normalise(fused), labels)
        if notes:
            used = "face" if face is not None else "voice" if voice_p is not None else None
            both = self.acc is not None and voice is not None
            seg["notes"] = [", ".join(notes) + (f": {used} alone" if used and both else "" if used
                                                else ": nothing scored")]
        self.on_segment(seg)

    def _face(self, start: float, end: float, last: bool, notes: list[str]) -> tuple[np.ndarray | None, int]:
        """The window's pooled face score (fusion order) and frame count; its frames leave ``acc``."""
        acc, pipe = self.acc, self.pipe
        acc.flush()
        if self.on_frame is not None:
            for f in acc.take_frames(float("inf") if last else end):
                self.on_frame(f)
        labels = pipe.face_model.labels
        times = np.concatenate(acc.times) if acc.times else np.zeros(0)
        scores = np.concatenate(acc.scores) if acc.scores else np.zeros((0, len(labels)))
        sel = (times >= start) & ((times < end) | last)
        n = int(sel.sum())
        face = None
        if n:
            w = pool_weights(scores[sel], method=pipe.options.pooling, labels=labels)
            self.face_sum = self.face_sum + (w[:, None] * scores[sel]).sum(0)
            self.face_weight += float(w.sum())
            face = pipe.face.to_fusion(pool_frames(scores[sel], method=pipe.options.pooling, labels=labels))
        else:
            notes.append("no face")
        keep = ~sel & (times >= end)  # frames of later windows (the video ran ahead)
        acc.times = [times[keep]] if keep.any() else []
        acc.scores = [scores[keep]] if keep.any() else []
        return face, n

    def _voice(self, block: VoiceBlock, notes: list[str]) -> tuple[np.ndarray | None, bool]:
        """The block's voice score (fusion order) and whether it was adapted; None, with a note, when it
        has none. Scored blocks join the running sums."""
        self.first = self.first or block
        if block.missing != "no audio":
            self.heard += 1
        if block.missing is not None:
            notes.append(block.missing)
            return None, False
        probs, feats, stats68, adapted = self.pipe.voice.score(block, self.adapter)
        w = block.seconds
        self.voice_sum = probs * w if self.voice_sum is None else self.voice_sum + probs * w
        self.feats_sum = feats * w if self.feats_sum is None else self.feats_sum + feats * w
        self.stats_sum = stats68 * w if self.stats_sum is None else self.stats_sum + stats68 * w
        self.voice_weight += w
        self.voiced += 1
        return self.pipe.voice.to_fusion(probs), adapted

    def face_total(self) -> np.ndarray | None:
        """The whole clip's face score (the face model's order) from the windows closed."""
        return self.face_sum / self.face_weight if self.face_weight else None

    def voice_total(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """The whole clip's (voice probabilities, voice vector, 68 statistics): length-weighted means over
        the blocks whose voice was scored (the voice model's order); Nones without one."""
        if not self.voice_weight:
            return None, None, None
        w = self.voice_weight
        return self.voice_sum / w, self.feats_sum / w, self.stats_sum / w

    def voice_notes(self) -> list[str]:
        """What the clip's notes say of its voice: a clip of one block, what reading it found; else how
        many blocks were scored."""
        if self.heard <= 1:
            return list(self.first.notes) if self.first is not None else []
        if not self.voiced:
            return [f"no speech detected in any of {self.heard} {self.length:g}-s blocks: voice not used"]
        quiet = self.heard - self.voiced
        return [f"voice: the mean of {self.voiced} {self.length:g}-s blocks' voice scores"
                + (f" ({quiet} more without speech)" if quiet else "")]


def clip_voice(pipe: Pipeline, res: Result, blocks: Closer, *, what: str
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The clip's (or stream's) voice from the blocks ``blocks`` closed: (probabilities in the voice
    model's order, 68 statistics), with the notes that say how it was made."""
    voice, feats, stats68 = blocks.voice_total()
    res.notes.extend(blocks.voice_notes())
    res.voice_vector = feats
    if pipe.options.keep_frames:
        res.voice_features = feats
    if blocks.adapter is not None:
        blocks.adapter.report(res, what=what)
    return voice, stats68


def file_voice(pipe: Pipeline, res: Result, vin: VoiceInput) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A file's voice, block by block as a stream's (see :func:`clip_voice`)."""
    blocks = Closer(pipe, res, length=STREAM_BLOCK)
    for k, block in enumerate(vin.blocks):
        blocks.close(k * STREAM_BLOCK, (k + 1) * STREAM_BLOCK, block, last=k == len(vin.blocks) - 1)
    return clip_voice(pipe, res, blocks, what="clip")


def file_segments(pipe: Pipeline, info, res: Result, acc: FaceAccumulator, vin: VoiceInput | None) -> list[dict]:
    """A file's ``--window`` segments, closed as a stream's are (see windows.py)."""
    length = float(pipe.options.window)
    segments: list[dict] = []
    faces = acc if info.has_video and pipe.has_face else None
    closer = Closer(pipe, res, length=length, acc=faces, on_segment=segments.append)
    # as far as a stream of the same file reaches: its last frame's step, or its audio's end
    video = res.frames_seen / (pipe.options.fps or info.fps or 25.0) if not info.is_image else 0.0
    last_face = max((float(t[-1]) + EDGE for t in acc.times if len(t)), default=0.0)
    audio = sum(b.seconds for b in vin.blocks) if vin is not None else 0.0
    edges = window_edges(max(video, audio, last_face), length)
    for k, (start, end) in enumerate(edges):
        block = None
        if vin is not None:
            block = vin.windows[k] if k < len(vin.windows) else VoiceBlock(0.0, missing="no audio")
        closer.close(start, end, block, last=k == len(edges) - 1)
    if closer.adapter is not None:
        closer.adapter.report(res, what="segments")
    return segments


class Timeline:
    """A stream's windows of one length, each closed (by its :class:`Closer`) when both modalities
    have passed its end, or one has passed it by :data:`LIVE_MAX_LAG`; then forgotten.

    Face frames wait in the closer's accumulator and audio samples in a buffer until their window
    closes, so memory holds at most a window (plus :data:`LIVE_MAX_LAG`) of either.
    """

    def __init__(self, closer: Closer, *, sr: int, video: bool, audio: bool):
        self.closer, self.length, self.sr = closer, closer.length, sr
        self.video, self.audio = video, audio
        self.reader = BlockReader(closer.pipe.voice) if audio else None
        self.video_time = 0.0  # stream time the decoded frames cover
        self.video_done, self.audio_done = not video, not audio
        self.k = 0  # index of the next window to close
        self.chunks: list[np.ndarray] = []  # audio samples [buf_start, samples)
        self.buf_start = self.samples = 0

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
        """Close every window both modalities have passed (or one has passed by LIVE_MAX_LAG)."""
        while not (self.video_done and self.audio_done):
            end = (self.k + 1) * self.length
            v = self.video_done or self.video_time >= end - EDGE
            a = self.audio_done or self.samples >= round(end * self.sr)
            lag = end + LIVE_MAX_LAG
            if not (v and a) and not (self.video and self.video_time >= lag) and not (
                    self.audio and self.samples >= round(lag * self.sr)):
                return
            self._close(self.k * self.length, end)
            self.k += 1

    def close_all(self) -> None:
        """At the end of the stream: the windows left, the last one as long as the stream went."""
        edges = window_edges(self.covered, self.length)
        for k in range(self.k, len(edges)):
            self._close(*edges[k], last=k == len(edges) - 1)
        self.k = max(self.k, len(edges))

    def _close(self, start: float, end: float, *, last: bool = False) -> None:
        voice = None
        if self.audio:
            s0, s1 = round(start * self.sr), round(end * self.sr)
            buf = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
            seg = buf[max(0, s0 - self.buf_start):] if last else buf[max(0, s0 - self.buf_start):max(0, s1 - self.buf_start)]
            rest = buf[:0] if last else buf[max(0, s1 - self.buf_start):]
            self.chunks, self.buf_start = ([rest] if len(rest) else []), s1
            voice = self.reader.read(seg)
        self.closer.close(start, end, voice, last=last)
