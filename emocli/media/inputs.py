"""Expand command-line inputs: files, folders, ``-`` (stdin), pipes, URLs and devices into a stream of inputs.

``-`` reads stdin once. If it looks like text (no control bytes once a byte-order mark and
terminal colour codes are taken out) every non-empty line is an input path, spaces kept as
written, so ``find ... | emo predict -`` (and ``find -print0``, ``ls --color=always``) works,
each path handled as soon as its line arrives; otherwise stdin is media bytes: a live input (:class:`emocli.media.ffmpeg.LiveSource`),
decoded in one pass as it arrives. So are FIFOs, character devices, URLs (``rtsp://``,
``https://``, ...) and capture devices (``/dev/video0``).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from emocli.media.ffmpeg import VIDEO_EXTS, media_files
from emocli.media.live import LiveSource, is_capture_device, is_url

SNIFF_BYTES = 64 * 1024  # enough to tell a list of paths from a media container
MAX_PATH_LINE = 64 * 1024  # bytes read at once from a list of paths (a longer "line" is not a path)


# never in a list of paths; in every media header. NUL is left out: it separates `find -print0` paths.
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")
# terminal colour and cursor codes (`ls --color=always`): ESC [ parameters final-byte
_ANSI = re.compile(rb"\x1b\[[0-9;:?]*[ -/]*[@-~]")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, as some editors and Windows tools start a text file
# how media files begin (RIFF: WAV/AVI, EBML: MKV/WebM, Ogg, FLAC; MP4 and MOV say "ftyp" at byte 4): never
# a list, whatever their next bytes are (other containers start with control bytes)
MEDIA_MAGIC = (b"RIFF", b"\x1a\x45\xdf\xa3", b"OggS", b"fLaC")


def _plain(raw: bytes) -> bytes:
    """Text as a list of paths is read: without a leading BOM and without terminal colour codes."""
    return _ANSI.sub(b"", raw[len(BOM):] if raw.startswith(BOM) else raw)


def _looks_like_text(head: bytes) -> bool:
    """A list of paths: once a BOM and colour codes are taken out, its first line and all its lines but one
    (or one in ten; split at line ends and NULs, as `find -print0` writes) hold no control bytes but tabs
    (non-UTF-8 names are fine). A media container's first bytes are binary: its size fields put control
    bytes in the first "line", and random-looking data puts them in nearly every other one."""
    if head.startswith(MEDIA_MAGIC) or head[4:8] == b"ftyp":
        return False
    plain = _plain(head)
    parts = [p for p in re.split(rb"[\n\0]", plain) if p.strip()]
    if not parts or _CONTROL.search(parts[0]):
        return False
    if b"\0" in plain and not all(b"/" in p or b"." in p for p in parts):
        return False  # NULs separate paths (find -print0) or pad a binary header ("RIFF\0\0\0\0WAVEfmt ")
    bad = sum(bool(_CONTROL.search(p)) for p in parts)
    return bad <= max(1.0, 0.1 * len(parts)) and bad < len(parts) / 2


def expand_inputs(inputs: Iterable[str], stdin: BinaryIO | None = None, *, input_options: tuple[str, ...] = ()
                  ) -> Iterator[tuple[str, "Path | LiveSource | None", str | None]]:
    """Yield ``(display name, path or live source, problem)``; ``problem`` is an error message or ``None``.

    ``input_options`` (ffmpeg options such as ``-f v4l2 -framerate 30``) go with every live input.
    """
    for arg in inputs:
        if arg == "-":
            yield from _from_stdin(stdin if stdin is not None else sys.stdin.buffer, input_options)
            continue
        yield from _expand_one(arg, input_options)


def _expand_one(arg: str, input_options: tuple[str, ...] = ()
                ) -> Iterator[tuple[str, "Path | LiveSource | None", str | None]]:
    if is_url(arg) or is_capture_device(arg):
        # ffmpeg opens these itself; the path of a device that is missing is still worth a clear line
        if is_capture_device(arg) and not os.path.exists(arg):
            yield arg, None, f"{arg}: no such capture device; check the camera is connected (ls /dev/video*)"
            return
        yield arg, LiveSource(arg, url=arg, input_options=input_options), None
        return
    p = Path(arg)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # a name too long: not a path to read
            # (a symlink loop is left to media.probe, whose error says so)
            yield arg, None, f"{arg[:200]}: cannot read ({exc.strerror}); check the path"
            return
    if p.exists() and not p.is_file() and not p.is_dir():
        # a named pipe or device (/dev/stdin, <(cmd), mkfifo): read once as it arrives, like stdin;
        # a writer that never comes or stalls is given up after the stall timeout
        if not os.access(p, os.R_OK):
            yield arg, None, f"{arg}: cannot read (permission denied); check the path and its permissions"
            return
        yield arg, LiveSource(arg, path=p, input_options=input_options), None
        return
    if p.is_dir():
        unreadable: list[OSError] = []
        files = media_files(p, unreadable=unreadable)
        if not files and not unreadable:
            yield arg, None, (f"{arg}: folder holds no video, audio or image files "
                              f"({', '.join(sorted(VIDEO_EXTS)[:4])}, ...); pass media files or another folder")
        problems = {}
        for exc in unreadable:
            name = exc.filename if exc.filename is not None else arg
            why = "permission denied; make the folder readable (chmod +rx)" if isinstance(exc, PermissionError) \
                else f"cannot list the folder ({exc.strerror or exc})"
            problems[os.fsdecode(name)] = f"{os.fsdecode(name)}: {why}"
        entries = [(str(f), f, None) for f in files] + [(name, None, msg) for name, msg in problems.items()]
        yield from sorted(entries, key=lambda e: e[0])
    else:
        yield arg, p, None


def _from_stdin(stream: BinaryIO, input_options: tuple[str, ...] = ()
                ) -> Iterator[tuple[str, "Path | LiveSource | None", str | None]]:
    # Sniff what has arrived, not a full 64 KiB: a slow producer of paths must not hold back the
    # first result. A first line (or a NUL byte, or 512 bytes) is enough to decide.
    def read_some() -> bytes:
        return stream.read1(SNIFF_BYTES) if hasattr(stream, "read1") else stream.read(SNIFF_BYTES)

    head = read_some()
    while head and len(head) < 512 and b"\n" not in head and b"\0" not in head:
        more = read_some()
        if not more:
            break
        head += more
    if _looks_like_text(head):
        # one path per line (or per NUL: find -print0), each handled as soon as it is complete (memory
        # stays bounded); a line longer than MAX_PATH_LINE is one error result, and reading goes on after it
        pending, skipping = head[len(BOM):] if head.startswith(BOM) else head, False
        while True:
            *lines, pending = re.split(rb"[\n\0]", pending)
            for line in lines:
                if skipping:  # the end of an overlong line
                    skipping = False
                    continue
                if len(line) > MAX_PATH_LINE:
                    yield "<stdin>", None, (f"<stdin>: a line longer than {MAX_PATH_LINE >> 10} KiB is not a "
                                            "path; pass one path per line")
                    continue
                yield from _path_line(line, input_options)
            if len(pending) > MAX_PATH_LINE:
                if not skipping:
                    yield "<stdin>", None, (f"<stdin>: a line longer than {MAX_PATH_LINE >> 10} KiB is not a "
                                            "path; pass one path per line")
                pending, skipping = b"", True
            more = stream.readline(MAX_PATH_LINE)
            if not more:
                break
            pending += more
        if not skipping:
            yield from _path_line(pending, input_options)
        return
    if not head:
        yield "<stdin>", None, "<stdin>: no input on stdin; pipe media bytes or a list of paths into `emo predict -`"
        return

    # media bytes: decoded as they arrive. The head was read with ``read1`` (one raw read, nothing
    # left in the stream's buffer), so the rest can be read from the descriptor itself.
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real descriptor (tests, wrappers)
        yield "<stdin>", LiveSource("<stdin>", stream=stream, head=head, input_options=input_options), None
        return
    yield "<stdin>", LiveSource("<stdin>", fd=fd, head=head, input_options=input_options), None


def _path_line(raw: bytes, input_options: tuple[str, ...] = ()
               ) -> Iterator[tuple[str, "Path | LiveSource | None", str | None]]:
    """One line of a list of paths: colour codes and a Windows line end removed, spaces kept as written
    (a name may begin or end with one); blank lines and ``#`` comments skipped."""
    raw = _plain(raw.rstrip(b"\r"))
    if not raw.strip() or raw.lstrip().startswith(b"#"):
        return
    line = os.fsdecode(raw)  # non-UTF-8 bytes of a name survive as surrogate escapes
    if _CONTROL.search(raw):
        yield line, None, f"<stdin>: the line {line!r} holds control characters; it is not a path"
        return
    yield from _expand_one(line, input_options)


def files_only(entries: Iterable[tuple], why: str) -> Iterator[tuple]:
    """``entries`` with each live input turned into a problem: ``why`` says how to run it instead."""
    for display, path, problem in entries:
        if isinstance(path, LiveSource):
            yield display, None, f"{display}: a live input (pipe, URL or device) {why}"
        else:
            yield display, path, problem
