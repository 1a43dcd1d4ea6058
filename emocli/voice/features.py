"""Voice features: pyAudioAnalysis short-term features and their statistics over a clip.

Every short-term window gives the 34 features of
:func:`pyAudioAnalysis.ShortTermFeatures.feature_extraction` (:data:`FEATURE_NAMES`):
zero-crossing rate, energy, entropy of energy, spectral centroid, spread, entropy, flux,
roll-off, 13 MFCCs, 12 chroma bins and the chroma deviation. A clip becomes one fixed-size
vector of statistics over its windows (:data:`FEATURE_SETS`):

``thesis68``
    mean and standard deviation of the 34 features over every window: the thesis's 68
    values, and the voice half of feature-level fusion.
``rich``
    emo's voice-model features (:data:`DEFAULT_FEATURE_SET`, 289 values): over the *active*
    windows only (within :data:`ACTIVE_DB` dB of the loudest window, so the second of silence
    around an acted utterance does not dilute them) the mean, std, 10th/50th/90th
    percentiles and 10-90 range of the 34 features and the std and mean absolute value of
    their window-to-window deltas, plus 17 pitch statistics from :func:`pitch_track`
    (pyAudioAnalysis 0.3.14 has no pitch among its short-term features). On RAVDESS actors
    held out of training (7 classes), an RBF SVM reaches 37 % with thesis68 and 56 % with
    these features and speed-perturbed training copies (``emo train-audio``, voice.json).
``whisper``
    768 values: mean and std of Whisper tiny.en's encoder frames over the active part of
    the clip (:mod:`emocli.voice.encoder`; the weights ship in ``models/encoders``). Expects
    audio in [-1, 1], as :func:`emocli.media.ffmpeg.load_audio` gives.
``whisper+rich``
    the 768 encoder values, then the 289 ``rich`` statistics.

Scale: pyAudioAnalysis divides the signal by 2**15 and then by its own peak, so its
features barely depend on the input's scale; only its fixed ``1e-10`` guard is not
scale-free. The signal is DC-removed and peak-normalised here first, so a clip and the
same clip at any non-zero gain give the same features.
"""

from __future__ import annotations

import functools
from typing import Iterable, NamedTuple

import numpy as np

from emocli.choices import FEATURE_SETS
from emocli.errors import NoAudioError, ParameterError
from emocli.media.ffmpeg import SAMPLE_RATE
from emocli.quiet_imports import stand_in_modules
from emocli.voice import encoder as ve
from emocli.voice.encoder import embed, shipped_encoder
from emocli.voice.levels import ACTIVE_DB, MIN_ACTIVE

WINDOW = 0.050  # seconds: analysis window, the thesis's setting (800 samples at 16 kHz)
STEP = 0.025  # seconds: hop between windows, 50 % overlap (400 samples at 16 kHz)
N_FEATURES = 34  # per window: 8 time/spectral + 13 MFCC + 12 chroma + chroma deviation
F0_MIN = 60.0  # Hz: lowest pitch searched (lag 267 samples at 16 kHz)
F0_MAX = 500.0  # Hz: highest pitch searched (lag 32 samples at 16 kHz)
VOICED = 0.6  # normalised autocorrelation at the pitch lag above which a window is voiced
MIN_VOICED = 3  # windows: with fewer voiced windows, pitch statistics use every active window
_INT16_SCALE = 2.0 ** 15  # pyAudioAnalysis divides its input by this before peak-normalising

FEATURE_NAMES: tuple[str, ...] = (
    "zcr", "energy", "energy_entropy", "spectral_centroid", "spectral_spread", "spectral_entropy",
    "spectral_flux", "spectral_rolloff",
    *(f"mfcc_{i}" for i in range(1, 14)),
    *(f"chroma_{i}" for i in range(1, 13)),
    "chroma_std",
)
_ENERGY = FEATURE_NAMES.index("energy")
# Rows of window_features: the 34 above, then the pitch track (pitch_track's two rows).
WINDOW_FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES, "f0_hz", "voicing")

