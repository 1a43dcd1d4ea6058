"""Expand command-line inputs: files, folders, ``-`` (stdin), pipes, URLs and devices into a stream of inputs.

``-`` reads stdin once. If it looks like text (no control bytes) every non-empty line is
an input path, so ``find ... | emo predict -`` works, each path handled as soon as its line
arrives; otherwise stdin is media bytes: a live input (:class:`emocli.media.LiveSource`),
decoded in one pass as it arrives. So are FIFOs, character devices, URLs (``rtsp://``,
``https://``, ...) and capture devices (``/dev/video0``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .media import VIDEO_EXTS, LiveSource, is_capture_device, is_url, media_files

SNIFF_BYTES = 64 * 1024  # enough to tell a list of paths from a media container
MAX_PATH_LINE = 64 * 1024  # bytes read at once from a list of paths (a longer "line" is not a path)


_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")  # never in a list of paths; in every media header


def _looks_like_text(head: bytes) -> bool:
    """A list of paths: no control bytes but tabs and line ends (non-UTF-8 names are fine)."""
    return bool(head) and not _CONTROL.search(head)


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
        # one path per line, each handled as soon as its line is complete (memory stays bounded)
        pending = head
        while True:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield from _path_line(line, input_options)
            if len(pending) > MAX_PATH_LINE:
                yield "<stdin>", None, (f"<stdin>: a line longer than {MAX_PATH_LINE >> 10} KiB is not a path; "
                                        "pass one path per line")
                pending = b""
            more = stream.readline(MAX_PATH_LINE)
            if not more:
                break
            pending += more
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
    line = os.fsdecode(raw.rstrip(b"\r")).strip()  # non-UTF-8 bytes of a name survive as surrogate escapes
    if line and not line.startswith("#"):
        yield from _expand_one(line, input_options)


def files_only(entries: Iterable[tuple], why: str) -> Iterator[tuple]:
    """``entries`` with each live input turned into a problem: ``why`` says how to run it instead."""
    for display, path, problem in entries:
        if isinstance(path, LiveSource):
            yield display, None, f"{display}: a live input (pipe, URL or device) {why}"
        else:
            yield display, path, problem
