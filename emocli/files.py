"""Files written whole or not at all, and their sha256.

Every file emo writes (bundles, extracted items, reports, ``predict -o``) goes to a hidden
temporary name beside its target and is renamed onto it when complete: a run killed at any
point leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from emocli.errors import EmoError, ModelError, OutputError

T = TypeVar("T")


TEMP_NAME_KEEP = 64  # characters of the target's name kept in its temporary name (a long name stays legal)


def temporary_beside(target: Path, *, suffix: str = ".tmp") -> tuple[int, Path]:
    """An open descriptor and the path of a new hidden file ``.NAME.XXXX<suffix>`` next to ``target``
    (its folder is created when missing; NAME is cut to 64 characters)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:TEMP_NAME_KEEP]}.", suffix=suffix, dir=target.parent)
    return fd, Path(tmp)


def is_special(path: Path | str) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (a device such as /dev/null
    or /dev/full, a FIFO, a socket): such a target is written directly, never replaced by a rename."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_error(target: Path | str, exc: OSError) -> OutputError:
    """An OSError met while writing ``target`` as one line naming it and the fix."""
    fixes = {errno.ENOSPC: "free some disk space or write elsewhere",
             errno.EDQUOT: "free some disk space or write elsewhere",
             errno.EISDIR: "it is a folder: name a file in it",
             errno.ENOTDIR: "a part of its path is a file, not a folder: choose another path",
             errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to",
             errno.EROFS: "the file system is read-only: choose another place",
             errno.ENAMETOOLONG: "the name is longer than the file system allows: choose a shorter one",
             errno.EEXIST: "a part of its path is a file, not a folder: choose another path"}
    why = exc.strerror or type(exc).__name__
    return OutputError(f"{target}: cannot write it ({why}); {fixes.get(exc.errno, 'choose another path')}")


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

    A run killed at any point leaves either the old file or the new one, never a torn one. A
    target that is a device, a FIFO or a socket (:func:`is_special`) is yielded itself and written
    directly: renaming onto /dev/null would replace the device with a file. A failed write (a full
    disk, a folder given for a file, no permission) raises :class:`~emocli.errors.OutputError`
    naming ``target``.
    """
    target = Path(target)
    if is_special(target):
        try:
            yield target
        except OSError as exc:
            if isinstance(exc, EmoError):
                raise
            raise write_error(target, exc) from None
        return
    try:
        fd, tmp_path = temporary_beside(target, suffix=suffix or ".tmp")
    except OSError as exc:
        raise write_error(target, exc) from None
    os.close(fd)
    try:
        yield tmp_path
        publish(tmp_path, target)
    except OSError as exc:
        if isinstance(exc, EmoError):
            raise
        raise write_error(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class OutputFile:
    """A results file kept open for a run (``predict -o``, a file per input): written under a temporary
    name beside ``target`` and renamed onto it by :meth:`close`, however the run ends, so a reader
    never sees a torn file. A device or FIFO (``-o /dev/null``) is written directly, never replaced.
    Failures raise :class:`OutputError` naming ``target``."""

    def __init__(self, target: Path | str):
        self.target, self.tmp = Path(target), None
        try:
            if is_special(self.target):
                self.fh = open(self.target, "w", encoding="utf-8", newline="")
            else:
                fd, self.tmp = temporary_beside(self.target)
                self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise write_error(self.target, exc) from None

    def close(self) -> None:
        """Flush and rename into place (a failed write, such as a full disk, leaves no temporary file)."""
        try:
            self.fh.close()
            if self.tmp is not None:
                publish(self.tmp, self.target)
        except OSError as exc:
            if self.tmp is not None and self.tmp.exists():
                self.tmp.unlink()
            raise write_error(self.target, exc) from None


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def sha256_file(path: Path | str) -> str:
    """The file's sha256, hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


HASH_CACHE_FILE = "sha256-v1.json"
_hash_cache: dict | None = None  # {real path: [size, mtime_ns, inode, device, sha256]}, loaded once per process
_hash_cache_dirty = False


def hash_cache_path() -> Path | None:
    """Where file hashes are remembered between runs: ``$EMO_CACHE_DIR`` (``off`` turns it off), else
    ``$XDG_CACHE_HOME/emocli``, else ``~/.cache/emocli``."""
    root = os.environ.get("EMO_CACHE_DIR")
    if root == "off":
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "emocli")
    return Path(root) / HASH_CACHE_FILE


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def cached_sha256(path: Path | str) -> str:
    """:func:`sha256_file`, remembered across runs while the file keeps its size, modification time and
    inode (a model bundle is hashed once per install, not at every start: 0.1-0.2 s of a 1-s clip).

    A file changed in place gets a new modification time and is hashed again; one changed and then
    given its old time back on purpose is not caught (``EMO_CACHE_DIR=off`` hashes every time).
    """
    global _hash_cache, _hash_cache_dirty
    import json

    where = hash_cache_path()
    if where is None:
        return sha256_file(path)
    if _hash_cache is None:
        try:
            loaded = json.loads(where.read_text())
            _hash_cache = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 5} \
                if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _hash_cache = {}
    st = os.stat(path)
    key = os.path.realpath(path)
    hit = _hash_cache.get(key)
    if hit is not None and hit[:4] == _stamp(st) and isinstance(hit[4], str):
        return hit[4]
    digest = sha256_file(path)
    if _stamp(os.stat(path)) == _stamp(st):  # not changed while it was read
        _hash_cache[key] = _stamp(st) + [digest]
        _hash_cache_dirty = True
    return digest


