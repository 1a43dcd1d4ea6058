"""The voice gate, before and after: how many clips of each speech corpus it rejects, and of non-speech.

Speech: every clip of RAVDESS, EmoDB, SAVEE and CREMA-D in ``--data`` (acted speech: the target is
0 rejected). Non-speech: ``scripts/make_nonspeech.py``'s clips (music, drums, noises at three
levels, applause, a tone), plus a microphone hiss at -65 dBFS, a 50 Hz hum and digital silence
made here (the target is all rejected).

- **before**: the gate emo shipped until issue 27: the loudest 50-ms stretch above -50 dBFS, then
  at least 0.3 s of Silero chunks >= 0.3 on the audio as recorded;
- **after**: ``voice_activity.gate_reason`` (a level floor relative to the clip, Silero on the audio
  with its loudest stretch at ``LEVEL_DBFS``, chunks >= ``THRESHOLD``).

``--levels=-20,-26,-32,-38,-44`` also prints how many clips Silero's rule (``THRESHOLD``, 0.3 s) rejects at each
level the audio could be brought to, and the largest chunk probability on non-speech: the table
``LEVEL_DBFS`` was chosen from::

    python scripts/make_nonspeech.py runs/nonspeech
    python bench/gates.py --data ../shared/data --nonspeech runs/nonspeech [--levels=-20,-26,-32,-38,-44]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emocli.voice.levels import window_levels_dbfs
from emocli.bundle import DEFAULT_BUNDLE
from emocli.media.ffmpeg import load_audio
from emocli.voice.activity import (LEVEL_DBFS, SAMPLE_RATE, VAD_FILE, SileroVAD, at_level, gate_reason, has_speech,
                                   speech_seconds)

OLD_FLOOR_DBFS = -50.0
OLD_THRESHOLD = 0.3


def corpora(data: Path, nonspeech: Path) -> dict[str, list]:
    """{set name: [path or (name, samples)]}."""
    sr = SAMPLE_RATE
    t = np.arange(4 * sr) / sr
    rng = np.random.default_rng(0)
    made = [("hiss-65dBFS", rng.standard_normal(len(t)) * 10 ** (-65 / 20)),
            ("hum50Hz", 0.05 * np.sin(2 * np.pi * 50 * t) + 0.02 * np.sin(2 * np.pi * 150 * t)),
            ("silence", np.zeros(len(t)))]
    return {"RAVDESS": sorted(data.glob("ravdess/*/*.flac")), "EmoDB": sorted(data.glob("emodb/*.flac")),
            "SAVEE": sorted(data.glob("savee/*.flac")),
            "CREMA-D": sorted([*data.glob("cremad/*.flv"), *data.glob("cremad/*.mp3"), *data.glob("cremad/*.wav")]),
            "non-speech": [*sorted(nonspeech.glob("*.wav")), *made]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--nonspeech", type=Path, default=Path("runs/nonspeech"))
    ap.add_argument("--levels", default="", help="comma list of dBFS levels for the choice table")
    args = ap.parse_args()
    vad = SileroVAD.load(DEFAULT_BUNDLE / VAD_FILE)
    levels_asked = [float(v) for v in args.levels.split(",") if v.strip()]
    print("| set | clips | rejected before | rejected after | least speech s after | rejected at "
          + " | ".join(f"{v:g}" for v in levels_asked) + " |")
    print("|---" * (6 + len(levels_asked)) + "|")
    examples = []
    for name, items in corpora(args.data, args.nonspeech).items():
        before = after = 0
        least = float("inf")
        at = {v: [0, 0.0] for v in levels_asked}  # rejected, largest chunk probability
        for it in items:
            label, x = (it if isinstance(it, tuple) else (it.name, load_audio(it, sr=SAMPLE_RATE)))
            x = np.asarray(x, np.float32)
            lv = window_levels_dbfs(x, SAMPLE_RATE)
            loud = float(lv.max()) if len(lv) else float("-inf")
            raw, _ = vad.probabilities(x)
            if loud < OLD_FLOOR_DBFS or not has_speech(raw, threshold=OLD_THRESHOLD):
                before += 1
            p, _ = vad.probabilities(at_level(x, lv))
            why = gate_reason(p, lv)
            after += why is not None
            least = min(least, speech_seconds(p))
            if (why is not None) != (name == "non-speech"):
                examples.append(f"{name} {label}: {why or 'passed'}")
            for v in levels_asked:
                q, _ = vad.probabilities(x * (10 ** ((v - loud) / 20) if np.isfinite(loud) else 1.0))
                at[v][0] += not has_speech(q)
                at[v][1] = max(at[v][1], float(q.max()) if len(q) else 0.0)
        cells = " | ".join(f"{r} (max p {m:.2f})" if name == "non-speech" else str(r) for r, m in at.values())
        print(f"| {name} | {len(items)} | {before} | {after} | {least:.2f} | {cells} |", flush=True)
    print(f"\nafter: the loudest 50-ms stretch brought to {LEVEL_DBFS:g} dBFS before Silero")
    for e in examples:
        print("  wrong way:", e)


if __name__ == "__main__":
    main()
