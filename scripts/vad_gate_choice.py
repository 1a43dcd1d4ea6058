"""How the voice gate's rule was chosen: speech seconds per clip on speech and non-speech, per rule.

Speech: 400 clips drawn (seed 0) from the RAVDESS, EmoDB and SAVEE speakers outside the held-out
manifest; non-speech: the clips of ``scripts/make_nonspeech.py`` (their .wav files). For each
threshold and least number of seconds, how many speech clips the rule would gate and how many
non-speech clips it would let through; then the held-out clips' least speech under the shipped
rule (a margin, not a choice)::

    python scripts/make_nonspeech.py runs/nonspeech
    python scripts/vad_gate_choice.py --data ../shared/data --heldout runs/heldout_voice.csv --nonspeech runs/nonspeech
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emocli.bundle import DEFAULT_BUNDLE  # noqa: E402
from emocli.media.ffmpeg import load_audio  # noqa: E402
from emocli.voice.activity import CHUNK, SAMPLE_RATE, THRESHOLD, VAD_FILE, SileroVAD, speech_seconds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--heldout", type=Path, required=True, help="CSV manifest of the held-out clips (path column)")
    ap.add_argument("--nonspeech", type=Path, required=True, help="folder of scripts/make_nonspeech.py")
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    vad = SileroVAD.load(DEFAULT_BUNDLE / VAD_FILE)
    held = [r["path"] for r in csv.DictReader(args.heldout.open())]
    known = {str(Path(p).resolve()) for p in held}
    data = args.data.resolve()
    pool = sorted(str(p) for p in [*data.glob("ravdess/*/*.flac"), *data.glob("emodb/*.flac"),
                                   *data.glob("savee/*.flac")] if str(p) not in known)
    print(f"{len(pool)} clips outside the {len(held)} held-out ones; {args.n} drawn")
    chosen = list(np.random.default_rng(0).choice(pool, args.n, replace=False))
    speech = [vad.probabilities(load_audio(p, sr=SAMPLE_RATE))[0] for p in chosen]
    nonspeech = {p.name: vad.probabilities(load_audio(p, sr=SAMPLE_RATE))[0]
                 for p in sorted(args.nonspeech.glob("*.wav"))}
    print("non-speech, largest chunk probability: "
          + ", ".join(f"{k} {v.max():.3f}" for k, v in nonspeech.items()))
    print("\n| threshold | least speech s | speech clips gated | non-speech clips passed |\n|---|---|---|---|")
    for thr in (0.3, 0.4, 0.5):
        s = np.array([(p >= thr).sum() * CHUNK / SAMPLE_RATE for p in speech])
        n = np.array([(p >= thr).sum() * CHUNK / SAMPLE_RATE for p in nonspeech.values()])
        for need in (0.2, 0.3, 0.4, 0.5):
            print(f"| {thr} | {need} | {(s < need).sum()} / {len(s)} | {(n >= need).sum()} / {len(n)} |")
    sec = np.array([speech_seconds(vad.probabilities(load_audio(p, sr=SAMPLE_RATE))[0]) for p in held])
    k = int(np.argmin(sec))
    print(f"\nheld-out clips ({len(sec)}), speech seconds at threshold {THRESHOLD}: least {sec.min():.3f} "
          f"({Path(held[k]).name}), median {np.median(sec):.3f}")


if __name__ == "__main__":
    main()