def save_hash_cache() -> None:
    """Write the remembered hashes, if any are new; a cache folder that cannot be written is skipped."""
    global _hash_cache_dirty
    import json

    where = hash_cache_path()
    if where is None or not _hash_cache_dirty or _hash_cache is None:
        return
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{where.name}.", dir=where.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(_hash_cache, fh)
        os.replace(tmp, where)
        _hash_cache_dirty = False
    except OSError:
        pass


def load_npz_weights(path: Path, build: Callable[[dict], T], *, what: str, missing: str, rebuild: str) -> T:
    """``build`` applied to the arrays of a weights ``.npz`` (read without pickle).

    Raises ModelError naming the file: "<path>: <what> not found; <missing>" when there is no
    file, and "<path>: not usable <what> (...); <rebuild>" when it cannot be read or ``build``
    rejects it (zip, key or shape problems).
    """
    import numpy as np

    if not path.is_file():
        raise ModelError(f"{path}: {what} not found; {missing}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"non-finite values in {', '.join(bad[:3])}")
        obj = build(arrays)
    except Exception as exc:  # zip, key, shape, value problems
        raise ModelError(f"{path}: not usable {what} ({type(exc).__name__}: {exc}); {rebuild}") from None
    obj.path = path
    return obj


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (links followed: a hard link or a symlink of it is the same
    file), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _mode(path: Path) -> int | None:
    """``st_mode`` of an existing path (links followed), else None; never raises (a name too long, a path
    through a file: None)."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def check_writable(path: Path, what: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a folder where a file is wanted
    (or a file where a folder is), a path through a file, a folder that cannot be written to, a name too
    long. Devices, FIFOs and sockets pass as files (they are written directly), never as folders. Raises OutputError naming
    ``path`` and ``what`` (the option)."""

    path = Path(path)
    if is_special(path):
        if folder:  # a device, FIFO or socket holds no files
            raise OutputError(f"{path} ({what}) is a device, not a folder; name a new or existing folder")
        return
    mode = _mode(path)
    if mode is not None and stat.S_ISDIR(mode) and not folder:
        raise OutputError(f"{path} ({what}) is a folder; name a file, e.g. {path / 'results'}")
    if mode is not None and not stat.S_ISDIR(mode) and folder:
        raise OutputError(f"{path} ({what}) is a file, not a folder; name a new or existing folder")
    probe = path if folder and mode is not None else path.parent
    while _mode(probe) is None and probe != probe.parent:  # the first that exists: the writer makes the rest
        probe = probe.parent
    if not stat.S_ISDIR(_mode(probe) or 0):
        raise OutputError(f"{path} ({what}): {probe} is a file, not a folder; choose another path")
    try:
        limit = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    long = [p for p in (path.relative_to(probe).parts if path != probe else ()) if len(os.fsencode(p)) > limit]
    if long:
        raise OutputError(f"{path} ({what}): the name {long[0][:40]!r}... is {len(os.fsencode(long[0]))} bytes, "
                          f"longer than the {limit} the file system allows; choose a shorter name")
    try:  # root passes every permission check: try a real file
        fd, tmp = tempfile.mkstemp(prefix=".emo-write-check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{path} ({what}): cannot write in {probe} ({exc.strerror}); choose a folder you can "
                          "write to") from None


def check_outputs(outputs: dict[str, Path | str | None], *, inputs=(),
                  folders: dict[str, Path | str | None] | None = None, input_folders=(), media_exts=()) -> None:
    """Refuse, before any work, outputs that would destroy something or cannot be written.

    ``outputs``: {option: file path or None}; ``folders``: {option: folder path or None} (written
    into); ``inputs``: the input files (an output that is one of them, a link to it included, is
    refused); ``input_folders`` and ``media_exts``: folders whose files of those extensions are
    inputs too (an existing one of them is refused as an output). Two options naming the same file
    are refused. Raises OutputError.
    """
    named = {opt: Path(p) for opt, p in outputs.items() if p is not None}
    dirs = {opt: Path(p) for opt, p in (folders or {}).items() if p is not None}
    seen: dict[object, str] = {}
    for opt, p in [*named.items(), *dirs.items()]:
        if is_special(p):
            continue  # /dev/null twice is fine
        key = _identity(p) or os.path.abspath(p)
        if key in seen:
            raise OutputError(f"{p}: named by both {seen[key]} and {opt}, so one would overwrite the other; "
                              "give each its own path")
        seen[key] = opt
    ins = {}
    for i in inputs:
        ident = _identity(Path(i))
        if ident is not None and not is_special(i):
            ins[ident] = i
    for opt, p in named.items():
        ident = _identity(p)
        if ident is not None and ident in ins:
            raise OutputError(f"{p} ({opt}) is the input {ins[ident]}: writing there would destroy it; choose "
                              "another file")
        if ident is not None and p.suffix.lower() in media_exts:  # an existing media file of an input folder
            full = os.path.realpath(p)
            for folder in input_folders:
                if full.startswith(os.path.realpath(folder) + os.sep):
                    raise OutputError(f"{p} ({opt}) is an input, a media file of the input folder {folder}: writing "
                                      "there would destroy it; choose another file")
    for opt, p in named.items():
        check_writable(p, opt)
    for opt, p in dirs.items():
        check_writable(p, opt, folder=True)