RICH_PERCENTILES = (10.0, 50.0, 90.0)  # percent
PITCH_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)  # percent, of log2 f0 over voiced windows
N_PITCH_STATS = 17
DEFAULT_FEATURE_SET = "rich"
NEEDS_PITCH = frozenset({"rich", "whisper+rich"})  # sets whose statistics include the pitch track
# Sets that hold the pooled Whisper-encoder embedding (emocli.voice.encoder), first when combined.
ENCODER_SETS = frozenset({"whisper", "whisper+rich"})
ENCODER_DIMENSION = 768  # mean and std of 384 encoder channels
_FRAME_SET = {"thesis68": "thesis68", "rich": "rich", "whisper+rich": "rich"}  # statistics of window features
_DIMENSION = {"thesis68": 2 * N_FEATURES, "rich": 8 * N_FEATURES + N_PITCH_STATS, "whisper": ENCODER_DIMENSION,
              "whisper+rich": ENCODER_DIMENSION + 8 * N_FEATURES + N_PITCH_STATS}


def window_samples(sr: int, *, window: float = WINDOW, step: float = STEP) -> tuple[int, int]:
    """Window and hop lengths in samples for a sample rate ``sr`` (Hz)."""
    return int(round(window * sr)), max(1, int(round(step * sr)))


def n_frames(n_samples: int, sr: int, *, window: float = WINDOW, step: float = STEP) -> int:
    """Number of analysis windows in ``n_samples`` (pyAudioAnalysis's framing: whole windows only)."""
    win, hop = window_samples(sr, window=window, step=step)
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def _check_feature_set(feature_set: str) -> str:
    if feature_set not in FEATURE_SETS:
        raise ParameterError(f"unknown feature set {feature_set!r}; use one of {', '.join(FEATURE_SETS)}")
    return feature_set


def feature_dimension(feature_set: str) -> int:
    """Length of the clip vector of ``feature_set`` (68 for thesis68)."""
    return _DIMENSION[_check_feature_set(feature_set)]


def _validate_audio(audio: np.ndarray, sr: int, win: int) -> np.ndarray:
    """Check a mono signal and the window; return it as an array (no copy)."""
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ParameterError(f"audio must be mono, shape (n,); got shape {x.shape} (average the channels first)")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ParameterError(f"audio must be a float or integer array, got dtype {x.dtype}")
    if win < 2:
        raise ParameterError(f"the analysis window must span at least 2 samples, got {win} at {sr} Hz")
    if x.shape[0] < win:
        raise NoAudioError(f"audio too short for voice features: {x.shape[0]} samples "
                           f"({x.shape[0] / sr * 1000:.0f} ms) is less than one {win / sr * 1000:.0f} ms "
                           "analysis window; the clip needs at least that much sound")
    return x


AUDIO_BLOCK = 1 << 18  # samples per block when normalising (16 s at 16 kHz)
class _Normalised:
    """A validated signal as finite float64, DC removed, peak at 2**15 (or all zero), by blocks.

    The mean and the peak are gathered block by block and ``block(a, b)`` makes samples on
    demand, so long recordings cost memory per block, not per clip (10 minutes: 77 MB per
    float64 copy). Non-finite samples (a damaged stream) count as silence, not as a failure.
    """
    def __init__(self, audio: np.ndarray, sr: int, win: int):
        self.x = _validate_audio(audio, sr, win)
        self.mean = sum(float(r.sum()) for r in self._raw_blocks()) / len(self.x)
        peak = max(float(np.abs(r - self.mean).max()) for r in self._raw_blocks())
        self.factor = _INT16_SCALE / peak if peak > 0 and np.isfinite(peak) else 0.0

    def _raw(self, a: int, b: int) -> np.ndarray:
        x = self.x[a:b].astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = 0.0
        return x

    def _raw_blocks(self):
        for a in range(0, len(self.x), AUDIO_BLOCK):
            yield self._raw(a, min(len(self.x), a + AUDIO_BLOCK))

    def __len__(self) -> int:
        return len(self.x)

    def block(self, a: int, b: int) -> np.ndarray:
        return (self._raw(a, b) - self.mean) * self.factor

    def blocks(self):
        """The whole normalised signal, block by block."""
        for r in self._raw_blocks():
            yield (r - self.mean) * self.factor


