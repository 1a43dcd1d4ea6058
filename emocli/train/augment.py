"""Augment aligned face crops the way video frames differ from photographs (``emo train-expert --whole``).

A face in a film or a webcam clip is a photograph's face seen through a camera that moves, a lens
that blurs, a distance that shrinks it and a codec that blocks it. :func:`frame_like` draws, per face
and independently: a mirror image; a small rotation, zoom and shift (the aligner's jitter from frame
to frame); brightness, contrast and saturation (lighting, colour grading), now and then grey; and one
degradation: the face shrunk to ``small_side`` px and back (a face far from the camera, as ``predict``
upscales it), a Gaussian blur (focus, motion), or neither, then JPEG blocks at a random quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameLike:
    """How strongly :func:`frame_like` changes a face (each value the largest change, drawn uniformly)."""
    rotation: float = 10.0  # degrees
    zoom: float = 0.08  # relative scale
    shift: float = 0.05  # of the side
    brightness: float = 0.15  # of the range
    contrast: float = 0.2
    saturation: float = 0.3
    grey: float = 0.1  # probability
    small: float = 0.25  # probability of a face shrunk to small_side px and back
    small_side: tuple[int, int] = (24, 64)
    blur: float = 0.15  # probability of a Gaussian blur (sigma 0.5-1.5 px)
    jpeg: float = 0.4  # probability of JPEG at quality 25-90


def frame_like(faces: np.ndarray, rng: np.random.Generator, how: FrameLike = FrameLike()) -> np.ndarray:
    """Augmented copies of uint8 (N, S, S, 3) faces, drawn with ``rng``."""
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        out[i] = _one(face, rng, how)
    return out


def _one(face: np.ndarray, rng: np.random.Generator, how: FrameLike) -> np.ndarray:
    side = face.shape[0]
    if rng.random() < 0.5:
        face = face[:, ::-1]
    angle = rng.uniform(-how.rotation, how.rotation)
    scale = 1.0 + rng.uniform(-how.zoom, how.zoom)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
    m[:, 2] += rng.uniform(-how.shift, how.shift, 2) * side
    face = cv2.warpAffine(np.ascontiguousarray(face), m, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
    grey = face.mean(2, keepdims=True)
    sat = 0.0 if rng.random() < how.grey else 1.0 + rng.uniform(-how.saturation, how.saturation)
    face = grey + (face - grey) * sat
    mean = face.mean()
    face = (face - mean) * (1.0 + rng.uniform(-how.contrast, how.contrast)) + mean
    face = np.clip(face + 255.0 * rng.uniform(-how.brightness, how.brightness), 0, 255).astype(np.uint8)
    pick = rng.random()
    if pick < how.small:
        small = int(rng.integers(how.small_side[0], how.small_side[1] + 1))
        face = cv2.resize(cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA), (side, side),
                          interpolation=cv2.INTER_LINEAR)
    elif pick < how.small + how.blur:
        face = cv2.GaussianBlur(face, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < how.jpeg:
        ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 91))])
        face = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else face
    return face
