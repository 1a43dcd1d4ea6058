"""What the voice-activity gate costs: the VAD's milliseconds per clip, in process, on the example clips.

    python bench/vad.py                  # the six examples/*.avi, 5 runs each, medians
    OPENBLAS_NUM_THREADS=1 python bench/vad.py

The audio is decoded once per clip (as `emo predict` decodes it: 16 kHz mono); only
``SileroVAD.probabilities`` is timed, after the weights are loaded (load time printed apart).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.media.ffmpeg import load_audio
    from emocli.voice.activity import VAD_FILE, SileroVAD

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    vad = SileroVAD.load(DEFAULT_BUNDLE / VAD_FILE)
    load_ms = 1e3 * (time.perf_counter() - t0)
    load0 = os.getloadavg()[0]
    rows = []
    for clip in sorted((REPO / "examples").glob("*.avi")):
        audio = load_audio(clip)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            vad.probabilities(audio)
            times.append(1e3 * (time.perf_counter() - t))
        rows.append((clip.name, len(audio) / 16000, statistics.median(times)))
    print(f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(default)')}; weights loaded in {load_ms:.0f} ms\n")
    print("| clip | audio s | VAD ms (median) |")
    print("|---|---|---|")
    for name, seconds, ms in rows:
        print(f"| {name} | {seconds:.2f} | {ms:.1f} |")
    print(f"| median | | {statistics.median(ms for *_, ms in rows):.1f} |")


if __name__ == "__main__":
    main()
