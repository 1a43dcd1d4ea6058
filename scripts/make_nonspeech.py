"""Write a small set of generated non-speech clips (16 kHz mono wav), to measure the voice gate.

Music (chords and arpeggios with harmonics, a drum-like loop, both together), white and pink
noise at three levels, applause-like bursts of noise and a 440 Hz tone, each ``--seconds`` long,
seeded. With ``--video CLIP`` each is also muxed under the picture of CLIP (looped), so that
``emo predict`` sees a face and this audio.

    python scripts/make_nonspeech.py runs/nonspeech --video examples/1001_DFA_NEU_XX.avi
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

SR = 16000  # Hz


def _note(f0: float, t: np.ndarray, *, harmonics: int = 6) -> np.ndarray:
    """A plucked-string-like note: harmonics falling as 1/h, an exponential decay."""
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1))
    return x * np.exp(-3.0 * t)


def chords(t: np.ndarray) -> np.ndarray:
    """I-vi-IV-V in C, one chord a second, three notes with harmonics."""
    out = np.zeros_like(t)
    prog = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    for k in range(int(np.ceil(t[-1]))):
        sel = (t >= k) & (t < k + 1)
        out[sel] = sum(_note(f, t[sel] - k) for f in prog[k % len(prog)])
    return out


def arpeggio(t: np.ndarray) -> np.ndarray:
    """Eighth notes at 120 bpm up and down a C-major arpeggio over two octaves."""
    notes = [261.6, 329.6, 392.0, 523.3, 659.3, 784.0, 659.3, 523.3, 392.0, 329.6]
    out = np.zeros_like(t)
    step = 0.25
    for k in range(int(np.ceil(t[-1] / step))):
        sel = (t >= k * step) & (t < (k + 1) * step + 0.5)
        out[sel] += _note(notes[k % len(notes)], t[sel] - k * step)
    return out


def drums(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 120 bpm loop: kick on the beats (a falling sine), snare on 2 and 4 (noise), hi-hat on eighths."""
    out = np.zeros_like(t)
    for k in range(int(np.ceil(t[-1] / 0.25))):
        t0 = k * 0.25
        sel = (t >= t0) & (t < t0 + 0.25)
        u = t[sel] - t0
        if k % 2 == 0:  # kick
            out[sel] += np.sin(2 * np.pi * (50 * u + 100 * (1 - np.exp(-30 * u)) / 30)) * np.exp(-12 * u)
        if k % 4 == 2:  # snare
            out[sel] += 0.6 * rng.standard_normal(sel.sum()) * np.exp(-20 * u)
        hat = np.diff(rng.standard_normal(sel.sum() + 1))  # differenced noise: mostly high frequencies
        out[sel] += 0.15 * hat * np.exp(-60 * u)
    return out


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0))
    x = np.fft.irfft(spec, n)
    return x / x.std()


def applause(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Many hands: about 60 claps a second at random times, each a 10 ms band of noise."""
    out = np.zeros_like(t)
    for start in rng.uniform(0, t[-1], int(60 * t[-1])):
        i = int(start * SR)
        n = min(len(t) - i, int(0.03 * SR))
        u = np.arange(n) / SR
        out[i:i + n] += np.diff(rng.standard_normal(n + 1)) * np.exp(-150 * u) * rng.uniform(0.3, 1.0)
    return out


def at_rms_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x ** 2)) * 10 ** (dbfs / 20)


def clips(seconds: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * SR)) / SR
    n = len(t)
    out = {"chords": at_rms_dbfs(chords(t), -20), "arpeggio": at_rms_dbfs(arpeggio(t), -20),
           "drums": at_rms_dbfs(drums(t, rng), -20),
           "band": at_rms_dbfs(at_rms_dbfs(arpeggio(t), -20) + at_rms_dbfs(drums(t, rng), -23), -18),
           "applause": at_rms_dbfs(applause(t, rng), -22), "tone440": at_rms_dbfs(np.sin(2 * np.pi * 440 * t), -15)}
    for level in (-45, -30, -15):
        out[f"white{level}"] = at_rms_dbfs(rng.standard_normal(n), level)
        out[f"pink{level}"] = at_rms_dbfs(pink(n, rng), level)
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in out.items()}


def write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--video", type=Path, help="also mux each clip under this clip's picture (looped)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.video:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    for name, x in clips(args.seconds).items():
        wav = args.out / f"{name}.wav"
        write_wav(wav, x)
        if args.video:
            subprocess.run([ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-stream_loop", "-1", "-i",
                            str(args.video), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "mpeg4",
                            "-q:v", "5", "-c:a", "aac", "-t", str(args.seconds), str(args.out / f"{name}.mp4")],
                           check=True)
        print(f"{name}: {len(x) / SR:.1f} s, peak {np.abs(x).max():.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
