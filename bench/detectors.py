"""Face detectors compared on held-out faces rendered as video frames, and on face-free frames.

Each held-out face (``heldout_faces.py``: FER2013's held-out training faces, the RAF-DB,
AffectNet and SFEW test halves) is pasted on a 480x480 mid-grey frame:

- **size**: the face image's width 10 % to 90 % of the frame's, centred, upright, colour;
- **rotation**: 35 % of the frame, turned by +-15 and +-30 degrees;
- **border**: 35 % of the frame, a third of the face outside the frame (left, right, top or bottom);
- **grey**: 35 % of the frame, converted to grey.

A face is found when a detection's centre lies within 30 % of the face width of the face's
centre and its width is 35-160 % of the face image's. False positives: detections of at least
24 px (emo's smallest face) on generated face-free frames (noise at several grains, textures,
stripes, checkerboards, gradients, random shapes) and on the sides of the example clips' frames
(a real room, no face). Milliseconds per 480x480 frame, one thread
of work as ``emo predict`` gives it (the process's own threads): frames with a face, face-free
frames one by one (as images: every second look taken), and face-free frames as one video
(second looks rationed, :func:`emocli.face.detect.detect_in_frame`). Also printed: where each
detector's box sits on the face image (width, centre offset), which ``faces.CROP_FRAMING``
turns into the crop the networks learned from::

    python scripts/heldout_lists.py ../shared/data --out runs/heldout
    python bench/detectors.py --data ../shared/data --heldout runs/heldout --per-label 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout_faces import heldout_faces, sample  # noqa: E402

from emocli.face.detect import (BlazeFaceDetector, FaceTracker, HaarDetector, YuNetDetector,  # noqa: E402
                                detect_in_frame)
from emocli.media.ffmpeg import read_image  # noqa: E402

FRAME = 480
GREY = 128
SIZES = (0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
MID = 0.35


def render(face: np.ndarray, *, width: float, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
           grey: bool = False) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(a FRAME x FRAME RGB frame with ``face`` on mid-grey, (centre x, centre y, face width) in its pixels).

    ``width``: the face image's width as a share of the frame; ``angle``: degrees counter-clockwise;
    ``shift``: the face centre's offset from the frame centre, in face widths.
    """
    if face.ndim == 2:
        face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
    if grey:
        face = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    h, w = face.shape[:2]
    fw = width * FRAME
    s = fw / w
    cx, cy = FRAME / 2 + shift[0] * fw, FRAME / 2 + shift[1] * fw
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, s)
    m[:, 2] += (cx - w / 2, cy - h / 2)
    canvas = np.full((FRAME, FRAME, 3), GREY, np.uint8)
    out = cv2.warpAffine(face, m, (FRAME, FRAME), dst=canvas, flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_TRANSPARENT)
    return out, (cx, cy, fw)


