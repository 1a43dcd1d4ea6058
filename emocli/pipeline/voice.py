"""The voice stage: a clip's or a window's audio gated for speech, turned into the voice model's
features (pyAudioAnalysis statistics, the speech-encoder vector) and scored, with speaker adaptation.

:meth:`VoiceStage.decode` and :meth:`VoiceStage.read` run no classifier (bulk workers call them);
the SVM scores what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocli.errors import MediaError, ModelError, NoAudioError
from emocli.fusion import align, normalise_present
from emocli.media.ffmpeg import load_audio
from emocli.pipeline.options import STREAM_BLOCK, VAD_NOTE, Options, Result, short_message
from emocli.voice import speaker
from emocli.voice.activity import SAMPLE_RATE as VAD_RATE, VAD_FILE, SileroVAD, at_level, gate_reason
from emocli.voice.encoder import embed, shipped_encoder
from emocli.voice.features import (ENCODER_SETS, NEEDS_PITCH, clip_vector, frame_statistics, short_term_features,
                                   window_features)
from emocli.voice.levels import SILENCE_DBFS, loudest_window_dbfs, window_levels_dbfs
from emocli.voice.model import VoiceModel


@dataclass
class VoiceBlock:
    """One stretch of a clip's or a stream's audio (a block of the clip's voice or a ``--window``
    segment), read as a stream reads it: its window features and speech-encoder vector, or why
    there are none."""

    seconds: float  # its length: the weight of its scores in the clip's
    frames: np.ndarray | None = None  # (34 or 36, m) per-window features (34 short-term [+ pitch + voicing])
    embedding: np.ndarray | None = None  # (768,) its speech-encoder vector (encoder feature sets)
    missing: str | None = None  # why frames is None: "no audio", "no speech" or "no speech (voice activity)"
    notes: list[str] = field(default_factory=list)  # what reading it found (a clip of one block reports them)


@dataclass
class VoiceInput:
    """A clip's voice, cut as a stream's is: its :data:`STREAM_BLOCK`-second blocks (the clip's voice
    is their mean, weighted by length) and, with ``--window``, its segments."""

    blocks: list[VoiceBlock]
    windows: list[VoiceBlock] | None = None


class BlockReader:
    """Reads the consecutive stretches of one audio stream into :class:`VoiceBlock` s, the speech
    gate's state carried from each to the next. Files and streams are cut and read alike, so the
    same audio gives the same blocks either way."""

    def __init__(self, stage: "VoiceStage"):
        self.stage, self.vad_state = stage, None

    def read(self, audio: np.ndarray) -> VoiceBlock:
        stage, sr = self.stage, self.stage.sample_rate
        block = VoiceBlock(seconds=len(audio) / sr)
        if len(audio) < sr // 10:  # a tenth of a second at least
            block.missing = "no audio"
            block.notes.append(f"voice unusable (audio too short: {len(audio)} samples, under 0.1 s)")
            return block
        audio = finite_audio(audio, block.notes)
        if audio is None:
            block.missing = "no speech"
            return block
        speech = None
        if stage.vad is not None:
            speech, self.vad_state = stage.vad.probabilities(at_level(audio, sr=sr), state=self.vad_state)
        try:
            read = stage.features(audio, block.notes, speech=speech)
        except NoAudioError as exc:
            block.notes.append(f"voice unusable ({exc})")
            read = None
        if read is None:
            vad = any(n.startswith(VAD_NOTE) for n in block.notes)
            block.missing = "no speech (voice activity)" if vad else "no speech"
        else:
            block.frames, block.embedding = read
        return block


def cut(audio: np.ndarray, seconds: float, sr: int) -> list[np.ndarray]:
    """``audio`` in consecutive pieces of ``seconds`` (the last as long as the audio goes), cut at the
    samples a stream's windows are (round(k * seconds * sr))."""
    edges = [round(k * seconds * sr) for k in range(int(np.ceil(len(audio) / (seconds * sr))) + 1)]
    return [audio[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a] or [audio[:0]]


class VoiceStage:
    """The voice half of a pipeline: the bundle's voice model, its settings and speech gate, and the
    speaker-normalised model when the bundle has one.

    ``labels`` is the fusion's label order, the one every voice score leaves this stage in
    (:meth:`to_fusion`).
    """

    def __init__(self, bundle: Path, files, options: Options, *, labels):
        self.bundle, self.files, self.options, self.labels = bundle, files, options, list(labels)
        self.model = VoiceModel.load(bundle, runtime=True)
        self.settings = dict(self.model.settings_)  # VoiceModel.load checked every setting
        self.sample_rate = int(self.settings["sample_rate"])
        self._speaker_model = None
        self.vad = None  # the bundle's voice-activity model (voice/activity.py); without it, the level gate only
        if VAD_FILE in files and self.sample_rate == VAD_RATE:
            self.vad = SileroVAD.load(bundle / VAD_FILE)

    def decode(self, info, notes: list[str], *, audio: np.ndarray | None = None) -> VoiceInput | None:
        """Decode the audio (unless ``audio`` holds it already) and read it (:meth:`read`); None, with a
        note, when it cannot be decoded."""
        try:
            if audio is None:
                audio = load_audio(info.path, sr=self.sample_rate, info=info, max_seconds=self.options.max_seconds)
        except NoAudioError as exc:
            notes.append(f"voice unusable ({short_message(exc, info.path)})")
            return None
        except MediaError as exc:
            notes.append(f"audio undecodable ({short_message(exc, info.path)})")
            return None
        if info.audio_streams > 1:
            notes.append(f"voice from audio stream {info.audio_stream + 1} of {info.audio_streams}")
        return self.read(audio)

    def read(self, audio: np.ndarray) -> VoiceInput:
        """A clip's decoded audio cut into blocks (and ``--window`` segments) and each read as a stream's
        is (see :class:`BlockReader`); the features and speech-encoder vectors are made here, while
        the audio is in memory, so it is never kept."""
        sr = self.sample_rate
        reader = BlockReader(self)
        vin = VoiceInput([reader.read(x) for x in cut(audio, STREAM_BLOCK, sr)])
        if self.options.window:
            reader = BlockReader(self)
            vin.windows = [reader.read(x) for x in cut(audio, float(self.options.window), sr)]
        return vin

    def features(self, audio: np.ndarray, notes: list[str], *,
                 speech: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(window features, speech-encoder vector or None) of decoded audio; None, with a note, when it
        is silent or, with the bundle's voice-activity model, holds too little speech (music, noise).

        ``speech``: the audio's speech probabilities when the caller ran the VAD (a reader carries
        its state from block to block).

        Raises
        ------
        NoAudioError
            If the audio is shorter than one analysis window.
        """
        st = self.settings
        sr = self.sample_rate
        audio = finite_audio(audio, notes)
        if audio is None:
            return None
        if self.vad is not None:  # the gate: a level floor relative to the clip, and the VAD at one level
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
        embedding = embed(audio, sr, shipped_encoder()) if st["feature_set"] in ENCODER_SETS else None
        return frames, embedding

    def score(self, block: VoiceBlock, adapter: "StreamAdapter | None" = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """A block's (voice probabilities in the model's order, voice vector, 68 thesis statistics,
        adapted): with an ``adapter``, the block joins its running statistics and, once they are warm,
        is scored against them."""
        feats, stats68 = self.vector(block.frames, block.embedding)
        if adapter is not None:
            probs = adapter.score(feats, block.seconds)
            if probs is not None:
                return probs, feats, stats68, True
        return self.model.predict_proba(feats[None])[0], feats, stats68, False

    def vector(self, frames: np.ndarray, embedding: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(the voice model's feature vector, the 68 thesis statistics) of window frames (34+, m)."""
        feats = clip_vector(self.settings["feature_set"], frames=frames, embedding=embedding)
        return feats, frame_statistics(frames, feature_set="thesis68")  # the 68: feature-level fusion input

    def stream_adapter(self) -> "StreamAdapter | None":
        """Running speaker statistics for one stream or clip's windows, when ``options.adapt`` asks for them."""
        return StreamAdapter(self) if self.options.adapt else None

    @property
    def speaker_model(self):
        """The bundle's speaker-normalised voice model (``train-audio --adapted-model``), or None."""
        if self._speaker_model is None and self.has_speaker_model:
            self._speaker_model = VoiceModel.load(self.bundle, runtime=True, name=speaker.MODEL_NAME)
            if (self._speaker_model.settings_ != self.model.settings_
                    or self._speaker_model.labels != self.model.labels):
                raise ModelError(f"{self.bundle}: {speaker.MODEL_NAME}.json was trained on other voice features or labels than "
                                 "voice.json; retrain the bundle with `emo train-audio --adapted-model`")
        return self._speaker_model

    @property
    def has_speaker_model(self) -> bool:
        return f"{speaker.MODEL_NAME}.npz" in self.files

    def to_fusion(self, scores: np.ndarray, labels=None) -> np.ndarray:
        """Voice scores (the voice model's order, or ``labels``) in the fusion's label order; NaN for
        emotions the model lacks."""
        return normalise_present(align(scores, self.model.labels if labels is None else labels, self.labels))


class StreamAdapter:
    """Speaker adaptation of one stream's (or clip's) windows, in order: their voice vectors feed
    :class:`emocli.voice.speaker.RunningStats`; once it is warm, each window is scored with the bundle's
    speaker-normalised model against it (the window itself included, as a corpus speaker's clips are)."""

    def __init__(self, stage: VoiceStage):
        self.model = stage.speaker_model if stage.has_speaker_model else None
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
                             "--adapted-model): plain voice model")
        elif self.adapted:
            res.notes.append(f"--adapt: {self.adapted} of {self.windows} voiced window(s) scored against the "
                             f"{what}'s own running voice baseline (after {WARMUP_SECONDS:g} s of voice)")
            if what in ("stream", "clip"):  # its voice is the mean of its blocks', adapted ones included
                res.adaptation = "speaker"
        else:
            res.notes.append(f"--adapt: under {WARMUP_SECONDS:g} s of voiced windows, none was adapted")


def finite_audio(audio: np.ndarray, notes: list[str]) -> np.ndarray | None:
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
