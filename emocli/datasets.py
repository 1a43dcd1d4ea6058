"""Labelled corpora: find items and their labels from each corpus's own naming."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError, MediaError
from .labels import normalize_label

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".webp"})


@dataclass(frozen=True)
class Item:
    """One labelled file of a corpus."""

    path: Path
    label: str
    speaker: str | None = None
    split: str | None = None


def image_folder(root: Path) -> list[Item]:
    """Folder-per-class images (FER2013, SFEW, JAFFE-style): ``root/<label>/*.jpg``.

    Raises
    ------
    DatasetError
        If ``root`` has no class folders, or a folder name is not an emotion.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass a folder with one sub-folder of images per emotion")
    items: list[Item] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = normalize_label(sub.name, source=str(sub))
        if label is None:
            continue
        items.extend(Item(p, label) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_EXTS)
    if not items:
        raise DatasetError(f"{root}: no images found in class folders (expected {root}/<emotion>/*.jpg)")
    return items


def read_image(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3).

    Raises
    ------
    MediaError
        If the file is missing or not a decodable image.
    """
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise MediaError(f"{path}: file not found; check the path")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise MediaError(f"{path}: not a readable image (corrupt or unsupported format); re-export it as JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