def _lazy_function(module: str, name: str):
    """A function that imports ``module`` and calls its ``name`` on first use."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


def _short_term_features_module():
    """``pyAudioAnalysis.ShortTermFeatures``, imported without its two slowest imports.

    The module imports ``matplotlib.pyplot`` and ``scipy.signal.lfilter`` at the top (over a
    second together) but its per-frame feature functions use neither (they serve its plotting and
    formant helpers). Unless they are loaded already, stand-ins take their place during that
    import only: the stand-ins import the real thing on first use, and any later ``import``
    elsewhere gets the real modules.
    """
    import functools
    import sys
    import types

    stubs: dict[str, types.ModuleType] = {}
    if "pyAudioAnalysis.ShortTermFeatures" not in sys.modules:
        if "matplotlib" not in sys.modules:
            mpl, plt = types.ModuleType("matplotlib"), types.ModuleType("matplotlib.pyplot")
            mpl.pyplot = plt
            plt.__getattr__ = lambda attr: getattr(__import__("matplotlib.pyplot", fromlist=["_"]), attr)
            stubs.update({"matplotlib": mpl, "matplotlib.pyplot": plt})
        sig = types.ModuleType("scipy.signal")
        sig.lfilter = _lazy_function("scipy.signal", "lfilter")
        stubs["scipy.signal"] = sig
    with stand_in_modules(stubs):
        from pyAudioAnalysis import ShortTermFeatures
    # chroma_features() rebuilds the same chroma map (a Python loop over the FFT bins) for
    # every frame: 30 % of the feature time. It depends on (num_fft, sampling_rate) only and
    # its arrays are only read, so one cached copy per setting gives identical features.
    init = ShortTermFeatures.chroma_features_init
    if not hasattr(init, "cache_info"):
        ShortTermFeatures.chroma_features_init = functools.lru_cache(maxsize=16)(init)
    return ShortTermFeatures


def short_term_features(audio: np.ndarray, sr: int, *, window: float = WINDOW, step: float = STEP) -> np.ndarray:
    """pyAudioAnalysis's 34 short-term features of every window.

    pyAudioAnalysis's ``feature_extraction`` computes them window by window in Python; here
    each block of windows is computed at once with numpy (one FFT per block, the MFCC filter
    bank, the DCT and the chroma map as matrices taken from pyAudioAnalysis's own functions),
    equal to pyAudioAnalysis's output to float32 precision (``tests/voice/test_audio.py`` compares
    the two on generated and real clips). 60 s of audio: 1.1 s -> 0.1 s on one core.

    Parameters
    ----------
    audio : float or int array (n,), mono; any scale (the clip is peak-normalised first);
        non-finite samples are treated as silence
    sr : sample rate in Hz (emo uses :data:`emocli.media.ffmpeg.SAMPLE_RATE`, 16000)
    window, step : seconds

    Returns
    -------
    float32 (34, n_frames), rows in :data:`FEATURE_NAMES` order, all finite;
    ``n_frames = 1 + (n - window_samples) // step_samples`` (:func:`n_frames`)

    Raises
    ------
    NoAudioError
        If the signal is shorter than one analysis window.
    ParameterError
        If ``audio`` is not 1-D numeric or ``sr`` is not a positive integer.
    """
    win, hop = window_samples(sr, window=window, step=step)
    norm = _Normalised(audio, sr, win)
    n = 1 + (len(norm) - win) // hop
    # pyAudioAnalysis's input scaling, then its dc_normalize(), with statistics gathered block by
    # block instead of three float64 copies of the whole signal.
    s_mean = sum(float((b / _INT16_SCALE).sum()) for b in norm.blocks()) / len(norm)
    s_max = max(float(np.abs(b / _INT16_SCALE - s_mean).max()) for b in norm.blocks())
    maps = _spectral_maps(sr, win)
    out = np.empty((34, n), np.float64)
    frames_per_block = max(1, AUDIO_BLOCK // hop)
    previous = None
    with np.errstate(all="ignore"):
        for f0 in range(0, n, frames_per_block):
            f1 = min(n, f0 + frames_per_block)
            sig = (norm.block(f0 * hop, (f1 - 1) * hop + win) / _INT16_SCALE - s_mean) / (s_max + 0.0000000001)
            frames = sig[np.arange(win)[None, :] + hop * np.arange(f1 - f0)[:, None]]
            out[:, f0:f1], previous = _window_block(frames, previous, maps, sr)
    feats = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return feats.astype(np.float32)


_EPS = float(np.finfo(np.float64).eps)  # pyAudioAnalysis's eps (sys.float_info.epsilon)
N_SUB_BLOCKS = 10  # pyAudioAnalysis's n_short_blocks of the energy and spectral entropies
ROLLOFF = 0.90  # share of the spectral energy below the roll-off frequency
N_MFCC = 13


@functools.lru_cache(maxsize=8)
def _spectral_maps(sr: int, win: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pyAudioAnalysis's MFCC filter bank (40, n_fft), the first 13 rows of its orthonormal DCT-II
    as a matrix (40, 13), and its chroma map (12, n_fft), each made by its own functions.

    ``chroma_features`` is linear in the power spectrum before its division by the spectrum's sum
    (its ``C[num_chroma] = spec`` keeps the last bin of each chroma index, divides by a count and
    folds 12 ways), so its columns are its outputs for the unit spectra.
    """
    stf = _short_term_features_module()
    num_fft = int(win / 2)
    fbank, _ = stf.mfcc_filter_banks(sr, num_fft)
    dct = stf.dct(np.eye(fbank.shape[0]), type=2, norm="ortho", axis=-1)[:, :N_MFCC]
    chroma = np.stack([np.asarray(stf.chroma_features(e, sr, num_fft)[1]).ravel() for e in np.eye(num_fft)], axis=1)
    return fbank, dct, chroma


