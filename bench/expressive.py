"""Faces and voices as users send them: held-out still faces shown as video, with a held-out voice.

Each clip (issue 27's construction): a 480x480 mid-grey frame with one held-out face image
(``heldout_faces.py``: FER2013's held-out training faces, the RAF-DB, AffectNet and SFEW test
halves; ``--halves calib`` takes the calib halves instead, for choices) scaled to 240 px wide in
the centre, looped as MJPEG at 25 fps for the length of an utterance of the same emotion by a
held-out speaker (RAVDESS actors 02, 03, 15, 16 and EmoDB speakers 03 and 08: the voice model's
held-out speakers; EmoDB has no surprise), that utterance as the sound. ``--per-label`` clips per
emotion, faces spread over the four corpora, seeded.

Reported per clip: face, voice and fused accuracy, clips where no face was found in any frame,
clips whose voice the gate rejected, and the same face images through the image path
(``predict --no-detect``; with ``--face-width`` under 240, the face as the clip shows it) side by side::

    python scripts/heldout_lists.py ../shared/data --out runs/heldout
    python bench/expressive.py --workdir runs/expressive --per-label 30
    # another checkout's code (the same clips), for a before/after table:
    git worktree add /tmp/old HEAD~5
    python bench/expressive.py --workdir runs/expressive --per-label 30 --source /tmp/old
    # faces far from the camera: 48 px wide in the frame, under the face head's 64 px
    python bench/expressive.py --workdir runs/expressive --per-label 30 --face-width 48

Pipeline settings (``--detector``, ``--tta``) are passed through when the checkout has them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--source" in sys.argv:  # another checkout's emocli, ahead of the installed (editable) one
    _src = sys.argv[sys.argv.index("--source") + 1]
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, str(Path(_src).resolve()))

from heldout_faces import heldout_faces, sample  # noqa: E402

import emocli  # noqa: E402
from emocli.labels import LABELS  # noqa: E402
from emocli.media.ffmpeg import ffmpeg_exe, read_image  # noqa: E402
from emocli.pipeline.core import Pipeline  # noqa: E402
from emocli.pipeline.options import Options

FRAME = 480
FACE_WIDTH = 240
RAVDESS_EMOTION = {"01": "neutral", "03": "happy", "04": "sad", "05": "anger", "06": "fear", "07": "disgust",
                   "08": "surprise"}
EMODB_EMOTION = {"W": "anger", "E": "disgust", "A": "fear", "F": "happy", "N": "neutral", "T": "sad"}
HELD_OUT_RAVDESS = ("02", "03", "15", "16")
HELD_OUT_EMODB = ("03", "08")


def heldout_voices(data: Path) -> dict[str, list[Path]]:
    """{emotion: utterances of the voice model's held-out speakers}, sorted."""
    out: dict[str, list[Path]] = {lab: [] for lab in LABELS}
    for actor in HELD_OUT_RAVDESS:
        for p in sorted((data / "ravdess" / f"Actor_{actor}").glob("*.flac")):
            lab = RAVDESS_EMOTION.get(p.stem.split("-")[2])
            if lab:
                out[lab].append(p)
    for p in sorted((data / "emodb").glob("*.flac")):
        if p.stem[:2] in HELD_OUT_EMODB and p.stem[5] in EMODB_EMOTION:
            out[EMODB_EMOTION[p.stem[5]]].append(p)
    return out


def make_clip(face: np.ndarray, voice: Path, out: Path, width: int = FACE_WIDTH) -> None:
    """The face (RGB or grey) ``width`` px wide on a mid-grey 480x480 frame, looped as MJPEG for the voice's length."""
    if face.ndim == 2:
        face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
    h, w = face.shape[:2]
    nh = round(h * width / w)
    interp = cv2.INTER_CUBIC if width >= w else cv2.INTER_AREA
    small = cv2.resize(face, (width, nh), interpolation=interp)
    canvas = np.full((FRAME, FRAME, 3), 128, np.uint8)
    y0, x0 = (FRAME - nh) // 2, (FRAME - width) // 2
    canvas[max(0, y0):y0 + nh, x0:x0 + width] = small[max(0, -y0):max(0, -y0) + min(nh, FRAME)]
    png = out.with_suffix(".png")
    cv2.imwrite(str(png), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "25", "-i", str(png),
                    "-i", str(voice), "-map", "0:v", "-map", "1:a", "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p",
                    "-c:a", "pcm_s16le", "-ar", "16000", "-ac", "1", "-shortest", str(out)], check=True)
    png.unlink()


def shown(clip: dict, width: int) -> str:
    """The face image the image path scores: as it is, or, for faces shown smaller than it, the pixels
    the clip shows (resized to ``width`` as ``make_clip`` resizes it), written once beside the clip."""
    if width >= FACE_WIDTH:
        return clip["face"]
    path = Path(clip["clip"]).with_suffix(".face.png")
    if path.is_file():
        return str(path)
    img = read_image(Path(clip["face"]))
    h, w = img.shape[:2]
    if w <= width:
        return clip["face"]
    small = cv2.resize(img, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if small.ndim == 3 else small)
    return str(path)


