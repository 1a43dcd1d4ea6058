"""What a bundle's models saw: compact fingerprints of every item each trained part learned from.

A bundle's ``training_items.npz`` holds, per part, the sorted 64-bit fingerprints of the files
that trained or calibrated it (``<modality>.<part>`` -> uint64 array; 8 bytes an item: the
shipped bundle's ~65,000 faces and clips take ~0.5 MB). ``emo evaluate`` fingerprints the items
it scores and reports, per modality, how many of them the bundle has seen, with the figures on
the unseen items beside the figures on all (:func:`emocli.runners.evaluate.training_overlap`).

A fingerprint is the first 8 bytes of the BLAKE2b digest of the file's bytes: the same file under
another name or folder is recognised; a re-encoded copy (another JPEG quality, a WAV made from a
FLAC) is not. Corpora are shared as files, and a copy is what an evaluation most often re-reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

from emocli.errors import ModelError
from emocli.files import atomic_path

FINGERPRINTS_FILE = "training_items.npz"
# what each part is, for reports: key in the .npz -> words
PARTS = {
    "face.emo-cnn": "emo-cnn, the face network (train-video)",
    "face.emo-cnn-holdout": "the held-out part that picked emo-cnn's epoch (and the shipped views and prior)",
    "face.rafdb-expert": "the RAF-DB MobileFaceNet (trained by its authors on RAF-DB's train split)",
    "face.rafdb-expert-tuned": "the faces the RAF-DB MobileFaceNet's last stage was fine-tuned on (train-expert)",
    "face.head": "the face head over both experts' features",
    "face.calibration": "the calib halves behind the face experts' temperatures and the head's choices",
    "face.small-calibration": "the held-out faces, shown small, behind the mix for faces under 64 px "
                              "(calibrate-small-faces)",
    "voice.svm": "the voice SVM, its temperature and its speaker-adapted twin (train-audio)",
}


def fingerprint(path: Path | str) -> int:
    """The file's 64-bit fingerprint (BLAKE2b of its bytes, first 8 bytes, little-endian)."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return int.from_bytes(h.digest(), "little")


def fingerprints(paths: Iterable[Path | str]) -> np.ndarray:
    """uint64 (n,) fingerprints of ``paths`` in order; 0 for a file that cannot be read."""
    out = []
    for p in paths:
        try:
            out.append(fingerprint(p))
        except OSError:
            out.append(0)
    return np.array(out, np.uint64)


def modality(part: str) -> str:
    """``face`` or ``voice``: the part of the bundle a fingerprint set belongs to."""
    return part.split(".", 1)[0]


def read(bundle: Path | str) -> dict[str, np.ndarray]:
    """The bundle's fingerprint sets ({} when it has none)."""
    path = Path(bundle) / FINGERPRINTS_FILE
    if not path.is_file():
        return {}

    try:
        with np.load(path, allow_pickle=False) as z:
            sets = {k: np.asarray(z[k], np.uint64) for k in z.files}
    except Exception as exc:  # zip or array damage
        raise ModelError(f"{path}: not a readable fingerprint file ({type(exc).__name__}: {exc}); restore the "
                         "bundle, or delete the file to evaluate without the training-overlap check") from None
    bad = [k for k in sets if modality(k) not in ("face", "voice") or sets[k].ndim != 1]
    if bad:
        raise ModelError(f"{path}: unknown fingerprint sets {', '.join(bad[:3])}; restore the bundle")
    return sets


def write(bundle: Path | str, sets: dict[str, Iterable[Path | str]], *, replace: Iterable[str] = ()) -> dict[str, int]:
    """Store each part's fingerprints in the bundle's ``training_items.npz``, keeping the other parts'
    unless named in ``replace`` (a retrained modality's parts: ``("voice",)`` drops every ``voice.*``).
    Returns the number of distinct items per part. The caller rewrites the manifest."""
    drop = tuple(replace)
    old = {k: v for k, v in read(bundle).items() if modality(k) not in drop and k not in drop}
    new = {k: np.unique(fingerprints(v)) for k, v in sets.items()}
    return _store(bundle, {**old, **{k: v[v != 0] for k, v in new.items()}})


def add(bundle: Path | str, part: str, paths: Iterable[Path | str]) -> int:
    """Add ``paths``' fingerprints to one part of the bundle's file (a union: calibration sets several
    commands use); returns the part's size. The caller rewrites the manifest."""
    sets = read(bundle)
    new = fingerprints(paths)
    merged = np.union1d(sets.get(part, np.zeros(0, np.uint64)), new[new != 0]).astype(np.uint64)
    return _store(bundle, {**sets, part: merged})[part]


def _store(bundle: Path | str, sets: dict[str, np.ndarray]) -> dict[str, int]:
    with atomic_path(Path(bundle) / FINGERPRINTS_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **sets)
    return {k: len(v) for k, v in sets.items()}


def carry(dst: Path | str, *sources: Path | str, modality_name: str = "face") -> None:
    """Give the bundle ``dst`` the ``modality_name`` parts of the bundles it was made from (refresh-bn:
    the same network; ensemble: both members), merged part by part; nothing when none has any. The
    caller rewrites the manifest."""
    merged: dict[str, np.ndarray] = {}
    for src in sources:
        for k, v in read(src).items():
            if modality(k) == modality_name:
                merged[k] = np.union1d(merged[k], v) if k in merged else v
    if merged:
        _store(dst, {**{k: v for k, v in read(dst).items() if modality(k) != modality_name}, **merged})


def seen_by(sets: dict[str, np.ndarray], prints: np.ndarray) -> dict[str, np.ndarray]:
    """For each part, a boolean mask of the items (their ``prints``) it has seen."""
    return {k: np.isin(prints, v) & (prints != 0) for k, v in sets.items()}
