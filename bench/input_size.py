"""What a larger or colour input would cost emo-cnn per face on this CPU (issue 17's input choice).

Builds emo-cnn (``video_model.build_emo_cnn``, untrained weights: the cost does not depend on
them) at each input, exports it as ``predict`` runs it on a CPU (``export_lite`` -> LiteRT, fc2
features and scores, the bundle's thread setting) and times batches of random faces; Keras
(``predict_on_batch``) is timed beside it. A video frame is scored as the crop and its mirror
(two network passes), a still image with the bundle's views (four), so the per-face figure is
per network pass. Wall time moves with anything else on the machine: the CPU seconds of the
process are printed too, with the load average.

    python bench/input_size.py                       # 48 grey, 64 grey/RGB, 96 grey/RGB
    python bench/input_size.py --batch 32 --repeat 30 --inputs 48x1,96x3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def time_calls(fn, x: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median wall seconds and mean CPU seconds of ``fn(x)`` over ``repeat`` calls (after 3 warm-ups)."""
    for _ in range(3):
        fn(x)
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.mean(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", default="48x1,64x1,64x3,96x1,96x3", help="SIZExCHANNELS, comma-separated")
    ap.add_argument("--batch", type=int, default=32, help="faces per call (predict's default batch)")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    from emocli.labels import LABELS
    from emocli.face.lite import LiteNetwork, export_lite
    from emocli.face.networks import build_emo_cnn, feature_network

    rng = np.random.default_rng(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average at start "
          f"{os.getloadavg()[0]:.2f}; batch {args.batch}, {args.repeat} calls, median wall / mean CPU")
    print("| input | parameters | LiteRT wall ms/face | LiteRT CPU ms/face | Keras wall ms/face | Keras CPU ms/face |"
          " face.tflite MB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.inputs.split(","):
            size, channels = (int(v) for v in spec.split("x"))
            net = build_emo_cnn(size=size, channels=channels)
            lite_bytes = export_lite(net)
            path = Path(tmp) / f"{spec}.tflite"
            path.write_bytes(lite_bytes)
            lite = LiteNetwork(path, len(LABELS))
            x = rng.uniform(0, 255, (args.batch, size, size, channels)).astype(np.float32)
            lw, lc = time_calls(lite, x, args.repeat)
            feat = feature_network(net)
            kw, kc = time_calls(feat.predict_on_batch, x, args.repeat)
            n = args.batch
            print(f"| {size}x{size} {'grey' if channels == 1 else 'RGB'} | {net.count_params():,} | "
                  f"{1000 * lw / n:.3f} | {1000 * lc / n:.3f} | {1000 * kw / n:.3f} | {1000 * kc / n:.3f} | "
                  f"{len(lite_bytes) / 1e6:.1f} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
