"""Draw a result on its input: ``emo predict CLIP --annotate OUT.mp4``.

Every frame of the clip is written again, at its own size and rate and with its sound, showing
the box of each face scored (the main one; every track's with ``--faces all``) with its face
label, and a small bar chart of the fused scores. Faces are scored on sampled frames (``--fps``),
so each scored frame's drawing is held over the frames until the next one, for at most one
sampling step: where no face was found, no box is drawn and the bars show the voice alone.
A frame's fused scores are its face scores fused with the voice scores of its ``--window``
segment, else of the whole clip (the rule a segment's fused scores follow).

:func:`draw_frame` is pure (an array in, an array out); decoding and encoding go through
:mod:`emocli.media.ffmpeg`.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emocli.errors import MediaError
from emocli.files import atomic_path
from emocli.labels import emotion_rgb
from emocli.media.ffmpeg import VideoWriter, frame_rate, iter_frames, media_seconds, probe, read_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAIN_COLOUR = (60, 220, 60)  # RGB: the main face's box
OTHER_COLOUR = (255, 170, 40)  # other faces' boxes (--faces all)


class FrameResults:
    """What to draw at any time of a clip, from its result's per-frame records (``Result.frames``).

    ``fusion``: the pipeline's :class:`~emocli.fusion.FusionModel`; ``step``: seconds between
    scored frames (how long a scored frame's drawing is held).
    """
    def __init__(self, res, fusion, *, step: float):
        self.res, self.fusion, self.step = res, fusion, step
        by_time: dict[float, list[dict[str, Any]]] = {}
        for rec in res.frames or []:
            by_time.setdefault(rec["time"], []).append(rec)
        self.times = sorted(by_time)
        self.faces = [by_time[t] for t in self.times]
        self.segments = res.segments or []
        self.starts = [seg["start"] for seg in self.segments]

    def at(self, t: float) -> tuple[list[dict[str, Any]], dict[str, float] | None, str]:
        """(face records, fused scores or None, what scored them) to draw at ``t`` seconds."""
        k = bisect.bisect_right(self.times, t + 1e-6) - 1
        faces = self.faces[k] if k >= 0 and t - self.times[k] < self.step - 1e-6 else []
        main = next((f for f in faces if f.get("main", True)), None)
        voice = self._voice(t)
        if main is None and voice is None:
            return faces, None, ""
        face = None if main is None else self._array(main["face_scores"])
        fused = self.fusion.fuse(face, None if voice is None else self._array(voice))
        what = "fused" if face is not None and voice is not None else "face" if face is not None else "voice"
        return faces, {lab: float(v) for lab, v in zip(self.fusion.labels, fused)}, what

    def _voice(self, t: float) -> dict[str, float] | None:
        """The voice scores of ``t``'s segment (None between segments), else of the whole clip."""
        if not self.segments:
            return self.res.voice_scores
        k = bisect.bisect_right(self.starts, t) - 1
        if k < 0 or (t >= self.segments[k]["end"] and k < len(self.segments) - 1):
            return None
        return self.segments[k].get("voice_scores")

    def _array(self, scores: dict[str, float]) -> np.ndarray:
        return np.array([scores.get(lab, np.nan) for lab in self.fusion.labels], np.float64)


def draw_frame(frame: np.ndarray, faces: list[dict[str, Any]], scores: dict[str, float] | None,
               what: str = "fused") -> np.ndarray:
    """A copy of ``frame`` (uint8 RGB (H, W, 3)) with each face's box and face score, and ``scores`` as bars
    on a panel (titled ``what``) in the corner that covers the faces least. Face records are
    ``Result.frames`` entries: ``box`` (x, y, w, h in the frame's pixels, or None), ``face_scores``,
    and with ``--faces all`` ``track`` and ``main``. Text and panel scale with the frame (readable on
    a 144-px-high image); bars take each emotion's colour (:data:`emocli.labels.EMOTION_COLOURS`)."""
    import cv2

    out = np.ascontiguousarray(frame, np.uint8).copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 480)
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, 0.42 * scale), max(1, round(scale * 1.5))
    boxes = []
    for f in faces:
        if f.get("box") is None:
            continue
        bx, by, bw, bh = f["box"]
        x0, y0, x1, y1 = (int(round(v)) for v in (bx, by, bx + bw, by + bh))
        boxes.append((x0, y0, x1, y1))
        colour = MAIN_COLOUR if f.get("main", True) else OTHER_COLOUR
        line = max(2, round(2 * scale))
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), line + 2)  # a dark outline: the box shows on any background
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, line)
        label = max(f["face_scores"], key=f["face_scores"].get)
        text = (f"#{f['track']} " if "track" in f else "") + f"face: {label} {f['face_scores'][label]:.2f}"
        _label(out, text, (x0, y0), colour, font, max(0.3, 0.5 * scale), thick)
    if scores:
        _bars(out, scores, what, font, size, thick, scale, boxes)
    return out


