"""Files written whole or not at all, and their sha256.

Every file emo writes (bundles, extracted items, reports, ``predict -o``) goes to a hidden
temporary name beside its target and is renamed onto it when complete: a run killed at any
point leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def temporary_beside(target: Path, *, suffix: str = ".tmp") -> tuple[int, Path]:
    """An open descriptor and the path of a new hidden file ``.NAME.XXXX<suffix>`` next to ``target``
    (its folder is created when missing)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    return fd, Path(tmp)


def publish(tmp: Path, target: Path) -> None:
    """Flush ``tmp`` to disk, give it the usual file mode and rename it onto ``target``."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    A run killed at any point leaves either the old file or the new one, never a torn one.
    """
    fd, tmp_path = temporary_beside(target, suffix=suffix or ".tmp")
    os.close(fd)
    try:
        yield tmp_path
        publish(tmp_path, Path(target))
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path | str) -> str:
    """The file's sha256, hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_npz_weights(path: Path, build: Callable[[dict], T], *, what: str, missing: str, rebuild: str) -> T:
    """``build`` applied to the arrays of a weights ``.npz`` (read without pickle).

    Raises ModelError naming the file: "<path>: <what> not found; <missing>" when there is no
    file, and "<path>: not usable <what> (...); <rebuild>" when it cannot be read or ``build``
    rejects it (zip, key or shape problems).
    """
    import numpy as np

    from .errors import ModelError

    if not path.is_file():
        raise ModelError(f"{path}: {what} not found; {missing}")
    try:
        with np.load(path, allow_pickle=False) as z:
            obj = build({k: z[k] for k in z.files})
    except Exception as exc:  # zip, key, shape problems
        raise ModelError(f"{path}: not usable {what} ({type(exc).__name__}: {exc}); {rebuild}") from None
    obj.path = path
    return obj