def _window_block(frames: np.ndarray, previous: np.ndarray | None, maps, sr: int):
    """The 34 features (34, n) of the windows ``frames`` (n, win), as pyAudioAnalysis's functions
    compute them one window at a time; ``previous`` is the magnitude spectrum of the window
    before the first (None at the clip's start: the first flux is 0). Returns the features and
    the last window's magnitude spectrum."""
    fbank, dct, chroma = maps
    n, win = frames.shape
    num_fft = int(win / 2)
    out = np.empty((34, n))
    out[0] = np.abs(np.diff(np.sign(frames), axis=1)).sum(axis=1) / 2 / (win - 1.0)
    power = frames ** 2
    out[1] = power.sum(axis=1) / win
    out[2] = _block_entropy(power, N_SUB_BLOCKS)
    mag = np.abs(np.fft.rfft(frames, axis=1))[:, :num_fft] / num_fft
    ind = np.arange(1, num_fft + 1) * (sr / (2.0 * num_fft))
    peak = mag.max(axis=1, keepdims=True)
    xt = mag / np.where(peak == 0, _EPS, peak)
    den = xt.sum(axis=1) + _EPS
    centroid = (xt * ind).sum(axis=1) / den
    spread = np.sqrt((((ind[None, :] - centroid[:, None]) ** 2) * xt).sum(axis=1) / den)
    out[3], out[4] = centroid / (sr / 2.0), spread / (sr / 2.0)
    spec = mag ** 2
    out[5] = _block_entropy(spec, N_SUB_BLOCKS)
    before = np.concatenate([(mag[:1] if previous is None else previous[None, :]), mag[:-1]])
    now_share = mag / (mag + _EPS).sum(axis=1, keepdims=True)
    before_share = before / (before + _EPS).sum(axis=1, keepdims=True)
    out[6] = ((now_share - before_share) ** 2).sum(axis=1)
    total = spec.sum(axis=1)
    above = (np.cumsum(spec, axis=1) + _EPS) > (ROLLOFF * total)[:, None]
    out[7] = np.where(above.any(axis=1), above.argmax(axis=1) / float(num_fft), 0.0)
    out[8:21] = (np.log10(mag @ fbank.T + _EPS) @ dct).T
    c = spec @ chroma.T / np.where(total == 0, _EPS, total)[:, None]
    out[21:33] = c.T
    out[33] = c.std(axis=1)
    return out, mag[-1].copy()


def _block_entropy(power: np.ndarray, n_blocks: int) -> np.ndarray:
    """pyAudioAnalysis's energy_entropy / spectral_entropy of each row of ``power`` (squared values)."""
    sub = power.shape[1] // n_blocks
    s = power[:, :sub * n_blocks].reshape(len(power), n_blocks, sub).sum(axis=2) / (power.sum(axis=1) + _EPS)[:, None]
    return -(s * np.log2(s + _EPS)).sum(axis=1)


PITCH_BLOCK = 256  # windows per block of the pitch tracker (~6 s of audio at a 25 ms hop; ~25 MB)


