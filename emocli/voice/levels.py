"""Levels of a clip: how loud each 50 ms stretch is, how far speech rises above the clip's own floor,
and which windows count as active. The voice features, the speech encoder and the speech gate
all read levels the same way, from here.
"""

from __future__ import annotations

import numpy as np

LEVEL_WINDOW = 0.050  # seconds: levels are measured over the voice features' analysis window
LEVEL_BLOCK = 1 << 18  # samples per block when measuring levels (16 s at 16 kHz): memory per block
ACTIVE_DB = 30.0  # dB: windows this much quieter than the clip's loudest window count as silence
MIN_ACTIVE = 4  # windows: with fewer active windows than this, every window is used
SILENCE_DBFS = -50.0  # dB full scale: speech at any usable recording level has a 50 ms window louder than
# this; digital silence (-inf) and an idle microphone's hiss (about -60 to -70) stay below. Features are
# computed on peak-normalised audio, so without this check silence is amplified and classified. Bundles
# with a voice-activity model use a floor relative to the clip instead (activity.gate_reason),
# which keeps whispered and far-off speech.


def window_levels_dbfs(audio: np.ndarray, sr: int, *, window: float = LEVEL_WINDOW) -> np.ndarray:
    """Level of each consecutive ``window``-second stretch (DC removed), in dB relative to full scale.

    Returns float64 (n_windows,), ``-inf`` for digital silence; empty when the audio is shorter
    than one window. Computed per block (memory per block, plus 8 bytes per window).
    """
    x = np.asarray(audio)
    win = max(1, int(round(window * sr)))
    n = len(x) // win
    if n == 0:
        return np.zeros(0)
    total, count = 0.0, 0  # the mean of the finite samples (a NaN would make every level NaN), by blocks
    for a in range(0, len(x), LEVEL_BLOCK):
        b = x[a:a + LEVEL_BLOCK].astype(np.float64)
        ok = np.isfinite(b)
        total, count = total + float(b[ok].sum()), count + int(ok.sum())
    mean = total / count if count else 0.0
    out = np.empty(n)
    per_block = max(1, LEVEL_BLOCK // win)
    for a in range(0, n, per_block):
        b = min(n, a + per_block)
        w = x[a * win:b * win].astype(np.float64).reshape(b - a, win) - mean
        w[~np.isfinite(w)] = 0.0
        out[a:b] = np.sqrt(np.mean(w * w, axis=1))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(out)


def loudest_window_dbfs(audio: np.ndarray, sr: int, *, window: float = LEVEL_WINDOW) -> float:
    """Level of the loudest ``window``-second stretch, in dB relative to full scale (float audio in [-1, 1]).

    Returns ``-inf`` for digital silence or audio shorter than one window; memory per block.
    """
    levels = window_levels_dbfs(audio, sr, window=window)
    return float(levels.max()) if len(levels) else float("-inf")


def level_range_db(levels: np.ndarray, *, floor_share: float = 0.1) -> float:
    """How far the loudest window stands above the clip's own floor (the level that ``floor_share`` of
    its windows stay under), in dB: speech rises and falls by 14 dB and more (syllables, pauses),
    a steady hiss, hum or tone by a few dB. 0 for digital silence or no window."""
    levels = np.asarray(levels, np.float64)
    if len(levels) == 0 or not np.isfinite(levels.max()):
        return 0.0
    floor = np.percentile(np.maximum(levels, levels.max() - 120.0), 100 * floor_share)
    return float(levels.max() - floor)
