"""Find the main speaker's face in each frame and crop it.

The thesis's OpenCV Haar detector found walls, clothes and background faces, and its
frame scores were averaged with the real ones. emo's default is YuNet (opencv_zoo's detector, a
small CNN that also returns a confidence and five landmarks; BlazeFace full-range and the Haar
cascade are kept as choices), and it keeps at most one face per frame: the main speaker, chosen
for being large, confident and consistent with the face kept in the previous frames. Frames with
no acceptable face are dropped, never scored. The other faces large enough to score are linked
into tracks across frames (:class:`FaceLinker`): counted by default, cropped and scored too with
``--faces all``.

Pure functions on arrays: nothing here opens media files or prints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocli.bundle import models_dir
from emocli.choices import DEFAULT_DETECTOR, DETECTORS
from emocli.errors import ModelError
from emocli.quiet_imports import lite_interpreter

BLAZEFACE_FULL = "face_detection_full_range_sparse.tflite"
BLAZEFACE_INPUT = 192  # pixels, square input of the full-range model
BLAZEFACE_STRIDE = 4  # one anchor per 4x4 cell: 48 x 48 = 2304 anchors
SCORE_CLIP = 100.0  # raw logits are clipped before the sigmoid (MediaPipe's setting)
NMS_IOU = 0.3  # MediaPipe's weighted-NMS overlap threshold

MIN_CONFIDENCE = 0.6  # BlazeFace detections below this are discarded
YUNET_FILE = "face_detection_yunet_2023mar.onnx"  # detection here, and the landmarks of experts.YuNetLandmarks
# YuNet detections below this are discarded. bench/detectors.py on the calib halves: recall 0.931 at 0.6,
# 0.952 at 0.45, no false positive on 440 face-free frames down to 0.4; but ffmpeg's testsrc2 pattern,
# streamed as MPEG-TS, holds a "face" of scattered squares that YuNet scores 0.58. opencv_zoo's demo uses 0.9.
YUNET_MIN_CONFIDENCE = 0.6
YUNET_DETECT_SIDE = 640  # pixels: frames are resized to at most this longer side for YuNet
# a frame where YuNet finds no face is looked at again at 0.75, then 1.5 times the size: faces that fill the
# frame, and small or turned ones, score over the threshold at another size (bench/detectors.py on the calib
# halves: recall 0.931 -> 0.963, faces of 10 % of the frame 0.757 -> 0.895, of 90 % 0.919 -> 0.981; no false
# positive on 440 face-free frames); a face-free image costs the three passes (video: SECOND_LOOK_EVERY)
YUNET_RETRY_SCALES: tuple[float, ...] = (0.75, 1.5)
YUNET_BOX_SCALE = 1.0  # the square box's side, in YuNet box widths
MIN_FACE = 24  # pixels: smaller faces are too blurred to score (FER2013 crops are 48 px)
MIN_RELATIVE = 0.35  # faces narrower than this share of the frame's largest face are background
CROP_MARGIN = 0.1  # the square crop is the face box grown by 10 % per side: FER2013-like framing
TRACK_IOU = 0.3  # a face continues a track when its box overlaps the track's last box by this much (IoU)
# on a stretch of frames with no face, the detector's second look (YuNetDetector.second_look) is taken on one
# sampled frame in this many (once a second at the default 5 fps), and on every frame while it finds a face:
# a face-free frame then costs about 2 first passes on average instead of 6 (bench/detectors.py)
SECOND_LOOK_EVERY = 5
TRACK_MAX_MISSED = 5  # sampled frames a track may miss (1 s at the default 5 fps) before it ends


@dataclass(frozen=True)
class Detection:
    """A face box in pixel coordinates of the frame it was found in."""
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    # five landmarks (right eye, left eye, nose tip, right and left mouth corner) as ((x, y), ...)
    # in the same pixels, when the detector gives them (YuNet); the alignment then reuses them
    landmarks: tuple[tuple[float, float], ...] | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


def iou(a: Detection, b: Detection) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------
# Detectors


def detector_weights(model_path: Path | str | None, file: str, what: str) -> Path:
    """``model_path``, or the shipped ``models/detectors/<file>``; ModelError naming it when it is missing."""
    path = Path(model_path) if model_path else models_dir() / "detectors" / file
    if not path.is_file():
        raise ModelError(f"{path}: {what} weights missing; reinstall emo (they ship in models/detectors)")
    return path


def _anchors() -> np.ndarray:
    n = BLAZEFACE_INPUT // BLAZEFACE_STRIDE
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    ys, xs = np.meshgrid(c, c, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)  # (2304, 2): x, y centres in [0, 1]


class BlazeFaceDetector:
    """MediaPipe BlazeFace full-range (192x192 input, 2304 anchors) on RGB frames."""
    name = "blazeface"

    def __init__(self, model_path: Path | None = None, *, min_confidence: float = MIN_CONFIDENCE):
        path = self.model_path = detector_weights(model_path, BLAZEFACE_FULL, "BlazeFace")
        self.min_confidence = min_confidence
        self._it = lite_interpreter(path)
        inp = self._it.get_input_details()[0]
        self._in = inp["index"]
        outs = sorted(self._it.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self._boxes, self._scores = outs[0]["index"], outs[1]["index"]
        self._anchors = _anchors()

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB frame (H, W, 3), most confident first."""
        import cv2

        h, w = frame.shape[:2]
        scale = BLAZEFACE_INPUT / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (BLAZEFACE_INPUT - nw) // 2, (BLAZEFACE_INPUT - nh) // 2
        canvas = np.zeros((BLAZEFACE_INPUT, BLAZEFACE_INPUT, 3), np.float32)
        small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas[py:py + nh, px:px + nw] = small.astype(np.float32) / 127.5 - 1.0  # letterbox, [-1, 1]
        self._it.set_tensor(self._in, canvas[None])
        self._it.invoke()
        raw = self._it.get_tensor(self._boxes)[0]
        logits = np.clip(self._it.get_tensor(self._scores)[0, :, 0], -SCORE_CLIP, SCORE_CLIP)
        scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        keep = np.flatnonzero(scores >= self.min_confidence)
        if keep.size == 0:
            return []
        a = self._anchors[keep]
        r = raw[keep, :4] / BLAZEFACE_INPUT
        cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
        bw, bh = r[:, 2], r[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * BLAZEFACE_INPUT
        boxes -= np.array([px, py, px, py], np.float32)
        boxes /= scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return _weighted_nms(boxes, scores[keep])


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged by score."""
    order = np.argsort(-scores)
    dets = [Detection(*map(float, boxes[i]), float(scores[i])) for i in order]
    out: list[Detection] = []
    while dets:
        top = dets[0]
        group = [d for d in dets if iou(top, d) > NMS_IOU]
        rest = [d for d in dets if iou(top, d) <= NMS_IOU]
        wts = np.array([d.score for d in group])
        coords = np.array([[d.x0, d.y0, d.x1, d.y1] for d in group])
        avg = (coords * wts[:, None]).sum(0) / wts.sum()
        out.append(Detection(*map(float, avg), top.score))
        dets = rest
    return out


class YuNetDetector:
    """OpenCV's YuNet (opencv_zoo, 2023mar): faces and five landmarks, on the whole frame.

    The frame is resized so that its longer side is at most ``side`` pixels (YuNet finds faces
    of about 10 px and more, so a 640-px side keeps faces down to ~2 % of the frame width);
    boxes and landmarks are mapped back to the frame's pixels.
    """
    name = "yunet"

    def __init__(self, model_path: Path | None = None, *, min_confidence: float = YUNET_MIN_CONFIDENCE,
                 side: int = YUNET_DETECT_SIDE, retry_scales: tuple[float, ...] = YUNET_RETRY_SCALES):
        self.model_path = detector_weights(model_path, YUNET_FILE, "YuNet")
        self.min_confidence = min_confidence
        self.side = int(side)
        self.retry_scales = tuple(float(f) for f in retry_scales)
        # one network per size looked at, with the input size it is set to: changing a network's input
        # size re-plans it, and alternating sizes on one network cost a third more per frame
        self._nets: dict[float, _SizedNet] = {}
        self._net_for(1.0)

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB frame (H, W, 3) or grey frame (H, W), most confident first.

        A frame where nothing is found is looked at again at each of ``retry_scales`` (times the
        first pass's size) until a face is: a face that fills its part of the frame, or a turned
        one, can score under the threshold at one size and over it at another. Video frames go
        through :func:`detect_in_frame`, which rations the second look on face-free stretches.
        """
        return self.first_pass(frame) or self.second_look(frame)

    def first_pass(self, frame: np.ndarray) -> list[Detection]:
        """Faces found at the first size only."""
        return self._look(frame, (1.0,))

    def second_look(self, frame: np.ndarray) -> list[Detection]:
        """Faces found at the other sizes (``retry_scales``), the first size that finds any."""
        return self._look(frame, self.retry_scales)

    def _look(self, frame: np.ndarray, factors: tuple[float, ...]) -> list[Detection]:
        img = frame if frame.ndim == 3 else _rgb(frame)
        for factor in factors:
            out = self._detect(img, factor)
            if out:
                return out
        return []

    def _net_for(self, factor: float) -> "_SizedNet":
        """The YuNet network for the pass at ``factor`` times the first pass's size."""
        import cv2

        if factor not in self._nets:
            try:
                net = cv2.FaceDetectorYN.create(str(self.model_path), "", (self.side, self.side), self.min_confidence,
                                                NMS_IOU, 50)
            except cv2.error:
                raise ModelError(f"{self.model_path}: not a usable YuNet model; reinstall emo (it ships in "
                                 "models/detectors)") from None
            self._nets[factor] = _SizedNet(net)
        return self._nets[factor]

    def _detect(self, img: np.ndarray, factor: float) -> list[Detection]:
        """Faces YuNet finds in ``img`` shown at ``factor`` times the first pass's size (the frame resized
        so that its longer side is at most ``side``)."""
        import cv2

        h, w = img.shape[:2]
        scale = min(1.0, self.side / max(h, w)) * factor
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
        net = self._net_for(factor)
        if net.size != (nw, nh):
            net.net.setInputSize((nw, nh))
            net.size = (nw, nh)
        _, faces = net.net.detect(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if faces is None:
            return []
        out = []
        for f in faces[np.argsort(-faces[:, 14])]:
            x, y, bw, bh = (float(v) / scale for v in f[:4])
            pts = f[4:14].reshape(5, 2) / scale
            # YuNet's box is taller than wide (brow to chin); emo crops a square around a square box,
            # so it is made square on its width, about its centre, which frames the face as
            # FER2013's crops are framed (bench/detectors.py: the box is 0.83 of a FER2013 face
            # image's width, centred; crop_face's 10 % margin per side then gives that image)
            side = YUNET_BOX_SCALE * bw
            cx, cy = x + bw / 2, y + bh / 2
            out.append(Detection(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, float(f[14]),
                                 landmarks=tuple((float(a), float(b)) for a, b in pts)))
        return out


@dataclass
class _SizedNet:
    """A YuNet network (OpenCV's FaceDetectorYN) and the input size it is set to."""
    net: object
    size: tuple[int, int] | None = None


def _rgb(grey: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: the thesis's detector, kept for comparison."""
    name = "haar"

    def __init__(self, *, min_neighbors: int = 5):
        import cv2

        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelError(f"{path}: OpenCV Haar cascade missing; install opencv-python-headless<5")
        self.min_neighbors = min_neighbors

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        import cv2

        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        rects, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(MIN_FACE, MIN_FACE),
            outputRejectLevels=True)
        dets = [Detection(float(x), float(y), float(x + w), float(y + h), float(1 / (1 + np.exp(-wt))))
                for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).ravel())]
        return sorted(dets, key=lambda d: -d.score)