def pitch_track(audio: np.ndarray, sr: int, *, window: float = WINDOW, step: float = STEP,
                fmin: float = F0_MIN, fmax: float = F0_MAX) -> np.ndarray:
    """Pitch and voicing of every window, on the same windows as :func:`short_term_features`.

    Normalised autocorrelation: in each window the first ``window - 1/fmin`` seconds are
    correlated with the signal ``lag`` samples later, divided by both segments' energies,
    for lags between ``1/fmax`` and ``1/fmin``; the best lag (refined by a parabola) is
    the period.

    Returns
    -------
    float32 (2, n_frames): row 0 the pitch estimate in Hz (``fmin..fmax``; meaningful only
    where the window is voiced), row 1 the voicing strength, the normalised autocorrelation
    at that lag (-1..1; above :data:`VOICED` the window is voiced). All finite.

    Raises
    ------
    NoAudioError
        If the signal is shorter than one analysis window.
    ParameterError
        If the window is too short to hold two periods of ``fmin`` and ``fmax`` together.
    """
    win, hop = window_samples(sr, window=window, step=step)
    norm = _Normalised(audio, sr, win)
    lag_min, lag_max = max(1, int(sr // fmax)), int(np.ceil(sr / fmin))
    span = win - lag_max  # samples correlated at every lag
    if lag_max <= lag_min or span < 2 * lag_min:
        raise ParameterError(f"a {window * 1000:.0f} ms window is too short to track pitch between {fmin:g} and "
                         f"{fmax:g} Hz; use a window of at least {(lag_max + 2 * lag_min) / sr * 1000:.0f} ms")
    n = 1 + (len(norm) - win) // hop
    grid = _PitchGrid(win, hop, span, lag_min, lag_max, sr, fmin, fmax)
    # Windows are independent: work through them in blocks so memory stays bounded on long
    # recordings (10 minutes at once took ~1.5 GB; a block of PITCH_BLOCK windows ~30 MB).
    out = np.empty((2, n), np.float32)
    for start in range(0, n, PITCH_BLOCK):
        idx = np.arange(start, min(n, start + PITCH_BLOCK))
        x = norm.block(start * hop, (idx[-1]) * hop + win) / _INT16_SCALE
        out[:, idx] = _pitch_block(x, idx - start, grid)
    return out


class _PitchGrid(NamedTuple):
    """The pitch tracker's analysis: window and hop (samples), samples correlated at every lag, the lags
    searched (samples), the sample rate and the pitch range (Hz)."""
    win: int
    hop: int
    span: int
    lag_min: int
    lag_max: int
    sr: int
    fmin: float
    fmax: float


def _pitch_block(x: np.ndarray, idx: np.ndarray, grid: _PitchGrid) -> np.ndarray:
    """Pitch and voicing (2, len(idx)) of the windows ``idx`` of the normalised signal ``x``."""
    win, hop, span, lag_min, lag_max, sr, fmin, fmax = grid
    n = len(idx)
    frames = x[np.arange(win)[None, :] + hop * idx[:, None]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(win + span)))
    head = np.fft.rfft(frames[:, :span], nfft)
    whole = np.fft.rfft(frames, nfft)
    corr = np.fft.irfft(np.conj(head) * whole, nfft)[:, :lag_max + 1]  # corr[:, t] = sum_j x[j] x[j + t]
    csum = np.cumsum(np.pad(frames ** 2, ((0, 0), (1, 0))), axis=1)
    lags = np.arange(lag_max + 1)
    e_head = csum[:, span] - csum[:, 0]
    e_lag = csum[:, lags + span] - csum[:, lags]
    with np.errstate(all="ignore"):
        nacf = corr / np.sqrt(e_head[:, None] * e_lag + 1e-20)
    nacf = np.nan_to_num(nacf[:, lag_min:lag_max + 1], nan=0.0, posinf=0.0, neginf=0.0)
    rows = np.arange(n)
    k = nacf.argmax(axis=1)
    best = nacf[rows, k]
    kk = np.clip(k, 1, nacf.shape[1] - 2)
    a, b, c = nacf[rows, kk - 1], nacf[rows, kk], nacf[rows, kk + 1]
    den = a - 2 * b + c
    with np.errstate(all="ignore"):
        offset = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / den, 0.0)
    offset = np.where(k == kk, np.clip(np.nan_to_num(offset), -1.0, 1.0), 0.0)
    f0 = np.clip(sr / (lag_min + k + offset), fmin, fmax * 1.05)
    return np.stack([f0, np.clip(best, -1.0, 1.0)])