def _label(img: np.ndarray, text: str, corner: tuple[int, int], colour, font, size: float, thick: int) -> None:
    """``text`` on a filled box of ``colour`` just above ``corner`` (below it at the top edge)."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, font, size, thick)
    x, y = corner
    top = y - th - base - 4 if y - th - base - 4 >= 0 else y
    cv2.rectangle(img, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
    cv2.putText(img, text, (x + 2, top + th + 2), font, size, (0, 0, 0), thick, cv2.LINE_AA)


def panel_corner(shape: tuple[int, ...], size: tuple[int, int], boxes) -> tuple[int, int]:
    """The top-left pixel (x, y) of a ``size`` (width, height) panel in the corner of an image of ``shape``
    that overlaps the face ``boxes`` (x0, y0, x1, y1) least; top-left first when several do not overlap."""
    h, w = shape[:2]
    pw, ph = size
    best = None
    for x, y in ((0, 0), (w - pw, 0), (0, h - ph), (w - pw, h - ph)):
        cover = sum(max(0, min(x + pw, x1) - max(x, x0)) * max(0, min(y + ph, y1) - max(y, y0))
                    for x0, y0, x1, y1 in boxes)
        if best is None or cover < best[0]:
            best = (cover, (max(0, x), max(0, y)))
    return best[1]


def _bars(img: np.ndarray, scores: dict[str, float], what: str, font, size: float, thick: int, scale: float,
          boxes) -> None:
    """A bar per emotion, in its colour, on a darkened panel where the faces are not; the top emotion's
    name and value in white, the others in grey."""
    import cv2

    th = cv2.getTextSize("Ag", font, size, thick)[0][1]
    row, pad = max(int(round(18 * scale)), th + 5), max(2, int(round(6 * scale)))
    bar_w = int(round(90 * scale))
    name_w = max(cv2.getTextSize(lab, font, size, thick)[0][0] for lab in scores)
    value_w = cv2.getTextSize("0.00", font, size, thick)[0][0]
    pw, ph = min(img.shape[1], pad * 4 + name_w + bar_w + value_w), min(img.shape[0], row * (len(scores) + 1) + pad * 2)
    px, py = panel_corner(img.shape, (pw, ph), boxes)
    panel = img[py:py + ph, px:px + pw]
    panel[:] = (panel * 0.3).astype(np.uint8)  # darkened, not hidden
    top = max(scores, key=scores.get)
    cv2.putText(img, what, (px + pad, py + pad + row - 5), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    for i, (lab, v) in enumerate(scores.items(), start=1):
        y = py + pad + row * (i + 1) - 5
        text = (255, 255, 255) if lab == top else (190, 190, 190)
        cv2.putText(img, lab, (px + pad, y), font, size, text, thick, cv2.LINE_AA)
        x = px + pad * 2 + name_w
        cv2.rectangle(img, (x, y - row + 6), (x + max(1, int(round(v * bar_w))), y), emotion_rgb(lab), -1)
        cv2.putText(img, f"{v:.2f}", (x + bar_w + pad, y), font, size, text, thick, cv2.LINE_AA)


def check_target(source: Path, target: Path, *, image: bool) -> None:
    """Refuse an output the annotation cannot be written to, before anything is decoded.

    Raises
    ------
    MediaError
        Naming ``target`` and the fix: a wrong extension, a folder, or the input itself.
    """
    suffixes = IMAGE_SUFFIXES if image else VIDEO_SUFFIXES
    if target.exists() and target.resolve() == source.resolve():
        raise MediaError(f"{target}: is the input itself; write the annotation to another file")
    if target.is_dir():
        raise MediaError(f"{target}: is a folder; name a file in it, e.g. {target / ('annotated' + suffixes[0])}")
    if target.suffix.lower() not in suffixes:
        kind = "a still image is annotated as an image" if image else "the annotated video is H.264 with AAC sound"
        raise MediaError(f"{target}: {kind}; name the file {', '.join(suffixes[:-1])} or {suffixes[-1]}")


def annotate(source: Path, target: Path, res, fusion, *, fps: float | None, max_seconds: float | None = None,
             progress: Callable[[float, float | None], None] | None = None) -> None:
    """Write ``source`` with ``res`` drawn on it to ``target`` (a temporary name, renamed when complete).

    ``fps``: the rate faces were scored at (None: every frame); ``progress(done, total)`` gets the
    seconds written.

    Raises
    ------
    MediaError
        If ``target`` is refused (see :func:`check_target`) or ffmpeg cannot write it.
    """
    source, target = Path(source), Path(target)
    info = probe(source)
    if not info.has_video:
        raise MediaError(f"{source}: has no picture to draw on (audio only); --annotate takes a video or image file")
    check_target(source, target, image=info.is_image)
    results = FrameResults(res, fusion, step=1.0 / (fps or info.fps or 25.0))
    if info.is_image:
        _annotate_image(source, target, results)
        return
    rate = info.fps or 25.0
    total = media_seconds(info, max_seconds)
    with atomic_path(target, suffix=target.suffix) as tmp:
        with VideoWriter(tmp, width=info.width, height=info.height, rate=frame_rate(rate), audio_from=info,
                         max_seconds=max_seconds, display=target) as out:
            for ts, frames in iter_frames(source, fps=None, info=info, max_side=max(info.width, info.height),
                                          max_seconds=max_seconds):
                for t, frame in zip(ts, frames):
                    out.write(draw_frame(frame, *results.at(float(t))))
                if progress is not None:
                    progress(min(float(ts[-1]) + 1.0 / rate, total or float("inf")), total)


def _annotate_image(source: Path, target: Path, results: FrameResults) -> None:
    import cv2

    img = draw_frame(read_image(source), *results.at(0.0))
    with atomic_path(target, suffix=target.suffix) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise MediaError(f"{target}: the image could not be written; check the folder is writable")