@functools.lru_cache(maxsize=4)
def get_detector(name: str = DEFAULT_DETECTOR):
    """A cached detector instance: ``yunet`` (default), ``blazeface`` or ``haar``."""
    if name == "yunet":
        return YuNetDetector()
    if name == "blazeface":
        return BlazeFaceDetector()
    if name == "haar":
        return HaarDetector()
    raise ModelError(f"unknown face detector {name!r}; use {', '.join(DETECTORS)}")


# --------------------------------------------------------------------------------------
# Main-speaker selection and cropping


@dataclass
class FaceTracker:
    """Keeps one face per frame: the main speaker.

    Each candidate is rated by confidence x size, times a bonus for overlapping the face kept
    so far (a smoothed box). Faces that are tiny, or much smaller than the largest face in
    the frame, are treated as background and never kept.
    """
    min_face: int = MIN_FACE
    min_relative: float = MIN_RELATIVE
    smoothing: float = 0.6  # weight of the previous track box in the running average
    track_: Detection | None = field(default=None, init=False)
    # frames since the detector's last second look, and whether that look found a face
    since_look_: int = field(default=SECOND_LOOK_EVERY, init=False)
    look_found_: bool = field(default=False, init=False)

    def choose(self, dets: list[Detection], frame_shape: tuple[int, ...]) -> Detection | None:
        dets = [d for d in dets if min(d.width, d.height) >= self.min_face]
        if not dets:
            return None
        largest = max(d.width for d in dets)
        dets = [d for d in dets if d.width >= self.min_relative * largest]
        side = float(min(frame_shape[:2]))

        def rating(d: Detection) -> float:
            r = d.score * min(1.0, d.width / side) ** 0.5
            if self.track_ is not None:
                r *= 0.25 + iou(d, self.track_)
            return r

        best = max(dets, key=rating)
        if self.track_ is None:
            self.track_ = best
        else:
            s = self.smoothing
            t = self.track_
            self.track_ = Detection(s * t.x0 + (1 - s) * best.x0, s * t.y0 + (1 - s) * best.y0,
                                    s * t.x1 + (1 - s) * best.x1, s * t.y1 + (1 - s) * best.y1, best.score)
        return best


