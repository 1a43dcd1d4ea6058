"""Live input: pipes, FIFOs, URLs and capture devices, probed and decoded by ffmpeg in one pass as
the bytes arrive (frames and audio blocks in time order), and MP4s that must be read whole first."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli.errors import MediaError
from emocli.media.ffmpeg import (MAX_PIXELS, MAX_SIDE, PROBE_TIMEOUT, SAMPLE_RATE, STALL_TIMEOUT, STREAM_LINE, MediaInfo,
                                 StallingReader, Watchdog, describe, ffmpeg_exe, last_error_line, read_exact)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CAPTURE_DEVICE = re.compile(r"^/dev/video\d+$")
LIVE_PROBE_BYTES = 32 << 20  # at most this much of a piped stream is held while ffmpeg finds its streams
LIVE_QUEUE = 32  # decoded items (frames, audio blocks) waiting for the scorer; bounds memory when it falls behind
AUDIO_READ = 3200 * 4  # bytes per audio read: 0.2 s of 16 kHz float32 (smaller reads cost latency nothing)
# microseconds of a live input ffmpeg reads to find its streams (its default, 5 s, would hold the first
# result of a real-time stream back by as much); --input-options "-analyzeduration N" overrides it
LIVE_ANALYZE_US = 1_000_000


def is_url(arg: str) -> bool:
    """Whether ``arg`` names a stream ffmpeg opens itself (``http://``, ``rtsp://``, ``udp://``, ...)."""
    return bool(_URL.match(arg))


def is_capture_device(arg: str) -> bool:
    """A Video4Linux capture device (``/dev/video0``): read with ``-f v4l2`` unless told otherwise."""
    return bool(_CAPTURE_DEVICE.match(arg))


@dataclass
class LiveSource:
    """An input read once, as it arrives: a pipe or FIFO whose bytes emo feeds to ffmpeg, or an
    address (URL, capture device) that ffmpeg opens itself.

    ``fd`` is an open descriptor (stdin) and ``path`` a FIFO or character device to open;
    ``head`` holds bytes already read from it (stdin's sniffed start). ``input_options`` go
    before ffmpeg's ``-i`` (``-f v4l2 -framerate 30``).
    """

    name: str  # as the user gave it, for messages and results
    url: str | None = None
    path: Path | None = None
    fd: int | None = None
    head: bytes = b""
    input_options: tuple[str, ...] = ()
    stream: object = None  # a file object without a descriptor (an in-memory stdin)
    opened: object = None  # the reader, once opened (a FIFO must not be opened twice)

    @property
    def fed(self) -> bool:
        """Whether emo reads the bytes and feeds them to ffmpeg (pipes, FIFOs, stdin)."""
        return self.url is None

    def ffmpeg_input(self) -> list[str]:
        options = list(self.input_options)
        if self.url is not None and is_capture_device(self.url) and "-f" not in options:
            options = ["-f", "v4l2", *options]
        if "-analyzeduration" not in options:
            options = ["-analyzeduration", str(LIVE_ANALYZE_US), *options]
        return [*options, "-i", self.url if self.url is not None else "pipe:0"]

    def reader(self):
        """Something to ``read(n)`` the input's bytes from (and ``close``), given up after the stall timeout."""
        if self.opened is None:
            if self.stream is not None:
                self.opened = _ObjectReader(self.stream)
            elif self.fd is not None:
                self.opened = StallingReader(name=self.name, fd=self.fd)
            else:
                try:
                    self.opened = StallingReader(self.path, name=self.name)
                except OSError as exc:
                    raise MediaError(f"{self.name}: cannot read ({exc.strerror}); check the path and its "
                                     "permissions") from None
        return self.opened


class _ObjectReader:
    """A file object's ``read`` behind the reader interface (it is not closed here)."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, n: int) -> bytes:
        return self.stream.read(n)

    def close(self) -> None:
        pass


MAX_SPOOL_BYTES = 8 << 30  # an MP4 that cannot be read as it arrives is copied to disk, up to this much
_BOX_SCAN = 1 << 20  # bytes read at most to find an MP4's first moov or mdat box


def index_after_data(head: bytes) -> bool | None:
    """Whether an MP4/MOV/3GP file (ISO base media) keeps its index (``moov``) after its media data
    (``mdat``): ffmpeg cannot decode such a file from a pipe. False for other formats; None when
    ``head`` is too short to tell."""
    if len(head) < 8:
        return None
    if head[4:8] != b"ftyp":
        return False
    i = 0
    while i + 8 <= len(head):
        size, kind = int.from_bytes(head[i:i + 4], "big"), head[i + 4:i + 8]
        if kind == b"moov":
            return False
        if kind == b"mdat":
            return True
        if size == 1:
            if i + 16 > len(head):
                return None
            size = int.from_bytes(head[i + 8:i + 16], "big")
        if size < 8:  # "to the end of the file", or damaged: let ffmpeg say
            return False
        i += size
    return None


def spool_unseekable(src: LiveSource) -> Path | None:
    """For a piped MP4/MOV whose index comes after its media data: the whole input in a temporary file
    (the caller deletes it), since it cannot be decoded as it arrives. None for anything else; the
    bytes read to decide are kept in ``src.head``.

    Raises
    ------
    MediaError
        Past :data:`MAX_SPOOL_BYTES`, or when the pipe stalls.
    """
    if not src.fed:
        return _spool_url(src) if src.url is not None and src.url.lower().startswith(("http://", "https://")) else None
    reader = src.reader()
    head = bytearray(src.head)
    while (verdict := index_after_data(bytes(head))) is None and len(head) < _BOX_SCAN:
        block = reader.read(1 << 16)
        if not block:
            break
        head += block
    src.head = bytes(head)
    if not verdict:
        return None
    fd, tmp = tempfile.mkstemp(prefix="emo-stdin-", suffix=".mp4")
    total = len(head)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            while block := reader.read(1 << 20):
                total += len(block)
                if total > MAX_SPOOL_BYTES:
                    raise MediaError(f"{src.name}: an MP4 with its index at the end, larger than "
                                     f"{MAX_SPOOL_BYTES >> 30} GiB; pass the file's path instead")
                out.write(block)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        reader.close()
    return Path(tmp)


def _spool_url(src: LiveSource) -> Path | None:
    """An http(s) URL of an MP4/MOV whose index comes after its media data: fetched whole into a temporary
    file (a server without Range requests, such as ``python -m http.server``, leaves ffmpeg no way to
    reach the index). None for anything else, or when the URL cannot be read here (ffmpeg then opens it
    and reports what it finds)."""
    import urllib.request

    try:
        response = urllib.request.urlopen(src.url, timeout=PROBE_TIMEOUT)
    except (OSError, ValueError):
        return None
    try:  # read as a pipe is: the first boxes say whether it must be fetched whole
        return spool_unseekable(LiveSource(src.name, stream=response))
    except MediaError:  # too large to fetch: its own message
        raise
    except OSError as exc:
        raise MediaError(f"{src.name}: the download broke off ({exc}); try again, or fetch the file and pass "
                         "its path") from None
    finally:
        response.close()


def probe_live(src: LiveSource, *, timeout: float = PROBE_TIMEOUT) -> tuple[MediaInfo, bytes, "StallingReader | None"]:
    """Find a live input's streams.

    An address is opened by ffmpeg twice (once here, once to decode). A piped input cannot be
    read twice: its first bytes are fed to a describing ffmpeg and kept (at most
    :data:`LIVE_PROBE_BYTES`), to be fed again to the decoding one; the open reader is
    returned to go on from where this stopped.

    Returns
    -------
    (info, head bytes to feed first, open reader or None for an address)

    Raises
    ------
    MediaError
        If nothing arrives, the address cannot be opened, or ffmpeg finds no stream.
    """
    base = [ffmpeg_exe(), "-hide_banner"]
    if not src.fed:
        return _probe_address(src, base, timeout), b"", None
    reader = src.reader()
    try:
        head, text = _probe_piped(src, reader, base, timeout)
    except BaseException:
        reader.close()
        raise
    if not head:
        reader.close()
        raise MediaError(f"{src.name}: no data arrived (the stream is empty); pipe media bytes into it")
    if not STREAM_LINE.findall(text):
        reader.close()
        raise MediaError(f"{src.name}: not a readable video or audio stream ({last_error_line(text)}); check what "
                         "is piped in, or give its format with --input-options \"-f FORMAT\"")
    return describe(text, src.name), bytes(head), reader


def _probe_address(src: LiveSource, base: list[str], timeout: float) -> MediaInfo:
    """An address (URL, device, FIFO) described by an ffmpeg of its own."""
    try:
        res = subprocess.run([*base, "-nostdin", *src.ffmpeg_input()], capture_output=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{src.name}: no stream description after {timeout:.0f} s; check the address and "
                         "that something is sending") from None
    text = res.stderr.decode("utf-8", "replace")
    if not STREAM_LINE.findall(text):
        raise MediaError(f"{src.name}: cannot open the stream ({last_error_line(text)}); check the address, "
                         "that the server or device is up, and --input-options")
    return describe(text, src.name)


def _probe_piped(src: LiveSource, reader, base: list[str], timeout: float) -> tuple[bytearray, str]:
    """A piped input's first bytes fed to a describing ffmpeg until it has seen enough: (the bytes read,
    ffmpeg's description)."""
    head = bytearray(src.head)
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([*base, *src.ffmpeg_input()], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=err)
    try:
        _feed_probe(src, proc, head, reader)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MediaError(f"{src.name}: ffmpeg took over {timeout:.0f} s to describe the stream; the input is "
                             "damaged or not media") from None
        err.seek(0)
        return head, err.read().decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        err.close()


def _feed_probe(src: LiveSource, proc: subprocess.Popen, head: bytearray, reader) -> None:
    """Feed ``head``, then what ``reader`` brings (kept in ``head``), to the describing ffmpeg until it
    exits or the input ends; more than :data:`LIVE_PROBE_BYTES` without a description is an error."""
    sent = 0
    ended = False
    while proc.poll() is None:
        if sent < len(head):
            try:
                proc.stdin.write(head[sent:])
                proc.stdin.flush()
            except BrokenPipeError:  # ffmpeg has seen enough
                break
            sent = len(head)
            continue
        if ended:
            break
        block = reader.read(1 << 16)
        if not block:
            ended = True
            proc.stdin.close()
            continue
        head += block
        if len(head) > LIVE_PROBE_BYTES:
            raise MediaError(f"{src.name}: ffmpeg found no stream in the first {LIVE_PROBE_BYTES >> 20} MiB; "
                             "the input is not media, or give its format with --input-options \"-f FORMAT\"")


@dataclass
class LiveItem:
    """One piece of a live decode: a frame (``kind="video"``, ``time`` s, ``frame`` uint8 (H, W, 3) RGB),
    a block of audio (``kind="audio"``, ``audio`` float32 (n,) mono), or the end of one (``kind="end"``,
    ``what`` "video" or "audio")."""

    kind: str
    time: float = 0.0
    frame: np.ndarray | None = None
    audio: np.ndarray | None = None
    what: str = ""


@dataclass(frozen=True)
class DecodeSettings:
    """What a live decode delivers: frames sampled at ``fps`` (None: every frame) and downscaled to
    ``max_side``, audio mono at ``sr`` Hz, at most ``max_seconds`` of either, and which of the two; a
    piped input that sends nothing for ``stall_timeout`` s (None: :data:`STALL_TIMEOUT`) has ended."""

    fps: float | None = 5.0
    max_side: int = MAX_SIDE
    sr: int = SAMPLE_RATE
    max_seconds: float | None = None
    video: bool = True
    audio: bool = True
    stall_timeout: float | None = None


class LiveDecode:
    """One ffmpeg process decoding a live input once: frames on its stdout, audio on a second pipe.

    Frames come as PAM images (each carries its size, so a stream that changes resolution is
    read correctly), sampled at ``fps`` and downscaled to ``max_side``; audio as float32 mono
    at ``sr``. Reader threads put both into one bounded queue that :meth:`items` yields from in
    arrival order, so neither pipe can block the other. Nothing is written to disk; memory is
    bounded by :data:`LIVE_QUEUE` items. ``max_seconds`` stops both outputs (ffmpeg ``-t``).

    A piped input is fed by a thread from ``head`` then ``reader``; a feeder that sees nothing
    for the stall timeout ends the input (what was decoded is still scored, ``stalled`` says so).
    """

    def __init__(self, src: LiveSource, info: MediaInfo, settings: "DecodeSettings | None" = None, *,
                 head: bytes = b"", reader: StallingReader | None = None):
        import queue
        import threading

        st = settings or DecodeSettings()
        fps, max_side, sr, max_seconds = st.fps, st.max_side, st.sr, st.max_seconds
        self.src, self.info, self.head, self.reader = src, info, head, reader
        self.sr = sr
        self.video, self.audio = st.video and info.has_video, st.audio and info.has_audio
        self.step = 1.0 / fps if fps else 1.0 / (info.fps or 25.0)
        self.stall_timeout = STALL_TIMEOUT if st.stall_timeout is None else st.stall_timeout
        self.queue: queue.Queue = queue.Queue(maxsize=LIVE_QUEUE)
        self.closing = threading.Event()
        self.stalled = False
        self.errors: list[str] = []  # ffmpeg's last lines on stderr
        self.frames = self.samples = 0
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
        if not src.fed:
            cmd.append("-nostdin")
        cmd += src.ffmpeg_input()
        limit = ["-t", f"{max_seconds:g}"] if max_seconds is not None else []
        self._audio_r = self._audio_w = None
        if self.video:
            vf = ("scale=w='trunc(min(1,{m}/max(iw,ih))*iw/2)*2':h='trunc(min(1,{m}/max(iw,ih))*ih/2)*2'"
                  .format(m=max_side))
            if fps:
                vf = f"fps=fps={fps:g}:eof_action=pass," + vf
            cmd += ["-map", f"0:v:{info.video_stream}", "-vf", vf, "-f", "image2pipe", "-c:v", "pam",
                    "-pix_fmt", "rgb24", *limit, "pipe:1"]
        if self.audio:
            self._audio_r, self._audio_w = os.pipe()
            cmd += ["-map", f"0:a:{info.audio_stream}", "-ac", "1", "-ar", str(sr), "-f", "f32le", *limit,
                    f"pipe:{self._audio_w}"]
        self.cmd = cmd
        self._threading = threading

    def __enter__(self) -> "LiveDecode":
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE if self.src.fed else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if self.video else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, bufsize=0,
                                     pass_fds=(self._audio_w,) if self.audio else ())
        if self._audio_w is not None:
            os.close(self._audio_w)  # ffmpeg holds the write end; EOF when it exits
            self._audio_w = None
        self.dog = Watchdog(self.proc, self.stall_timeout) if not self.src.fed else None
        self.threads = []
        for target, on in ((self._read_video, self.video), (self._read_audio, self.audio),
                           (self._feed, self.src.fed), (self._read_stderr, True)):
            if on:
                t = self._threading.Thread(target=target, daemon=True, name="emo-" + target.__name__.lstrip("_"))
                t.start()
                self.threads.append(t)
        return self

    # -- threads ---------------------------------------------------------------------------------
    def _put(self, item: LiveItem) -> bool:
        import queue

        while not self.closing.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read_video(self) -> None:
        fh = self.proc.stdout
        n = 0
        try:
            while not self.closing.is_set():
                header = {}
                line = fh.readline()
                if not line:
                    break
                while line and line.strip() != b"ENDHDR":
                    parts = line.split()
                    if len(parts) == 2:
                        header[parts[0]] = parts[1]
                    line = fh.readline()
                w, h, d = int(header.get(b"WIDTH", 0)), int(header.get(b"HEIGHT", 0)), int(header.get(b"DEPTH", 3))
                if w * h > MAX_PIXELS or d != 3:
                    break
                buf = read_exact(fh, w * h * 3, self.dog)
                if len(buf) < w * h * 3:
                    break
                if not self._put(LiveItem("video", time=n * self.step,
                                          frame=np.frombuffer(buf, np.uint8).reshape(h, w, 3))):
                    return
                n += 1
                self.frames = n
        except (OSError, ValueError):
            pass
        self._put(LiveItem("end", what="video"))

    def _read_audio(self) -> None:
        rest = b""
        try:
            while not self.closing.is_set():
                b = os.read(self._audio_r, AUDIO_READ)
                if not b:
                    break
                if self.dog is not None:
                    self.dog.alive()
                b = rest + b
                k = len(b) // 4 * 4
                rest = b[k:]
                if k:
                    x = np.frombuffer(b[:k], np.float32).copy()
                    self.samples += len(x)
                    if not self._put(LiveItem("audio", audio=x)):
                        return
        except OSError:
            pass
        self._put(LiveItem("end", what="audio"))

    def _feed(self) -> None:
        stdin = self.proc.stdin
        try:
            if self.head:
                stdin.write(self.head)
            while not self.closing.is_set():
                block = self.reader.read(1 << 16)
                if not block:
                    break
                stdin.write(block)
        except MediaError:  # nothing arrived for the stall timeout: end the input, keep what was decoded
            self.stalled = True
        except (BrokenPipeError, OSError, ValueError):  # ffmpeg stopped (--max-seconds) or we are closing
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass
            self.reader.close()  # here, not in __exit__: this thread may still be waiting on it

    def _read_stderr(self) -> None:
        from collections import deque

        last: deque = deque(maxlen=20)
        for line in self.proc.stderr:
            last.append(line.decode("utf-8", "replace"))
            self.errors = list(last)

    # -- consumer --------------------------------------------------------------------------------
    def items(self, stop=None):
        """Yield :class:`LiveItem` as they are decoded until both outputs end (or ``stop`` is set)."""
        import queue

        open_ = {k for k, on in (("video", self.video), ("audio", self.audio)) if on}
        while open_:
            if stop is not None and stop.is_set():
                return
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item.kind == "end":
                open_.discard(item.what)
            yield item

    def __exit__(self, *exc) -> None:
        self.closing.set()
        if self.dog is not None:
            self.dog.stop()
        if self.proc.poll() is None:
            self.proc.kill()
        self.rc = self.proc.wait()
        for t in self.threads:
            if t.name != "emo-feed":  # the feeder may wait on a silent pipe; it ends by itself
                t.join(timeout=5)
        for fh in (self.proc.stdout, self.proc.stderr):
            if fh is not None:
                fh.close()
        if self._audio_r is not None:
            os.close(self._audio_r)

    def check(self, *, produced: bool) -> None:
        """After the run: a stall of an address, or a failure that produced nothing, as a MediaError."""
        if self.dog is not None and self.dog.fired:
            if produced:
                return
            raise MediaError(f"{self.src.name}: nothing decoded for {self.stall_timeout:.0f} s and ffmpeg was "
                             "stopped; check that the stream is sending")
        if self.rc not in (0, None) and not produced:
            msg = last_error_line("".join(self.errors))
            raise MediaError(f"{self.src.name}: ffmpeg could not decode the stream ({msg}); check the input "
                             "and --input-options")

    @property
    def watchdog_fired(self) -> bool:
        return self.dog is not None and self.dog.fired
