"""Where one clip's time goes, stage by stage (issue 33, item 1).

Start-up (importing emo and loading every model, bundle check included) is timed in a fresh
process; then one ``Pipeline.run`` per clip under cProfile, its time split by the functions
that make each stage (cumulative seconds: a stage's own callees are inside it). Clips: the
2-s example and the same looped to ``--long`` seconds (``ffmpeg -stream_loop``)::

    python bench/stages.py                    # the 2-s example and a 60-s loop of it
    python bench/stages.py --long 600 --clip examples/1001_DFA_ANG_XX.avi

Stages overlap only where one calls another (the face head's features come from the emo-cnn
pass, the VAD's level meter from the gate); the last row is the run's wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# stage: (file suffix, function name) pairs whose cumulative time makes it
STAGES = {
    "decode video (ffmpeg, frames)": [("media/ffmpeg.py", "iter_frames")],
    "face detection (YuNet)": [("face/detect.py", "__call__")],
    "alignment (warp to the template)": [("face/experts.py", "align_face")],
    "crops -> network input": [("face/model.py", "prepare_faces")],
    "emo-cnn (all views)": [("face/model.py", "score_inputs")],
    "MobileFaceNet (rafdb expert)": [("face/experts.py", "logits")],
    "face head": [("face/experts.py", "predict_proba")],
    "decode audio (ffmpeg)": [("media/ffmpeg.py", "load_audio")],
    "voice gate (Silero VAD)": [("voice/activity.py", "probabilities")],
    "pyAudioAnalysis statistics": [("voice/features.py", "short_term_features"),
                                   ("voice/features.py", "window_features")],
    "Whisper encoder": [("voice/encoder.py", "embed")],
    "voice SVM": [("voice/model.py", "predict_proba")],
    "fusion": [("fusion.py", "fuse_clip"), ("fusion.py", "fuse")],
}

STARTUP = """
import time, sys
t0 = time.perf_counter()
from emocli.pipeline.core import Pipeline
t1 = time.perf_counter()
p = Pipeline()
p.face_model; p.voice_model
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    out = {}
    for stage, keys in STAGES.items():
        total = 0.0
        for (file, _, name), (_, _, _, cum, _) in stats.stats.items():
            if any(file.endswith(f"emocli/{suffix}") and name == fn for suffix, fn in keys):
                total += cum
        out[stage] = total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", type=Path, default=REPO / "examples" / "1001_DFA_HAP_XX.avi")
    ap.add_argument("--long", type=float, default=60.0, help="seconds of the looped clip")
    args = ap.parse_args()
    from emocli.media.ffmpeg import ffmpeg_exe
    from emocli.pipeline.core import Pipeline

    out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True, cwd=REPO)
    imports, load = (float(v) for v in out.stdout.split())
    with tempfile.TemporaryDirectory() as tmp:
        long_clip = Path(tmp) / f"loop{args.long:g}{args.clip.suffix}"
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-stream_loop", "-1", "-i", str(args.clip),
                        "-t", str(args.long), "-c", "copy", str(long_clip)], check=True)
        pipe = Pipeline()
        pipe.run(args.clip)  # warm: first calls build interpreters and caches
        columns = {}
        for name, clip in ((f"{args.clip.name}", args.clip), (f"{args.long:g}-s loop", long_clip)):
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            res = pipe.run(clip)
            prof.disable()
            wall = time.perf_counter() - t0
            columns[name] = (stage_times(pstats.Stats(prof)), wall, res)
    print(f"start-up in a fresh process: imports {imports:.2f} s, models (bundle check included) {load:.2f} s\n")
    names = list(columns)
    print("| stage | " + " | ".join(f"{n} (s)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{columns[n][0][stage]:.3f}" for n in names) + " |")
    print("| **run, wall (profiled)** | " + " | ".join(f"**{columns[n][1]:.3f}**" for n in names) + " |")
    for n in names:
        r = columns[n][2]
        print(f"\n{n}: {r.label}, {r.frames_used} face frames of {r.frames_seen}, {r.duration} s")


if __name__ == "__main__":
    main()