@dataclass
class FaceLinker:
    """Links the faces of successive sampled frames into tracks by box overlap.

    Greedy matching: (face, live track) pairs are taken best IoU first while it is at least
    ``min_iou``, each face and track at most once; a face left over starts a new track. A
    track missing from more than ``max_missed`` sampled frames in a row ends: the same face
    seen later starts a new track. Track ids count from 0 in the order tracks start.
    """
    min_iou: float = TRACK_IOU
    max_missed: int = TRACK_MAX_MISSED
    n_tracks_: int = field(default=0, init=False)
    live_: dict[int, tuple[Detection, int]] = field(default_factory=dict, init=False)  # id: (last box, missed)
    main_: set[int] = field(default_factory=set, init=False)  # tracks that held a frame's main face

    def link(self, dets: list[Detection]) -> list[int]:
        """The track id of each face of one frame, in order."""
        pairs = sorted(((iou(d, box), i, k) for i, d in enumerate(dets) for k, (box, _) in self.live_.items()),
                       key=lambda p: -p[0])
        ids: list[int | None] = [None] * len(dets)
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if ids[i] is None and k not in ids:
                ids[i] = k
        for i in range(len(dets)):
            if ids[i] is None:
                ids[i] = self.n_tracks_
                self.n_tracks_ += 1
        for k, (box, missed) in list(self.live_.items()):
            if k not in ids:
                if missed + 1 > self.max_missed:
                    del self.live_[k]
                else:
                    self.live_[k] = (box, missed + 1)
        self.live_.update((k, (d, 0)) for k, d in zip(ids, dets))
        return ids

    def add(self, dets: list[Detection], main: Detection | None, *, min_face: int = MIN_FACE
            ) -> tuple[list[Detection], list[int]]:
        """Link one frame's faces large enough to score (``min_face`` px); ``main`` (one of ``dets``, or None) is
        the face the tracker kept. Returns (those faces, their track ids)."""
        faces = [d for d in dets if min(d.width, d.height) >= min_face]
        ids = self.link(faces)
        self.main_.update(k for d, k in zip(faces, ids) if d is main)
        return faces, ids

    @property
    def others(self) -> int:
        """How many tracks never held the main face."""
        return self.n_tracks_ - len(self.main_)