def window_features(audio: np.ndarray, sr: int, *, window: float = WINDOW, step: float = STEP) -> np.ndarray:
    """Everything the feature sets need, per window: 34 short-term features + pitch + voicing.

    The matrix can be sliced by window (``frames[:, a:b]`` covers ``a * step`` to
    ``b * step + window`` seconds) and summarised with :func:`frame_statistics` for any
    feature set.

    Returns
    -------
    float32 (36, n_frames), rows in :data:`WINDOW_FEATURE_NAMES` order, all finite

    Raises
    ------
    NoAudioError
        If the signal is shorter than one analysis window.
    """
    return np.concatenate([short_term_features(audio, sr, window=window, step=step),
                           pitch_track(audio, sr, window=window, step=step)])


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """The clip played ``factor`` times faster (pitch and formants shift with it), same sample rate.

    Used to augment training data: a 0.9x and a 1.1x copy of every training clip make the voice
    model less tied to the few voices it was trained on.

    Returns
    -------
    float32 (round(n / factor),)
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    if not 0.5 <= factor <= 2.0:
        raise ParameterError(f"speed factor must be between 0.5 and 2, got {factor}")
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if factor == 1.0:
        return x.astype(np.float32)
    f = Fraction(factor).limit_denominator(100)
    return resample_poly(x, f.denominator, f.numerator).astype(np.float32)


PERTURBATIONS = ("noise", "reverb")  # train-audio --perturb: copies of a training clip besides speed
NOISE_SNR_DB = (10.0, 20.0)  # pink noise, this many dB below the clip's speech (uniform)
REVERB_RT60_S = (0.3, 0.9)  # synthetic room: 60 dB decay time, seconds (uniform)


def speech_power(audio: np.ndarray, sr: int, *, active_db: float = ACTIVE_DB) -> float:
    """Mean power of the clip's 50 ms windows within ``active_db`` dB of its loudest (its speech)."""
    x = np.asarray(audio, dtype=np.float64)
    n = max(1, int(0.05 * sr))
    m = len(x) // n
    if m == 0:
        return float(np.mean(x * x)) if len(x) else 0.0
    power = (x[:m * n].reshape(m, n) ** 2).mean(1)
    return float(power[power >= power.max() * 10.0 ** (-active_db / 10.0)].mean())