def build(args) -> list[dict]:
    """The clips (made once into ``--workdir``): [{clip, face, voice, label, corpus}]."""
    work = args.workdir / (f"{args.halves}-{args.per_label}"
                           + (f"-w{args.face_width}" if args.face_width != FACE_WIDTH else ""))
    index = work / "clips.json"
    if index.is_file():
        return json.loads(index.read_text())
    work.mkdir(parents=True, exist_ok=True)
    faces = sample(heldout_faces(args.data, args.heldout, halves=args.halves), args.per_label)
    voices = heldout_voices(args.data)
    rng = np.random.default_rng(0)
    for lab in voices:
        rng.shuffle(voices[lab])
    used = {lab: 0 for lab in LABELS}
    clips = []
    for k, (path, label, corpus) in enumerate(faces):
        voice = voices[label][used[label] % len(voices[label])]
        used[label] += 1
        out = work / f"{k:04d}_{label}_{corpus}.avi"
        make_clip(read_image(path), voice, out, args.face_width)
        clips.append({"clip": str(out), "face": str(path), "voice": str(voice), "label": label, "corpus": corpus})
    index.write_text(json.dumps(clips, indent=1))
    return clips


def options(**kw) -> Options:
    have = {f.name for f in dataclasses.fields(Options)}
    return Options(**{k: v for k, v in kw.items() if v is not None and k in have})


def top(scores: dict | None) -> str | None:
    return None if scores is None else max(scores, key=scores.get)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--heldout", type=Path, default=Path("runs/heldout"))
    ap.add_argument("--workdir", type=Path, default=Path("runs/expressive"))
    ap.add_argument("--per-label", type=int, default=30)
    ap.add_argument("--halves", choices=("test", "calib"), default="test")
    ap.add_argument("--face-width", type=int, default=FACE_WIDTH, help="the face's width in the 480-px frame, px "
                    "(48: a face far from the camera, under the face head's 64 px)")
    ap.add_argument("--detector", default=None)
    ap.add_argument("--tta", default=None)
    ap.add_argument("--json", type=Path, help="also write the per-clip records here")
    ap.add_argument("--bundle", type=Path, help="score with this bundle (default: the shipped one)")
    ap.add_argument("--source", type=Path, help="score with the emocli of this checkout (clips are shared)")
    ap.add_argument("--yunet-box-scale", type=float, help="faces.YUNET_BOX_SCALE for this run (a choice, on calib)")
    args = ap.parse_args()
    clips = build(args)
    if args.yunet_box_scale:
        from emocli.face import detect as faces_module

        faces_module.YUNET_BOX_SCALE = args.yunet_box_scale
    print(f"emocli from {Path(emocli.__file__).parent}; {len(clips)} clips ({args.halves} halves)", file=sys.stderr)
    video = Pipeline(args.bundle, options=options(detector=args.detector, tta=args.tta))
    image = Pipeline(args.bundle, options=options(detect=False, use_voice=False))
    recs = []
    t0 = time.perf_counter()
    for c in clips:
        r = video.run(c["clip"])
        im = image.run(shown(c, args.face_width))
        notes = " ".join(r.notes)
        recs.append({**c, "status": r.status, "face": top(r.face_scores), "voice": top(r.voice_scores),
                     "fused": top(r.scores), "image": top(im.face_scores), "no_face": r.face_scores is None,
                     "gated": r.voice_scores is None, "notes": r.notes, "seconds": r.seconds,
                     "face_image": c["face"]})
        if r.voice_scores is None and "no speech" not in notes and r.status == "ok":
            print(f"  voice missing without a gate note: {c['clip']}: {notes}", file=sys.stderr)
    wall = time.perf_counter() - t0
    n = len(recs)

    def acc(key, sel=lambda r: True):
        rs = [r for r in recs if sel(r)]
        return sum(r[key] == r["label"] for r in rs) / max(1, len(rs)), len(rs)

    print(f"\n{n} clips, {args.per_label} per emotion; {args.halves} halves; {wall:.0f} s "
          f"({sum(r['seconds'] for r in recs) / n:.2f} s per clip inside the run)\n")
    print("| set | clips | no face found | voice gated | face (video) | face (image path) | voice | fused |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sel in [("all", lambda r: True)] + [(c, lambda r, c=c: r["corpus"] == c)
                                                  for c in ("fer2013", "rafdb", "affectnet", "sfew")]:
        rs = [r for r in recs if sel(r)]
        if not rs:
            continue
        print(f"| {name} | {len(rs)} | {sum(r['no_face'] for r in rs)} | {sum(r['gated'] for r in rs)} | "
              f"{acc('face', sel)[0]:.3f} | {acc('image', sel)[0]:.3f} | {acc('voice', sel)[0]:.3f} | "
              f"{acc('fused', sel)[0]:.3f} |")
    print("\nper emotion (face video / image / voice / fused):")
    for lab in LABELS:
        sel = (lambda r, lab=lab: r["label"] == lab)
        print(f"  {lab:9s} " + " / ".join(f"{acc(k, sel)[0]:.2f}" for k in ("face", "image", "voice", "fused")))
    if args.json:
        args.json.write_text(json.dumps(recs, indent=1))


if __name__ == "__main__":
    main()