def crop_face(frame: np.ndarray, det: Detection, *, margin: float = CROP_MARGIN) -> np.ndarray:
    """Square crop around a face, grown by ``margin`` per side; pads with edge pixels at borders.

    Returns uint8 (S, S, 3).
    """
    import cv2

    cx, cy = det.center
    half = max(det.width, det.height) * (0.5 + margin)
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    size = max(2, int(round(2 * half)))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + size - w, y0 + size - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return np.ascontiguousarray(frame[y0:y0 + size, x0:x0 + size])


def detect_in_frame(detector, frame: np.ndarray, tracker: FaceTracker) -> list[Detection]:
    """The faces of one video frame. A detector with a second look (YuNet at other sizes) takes it on a
    frame where its first pass finds none, if that look found a face on the frame before, or once in
    ``SECOND_LOOK_EVERY`` frames otherwise; the tracker keeps the count for its video."""
    if not hasattr(detector, "second_look"):
        return detector(frame)
    dets = detector.first_pass(frame)
    if dets:
        return dets
    tracker.since_look_ += 1
    if not (tracker.look_found_ or tracker.since_look_ >= SECOND_LOOK_EVERY):
        return []
    dets = detector.second_look(frame)
    tracker.since_look_, tracker.look_found_ = 0, bool(dets)
    return dets