def face_free(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` generated frames with no face: noise at several grains, textures, stripes, checkerboards,
    gradients and random shapes, in colour."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        kind = k % 6
        if kind == 0:  # noise, blurred to a random grain
            img = rng.integers(0, 256, (FRAME, FRAME, 3)).astype(np.uint8)
            g = int(rng.choice([1, 3, 9, 21, 41]))
            img = cv2.GaussianBlur(img, (g, g), 0) if g > 1 else img
            img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
        elif kind == 1:  # texture: sum of random sinusoids
            y, x = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32)
            img = np.zeros((FRAME, FRAME, 3), np.float32)
            for _ in range(6):
                f, th, ph = rng.uniform(0.01, 0.2), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
                img += np.sin(f * (x * np.cos(th) + y * np.sin(th)) + ph)[..., None] * rng.uniform(0, 1, 3)
            img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        elif kind == 2:  # stripes
            period = int(rng.integers(4, 80))
            y, x = np.mgrid[0:FRAME, 0:FRAME]
            band = ((x + y * rng.uniform(-1, 1)) // period % 2).astype(np.uint8)
            img = np.where(band[..., None] > 0, rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8)
        elif kind == 3:  # checkerboard
            c = int(rng.integers(8, 120))
            y, x = np.mgrid[0:FRAME, 0:FRAME]
            img = ((((x // c) + (y // c)) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
        elif kind == 4:  # gradient
            y, x = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32) / FRAME
            img = np.stack([x, y, 1 - x * y], -1) * rng.uniform(50, 255, 3)
            img = img.astype(np.uint8)
        else:  # random shapes: ellipses and rectangles (round blobs are what fools a face detector)
            img = np.full((FRAME, FRAME, 3), rng.integers(0, 256, 3), np.uint8)
            for _ in range(int(rng.integers(3, 15))):
                col = tuple(int(v) for v in rng.integers(0, 256, 3))
                cx, cy = (int(v) for v in rng.integers(0, FRAME, 2))
                if rng.random() < 0.5:
                    ax = tuple(int(v) for v in rng.integers(10, 150, 2))
                    cv2.ellipse(img, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, col, -1)
                else:
                    w, h = (int(v) for v in rng.integers(10, 200, 2))
                    cv2.rectangle(img, (cx, cy), (cx + w, cy + h), col, -1)
        out.append(np.ascontiguousarray(img))
    return out


def real_backgrounds() -> list[np.ndarray]:
    """Face-free frames from real video: the left and right thirds of the example clips' frames (the actor
    sits in the middle third), each stretched to the frame."""
    from emocli.media.ffmpeg import iter_frames

    out = []
    for clip in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.avi")):
        for _, frames in iter_frames(clip, fps=5):
            for f in frames:
                w = f.shape[1]
                for part in (f[:, :w // 3], f[:, 2 * w // 3:]):
                    out.append(cv2.resize(np.ascontiguousarray(part), (FRAME, FRAME)))
    return out


def found(dets, cx: float, cy: float, fw: float):
    """The detection that finds the face at (cx, cy) of width fw, or None."""
    for d in dets:
        dx, dy = d.center
        if np.hypot(dx - cx, dy - cy) <= 0.3 * fw and 0.35 * fw <= d.width <= 1.6 * fw:
            return d
    return None


def make_detector(name: str, makers: dict):
    """``yunet@0.5``: YuNet with another confidence threshold; ``yunet~0.75~1.5``: YuNet looking again at
    these sizes where it found nothing; else one of ``makers``."""
    if name.startswith("yunet@"):
        return YuNetDetector(min_confidence=float(name[6:]), retry_scales=())
    if name.startswith("yunet~"):
        return YuNetDetector(retry_scales=tuple(float(f) for f in name.split("~")[1:]))
    return makers[name]()


def conditions() -> list[tuple[str, dict]]:
    """(condition name, render keywords), in the table's column order."""
    out = [(f"size {int(s * 100)}%", {"width": s}) for s in SIZES]
    out += [(f"rot {a}", {"width": MID, "angle": a}) for a in (15, 30)]
    out += [("border", {"width": MID, "shift": "border"}), ("grey", {"width": MID, "grey": True})]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--heldout", type=Path, default=Path("runs/heldout"))
    ap.add_argument("--per-label", type=int, default=30, help="faces per emotion (spread over the four corpora)")
    ap.add_argument("--halves", choices=("test", "calib"), default="test", help="calib: for choices (a threshold)")
    ap.add_argument("--face-free", type=int, default=300, help="generated frames with no face")
    ap.add_argument("--detectors", default="yunet,yunet1,blazeface,haar",
                    help="comma list: yunet (the default), yunet1 (one pass, no second look), yunet320 (one pass at "
                         "320 px), yunet@T (one pass, threshold T), yunet~F~G (a frame with no face looked at again at "
                         "F, then G times the size), blazeface, haar")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    faces = sample(heldout_faces(args.data, args.heldout, halves=args.halves), args.per_label)
    images = [read_image(p) for p, _, _ in faces]
    makers = {"yunet": lambda: YuNetDetector(), "yunet320": lambda: YuNetDetector(side=320, retry_scales=()),
              "yunet1": lambda: YuNetDetector(retry_scales=()),
              "blazeface": lambda: BlazeFaceDetector(), "haar": lambda: HaarDetector()}
    conds = conditions()
    rng = np.random.default_rng(1)
    # the same random signs and border sides for every detector
    signs = rng.choice([-1, 1], len(images))
    off = 1 / 6 - 1 / (2 * MID)  # face widths from the frame centre: a third of the face outside the frame
    sides = [[(off, 0.0), (-off, 0.0), (0.0, off), (0.0, -off)][int(k)] for k in rng.integers(0, 4, len(images))]
    frames_free = face_free(args.face_free) + real_backgrounds()
    rows, geometry = [], {}
    for name in args.detectors.split(","):
        # "yunet@0.5": YuNet with another confidence threshold
        det = make_detector(name, makers)
        hits = {c: 0 for c, _ in conds}
        geo = {}
        t_total, n_frames = 0.0, 0
        for k, (img, (_, _, corpus)) in enumerate(zip(images, faces)):
            for cname, kw in conds:
                kw = dict(kw)
                if "angle" in kw:
                    kw["angle"] *= signs[k]
                if kw.get("shift") == "border":
                    kw["shift"] = sides[k]
                frame, (cx, cy, fw) = render(img, **kw)
                t0 = time.perf_counter()
                dets = det(frame)
                t_total += time.perf_counter() - t0
                n_frames += 1
                d = found(dets, cx, cy, fw)
                if d is not None:
                    hits[cname] += 1
                    if cname == f"size {int(MID * 100)}%":
                        geo.setdefault(corpus, []).append((d.width / fw, (d.center[0] - cx) / fw,
                                                           (d.center[1] - cy) / fw, d.height / fw))
        t0 = time.perf_counter()
        free = [[d for d in det(f) if min(d.width, d.height) >= 24] for f in frames_free]
        ms_free = 1000 * (time.perf_counter() - t0) / len(frames_free)
        fp, fp_frames = sum(map(len, free)), sum(1 for d in free if d)
        tracker, t0 = FaceTracker(), time.perf_counter()  # the same frames as one video: second looks rationed
        for f in frames_free:
            detect_in_frame(det, f, tracker)
        ms_video = 1000 * (time.perf_counter() - t0) / len(frames_free)
        rows.append((name, hits, fp, fp_frames, 1000 * t_total / n_frames, ms_free, ms_video))
        geometry[name] = geo
        print(f"{name}: done", file=sys.stderr, flush=True)
    n = len(images)
    print(f"\n{n} held-out faces ({args.per_label} per emotion; FER2013, RAF-DB, AffectNet, SFEW), "
          f"{len(frames_free)} face-free frames, {FRAME}x{FRAME}\n")
    print("| detector | " + " | ".join(c for c, _ in conds)
          + " | all | false positives (frames) | ms/frame with a face | ms/face-free frame | ... in a video |")
    print("|---" * (len(conds) + 7) + "|")
    for name, hits, fp, fp_frames, ms, ms_free, ms_video in rows:
        allr = sum(hits.values()) / (n * len(conds))
        print(f"| {name} | " + " | ".join(f"{hits[c] / n:.3f}" for c, _ in conds)
              + f" | {allr:.3f} | {fp} ({fp_frames}) | {ms:.1f} | {ms_free:.1f} | {ms_video:.1f} |")
    print("\nbox on the face image at 35 % (median width / face width, centre dx, dy in face widths, height):")
    for name, geo in geometry.items():
        for corpus, g in sorted(geo.items()):
            a = np.median(np.array(g), axis=0)
            print(f"  {name:10s} {corpus:9s} n={len(g):3d}  w {a[0]:.3f}  dx {a[1]:+.3f}  dy {a[2]:+.3f}  h {a[3]:.3f}")


if __name__ == "__main__":
    main()
