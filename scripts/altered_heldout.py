"""Write the held-out speakers' clips altered as users' recordings are: with pink noise at a fixed
SNR, and in a synthetic room of a fixed RT60, as 16 kHz 16-bit WAV files and one CSV manifest per
condition, so any bundle can be scored on them with ``emo evaluate`` (a measurement behind
docs/experiments.md; it trains nothing and writes no shipped file).

    python scripts/altered_heldout.py ../shared/data --out runs/altered
    emo evaluate runs/altered/noise10.csv --modality voice --json

The clips: RAVDESS actors 02, 03, 15, 16 and EmoDB speakers 03, 08, the shipped voice model's
held-out speakers (never trained on, altered or not). The noise and the room are those of
``emo train-audio --perturb noise,reverb`` (:func:`emocli.voice.features.add_noise`,
:func:`~emocli.voice.features.add_reverb`) at one level, drawn from a seed made of the file's name.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np

from emocli.corpus.layouts import detect_layout, load_corpus
from emocli.media.ffmpeg import SAMPLE_RATE, load_audio
from emocli.voice.features import add_noise, add_reverb

HELD_OUT = {"ravdess": ("ravdess_02", "ravdess_03", "ravdess_15", "ravdess_16"), "emodb": ("emodb_03", "emodb_08")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the folder holding ravdess/ and emodb/ (../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("runs/altered"))
    ap.add_argument("--snr", type=float, default=10.0, help="noise: dB below the speech")
    ap.add_argument("--rt60", type=float, default=0.7, help="room: seconds to fall 60 dB")
    args = ap.parse_args()
    from scipy.io import wavfile

    conditions = {f"noise{args.snr:g}": lambda x, rng: add_noise(x, SAMPLE_RATE, args.snr, rng),
                  f"reverb{args.rt60:g}": lambda x, rng: add_reverb(x, SAMPLE_RATE, args.rt60, rng)}
    rows = {name: [] for name in conditions}
    for corpus, speakers in HELD_OUT.items():
        root = args.data / corpus
        for item in load_corpus(root, detect_layout(root)):
            if item.speaker not in speakers:
                continue
            audio = load_audio(item.path, sr=SAMPLE_RATE)
            for name, alter in conditions.items():
                seed = int.from_bytes(hashlib.sha1(f"{item.path.name}|{name}".encode()).digest()[:8], "little")
                out = args.out / name / corpus / (item.path.stem + ".wav")
                out.parent.mkdir(parents=True, exist_ok=True)
                y = alter(audio, np.random.default_rng(seed))
                y = np.clip(y / max(1.0, float(np.abs(y).max())), -1, 1)  # no clipping: scaled down if it would
                wavfile.write(out, SAMPLE_RATE, np.round(y * 32767).astype(np.int16))
                rows[name].append((out.resolve(), item.label, "test", item.speaker))
    for name, items in rows.items():
        with open(args.out / f"{name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("path", "label", "split", "speaker"), *items])
        print(f"wrote {args.out / name}.csv: {len(items)} clips")


if __name__ == "__main__":
    main()