def add_noise(audio: np.ndarray, sr: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The clip with pink (1/f) noise ``snr_db`` dB below its speech power (:func:`speech_power`).

    Returns
    -------
    float32, same length
    """
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if not len(x):
        return x.astype(np.float32)
    spec = np.fft.rfft(rng.standard_normal(len(x)))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
    noise = np.fft.irfft(spec, n=len(x))
    noise *= np.sqrt(speech_power(x, sr) / max(float(np.mean(noise * noise)), 1e-20) * 10.0 ** (-snr_db / 10.0))
    return (x + noise).astype(np.float32)


def add_reverb(audio: np.ndarray, sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """The clip in a synthetic room: convolved with a direct path plus exponentially decaying noise
    (60 dB down after ``rt60`` s), cut to the clip's length.

    Returns
    -------
    float32, same length
    """
    from scipy.signal import fftconvolve

    x = np.nan_to_num(np.asarray(audio, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    t = np.arange(int(min(rt60, 1.5) * sr)) / sr
    rir = rng.standard_normal(len(t)) * np.exp(-6.908 * t / rt60) * 0.1
    rir[0] = 1.0
    rir /= np.sqrt(np.sum(rir * rir))
    return fftconvolve(x, rir)[:len(x)].astype(np.float32)


def perturb(audio: np.ndarray, sr: int, copy: float | str, *, seed: int = 0) -> np.ndarray:
    """One augmented copy of a clip: a speed factor (float; 1.0 = as recorded) or a name of
    :data:`PERTURBATIONS`, whose random level is drawn from ``seed``."""
    if isinstance(copy, str) and copy in PERTURBATIONS:
        rng = np.random.default_rng(seed)
        if copy == "noise":
            return add_noise(audio, sr, float(rng.uniform(*NOISE_SNR_DB)), rng)
        return add_reverb(audio, sr, float(rng.uniform(*REVERB_RT60_S)), rng)
    try:
        factor = float(copy)
    except (TypeError, ValueError):
        raise ParameterError(f"unknown augmentation {copy!r}: a speed factor or one of {', '.join(PERTURBATIONS)}") from None
    return speed_perturb(audio, factor)


def active_frames(frames: np.ndarray, *, active_db: float = ACTIVE_DB) -> np.ndarray:
    """Boolean mask (n_frames,) of windows within ``active_db`` dB of the clip's loudest window.

    Falls back to every window when fewer than :data:`MIN_ACTIVE` would be kept (very short
    or silent clips).
    """
    energy = np.asarray(frames[_ENERGY], dtype=np.float64)
    top = energy.max() if energy.size else 0.0
    if not top > 0:
        return np.ones(energy.shape, bool)
    mask = energy >= top * 10.0 ** (-active_db / 10.0)
    if mask.sum() < MIN_ACTIVE:
        return np.ones(energy.shape, bool)
    return mask


def _pitch_statistics(pitch: np.ndarray, active: np.ndarray) -> np.ndarray:
    """17 values: log2-pitch mean, std, percentiles, 5-95 and 25-75 ranges, mean/std of its
    window-to-window change, share of active windows that are voiced, voicing mean, std,
    10th/50th/90th percentiles."""
    f0, strength = np.asarray(pitch[0], np.float64), np.asarray(pitch[1], np.float64)
    voiced = active & (strength > VOICED)
    if voiced.sum() < MIN_VOICED:
        voiced = active
    logf = np.log2(np.maximum(f0, 1.0))
    lf = logf[voiced]
    pct = np.percentile(lf, PITCH_PERCENTILES)
    both = voiced[1:] & voiced[:-1]
    # octave jumps of the tracker are capped at one octave so they cannot dominate
    step = np.minimum(np.abs(np.diff(logf))[both], 1.0) if both.any() else np.zeros(1)
    s = strength[active]
    return np.array([lf.mean(), lf.std(), *pct, pct[-1] - pct[0], pct[3] - pct[1], step.mean(), step.std(),
                     voiced.sum() / max(int(active.sum()), 1), s.mean(), s.std(),
                     *np.percentile(s, RICH_PERCENTILES)])


def frame_statistics(frames: np.ndarray, *, feature_set: str = DEFAULT_FEATURE_SET,
                     pitch: np.ndarray | None = None) -> np.ndarray:
    """Summarise short-term features into one clip vector.

    Parameters
    ----------
    frames : (36, n_frames) from :func:`window_features`, or (34, n_frames) from
        :func:`short_term_features` (then ``rich`` needs ``pitch``)
    feature_set : ``"thesis68"`` (mean and std of each of the 34 features over every window;
        68 values, the 34 means first) or ``"rich"`` (see the module docstring; 289 values)
    pitch : (2, n_frames) from :func:`pitch_track` on the same windows; by default the last
        two rows of 36-row ``frames``

    Returns
    -------
    float32 (d,), all finite; d = :func:`feature_dimension`

    Raises
    ------
    ParameterError
        For an unknown feature set, frames that are not (34, n >= 1), or a missing or
        misaligned ``pitch`` for a set that needs it.
    """
    _check_feature_set(feature_set)
    if feature_set not in _FRAME_SET or feature_set in ENCODER_SETS:
        raise ParameterError(f"feature set {feature_set!r} holds the speech-encoder embedding: compute it from the "
                         "audio with clip_feature_sets (or clip_vector with embedding=)")
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] not in (N_FEATURES, len(WINDOW_FEATURE_NAMES)) or f.shape[1] < 1:
        raise ParameterError(f"frames must have shape ({N_FEATURES} or {len(WINDOW_FEATURE_NAMES)}, n_frames >= 1), "
                         f"got {np.shape(frames)}")
    if pitch is None and f.shape[0] > N_FEATURES:
        pitch = f[N_FEATURES:]
    f = np.nan_to_num(f[:N_FEATURES], nan=0.0, posinf=0.0, neginf=0.0)
    if feature_set == "thesis68":
        parts = [f.mean(axis=1), f.std(axis=1)]
    else:
        if pitch is None:
            raise ParameterError(f"feature set {feature_set!r} needs the pitch track: pass the 36-row "
                             "window_features(audio, sr) instead of short_term_features, or pitch=pitch_track(...)")
        p = np.nan_to_num(np.asarray(pitch, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if p.shape != (2, f.shape[1]):
            raise ParameterError(f"pitch must have shape (2, {f.shape[1]}) to match the frames, got {p.shape}")
        mask = active_frames(f)
        a = f[:, mask]
        pct = np.percentile(a, RICH_PERCENTILES, axis=1)
        # deltas between consecutive windows, kept where the later window is active
        d = np.diff(f, axis=1)[:, mask[1:]] if f.shape[1] > 1 else np.zeros((N_FEATURES, 0))
        if d.shape[1] == 0:
            d = np.zeros((N_FEATURES, 1))
        parts = [a.mean(axis=1), a.std(axis=1), *pct, pct[-1] - pct[0], d.std(axis=1), np.abs(d).mean(axis=1),
                 _pitch_statistics(p, mask)]
    out = np.concatenate(parts).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def clip_feature_sets(audio: np.ndarray, sr: int, *, feature_sets: Iterable[str] = (DEFAULT_FEATURE_SET,),
                      window: float = WINDOW, step: float = STEP) -> dict[str, np.ndarray]:
    """Several clip vectors from one pass over the signal, e.g. the model's and ``thesis68``.

    Returns
    -------
    dict feature set -> float32 (d,)

    Raises
    ------
    NoAudioError
        If the signal is shorter than one analysis window.
    """
    sets = [_check_feature_set(fs) for fs in feature_sets]
    frames = embedding = None
    if any(fs in NEEDS_PITCH for fs in sets):
        frames = window_features(audio, sr, window=window, step=step)
    elif any(fs in _FRAME_SET for fs in sets):
        frames = short_term_features(audio, sr, window=window, step=step)
    if any(fs in ENCODER_SETS for fs in sets):

        embedding = embed(_validate_audio(audio, sr, 2).astype(np.float32), sr, shipped_encoder())
    return {fs: clip_vector(fs, frames=frames, embedding=embedding) for fs in sets}


def clip_vector(feature_set: str, *, frames: np.ndarray | None = None, embedding: np.ndarray | None = None
                ) -> np.ndarray:
    """A clip's vector of ``feature_set`` from its window features and/or its encoder embedding.

    Parameters
    ----------
    frames : window features (see :func:`frame_statistics`); needed unless the set is ``whisper``
    embedding : float (768,) from :func:`emocli.voice.encoder.embed`; needed for ``whisper*`` sets

    Returns
    -------
    float32 (d,), finite; for ``whisper+rich`` the embedding first, then the 289 rich statistics
    """
    _check_feature_set(feature_set)
    parts = []
    if feature_set in ENCODER_SETS:
        if embedding is None or np.shape(embedding) != (ENCODER_DIMENSION,):
            raise ParameterError(f"feature set {feature_set!r} needs the ({ENCODER_DIMENSION},) speech-encoder embedding")
        parts.append(np.nan_to_num(np.asarray(embedding, np.float32), nan=0.0, posinf=0.0, neginf=0.0))
    if feature_set in _FRAME_SET:
        if frames is None:
            raise ParameterError(f"feature set {feature_set!r} needs the clip's window features")
        parts.append(frame_statistics(frames, feature_set=_FRAME_SET[feature_set]))
    return np.concatenate(parts).astype(np.float32)


def clip_statistics(audio: np.ndarray, sr: int, *, feature_set: str = DEFAULT_FEATURE_SET,
                    window: float = WINDOW, step: float = STEP) -> np.ndarray:
    """One feature vector for a whole clip.

    Parameters
    ----------
    audio : float or int array (n,), mono, any scale
    sr : sample rate in Hz
    feature_set : one of :data:`FEATURE_SETS` (``"thesis68"``: 68 values)
    window, step : seconds

    Returns
    -------
    float32 (d,), all finite; d = :func:`feature_dimension`

    Raises
    ------
    NoAudioError
        If the signal is shorter than one analysis window.
    ParameterError
        For an unknown feature set or a malformed signal.
    """
    return clip_feature_sets(audio, sr, feature_sets=(feature_set,), window=window, step=step)[feature_set]


def settings(*, feature_set: str, window: float = WINDOW, step: float = STEP, sr: int = SAMPLE_RATE) -> dict:
    """The settings a saved voice model must be fed with (stored in voice.json)."""
    out = {"feature_set": _check_feature_set(feature_set), "window_s": window, "step_s": step,
           "sample_rate": sr, "dimension": feature_dimension(feature_set), "n_features_per_frame": N_FEATURES}
    if feature_set != "thesis68":
        out.update(active_db=ACTIVE_DB, f0_min_hz=F0_MIN, f0_max_hz=F0_MAX, voiced_threshold=VOICED)
    if feature_set in ENCODER_SETS:

        out.update(encoder=ve.ENCODER_FILE, encoder_sha256=ve.ENCODER_SHA256, encoder_source=ve.ENCODER_SOURCE,
                   encoder_pooling="mean and std of the frames within active_db of the loudest; padding excluded",
                   encoder_window_s=f"the clip zero-padded to whole {ve.PAD_TO_SECONDS:g} s, at most {ve.MAX_SECONDS} s")
    return out