def faces_in_frames(frames: np.ndarray, *, detector, tracker: FaceTracker, margin: float = CROP_MARGIN,
                    linker: FaceLinker | None = None) -> tuple[list[int], list[np.ndarray], list[Detection]]:
    """Detect, choose and crop the main face in each frame of a chunk.

    With a ``linker``, the other faces large enough to score are linked into its tracks too (so
    that they can be counted), not cropped. Returns (indices of frames that had a face, crops,
    detections).
    """
    idx, crops, boxes = [], [], []
    for i, frame in enumerate(frames):
        dets = detect_in_frame(detector, frame, tracker)
        det = tracker.choose(dets, frame.shape)
        if linker is not None:
            linker.add(dets, det, min_face=tracker.min_face)
        if det is None:
            continue
        idx.append(i)
        crops.append(crop_face(frame, det, margin=margin))
        boxes.append(det)
    return idx, crops, boxes


def every_face_in_frames(frames: np.ndarray, *, detector, tracker: FaceTracker, linker: FaceLinker,
                         margin: float = CROP_MARGIN,
                         ) -> tuple[list[int], list[np.ndarray], list[Detection], list[int], list[bool]]:
    """Detect and crop every face large enough to score in each frame of a chunk, linked into tracks.

    Returns (frame index, crop, detection, track id, whether it is the frame's main face) per face.
    """
    idx, crops, boxes, tracks, main = [], [], [], [], []
    for i, frame in enumerate(frames):
        dets = detect_in_frame(detector, frame, tracker)
        chosen = tracker.choose(dets, frame.shape)
        faces, ids = linker.add(dets, chosen, min_face=tracker.min_face)
        for det, k in zip(faces, ids):
            idx.append(i)
            crops.append(crop_face(frame, det, margin=margin))
            boxes.append(det)
            tracks.append(k)
            main.append(det is chosen)
    return idx, crops, boxes, tracks, main
