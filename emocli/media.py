"""Decode media through ffmpeg pipes. The only module that starts ffmpeg.

Frames come out as uint8 RGB arrays ``(n, H, W, 3)`` in fixed-size chunks (memory does not
grow with video length); audio as float32 mono at a stated rate. Argument lists are built
with ffmpeg-python, never as shell strings; paths are passed as ``file:<absolute path>`` so
that a name starting with ``-`` or containing ``:`` is never read as an option or protocol.
The ffmpeg binary is ``$EMO_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's own.
There is no ffprobe: :func:`probe` reads ``ffmpeg -i``'s stream description.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MediaError, NoAudioError

SAMPLE_RATE = 16000  # Hz: voice features are computed on 16 kHz mono
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"})
VIDEO_EXTS = frozenset({".avi", ".mp4", ".flv", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".3gp", ".ts"})
AUDIO_EXTS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif"})
MAX_SIDE = 1280  # pixels: larger frames are downscaled before detection (a 4K frame costs 25 MB)
PROBE_TIMEOUT = 30.0  # seconds for `ffmpeg -i` to describe a file
STALL_TIMEOUT = 60.0  # seconds without a decoded byte before ffmpeg is stopped (damaged or endless input)
MAX_AUDIO_SECONDS = 4 * 3600  # longer recordings need --max-seconds (4 h of 16 kHz float32 is 0.9 GB)
MAX_AUDIO_BYTES = MAX_AUDIO_SECONDS * SAMPLE_RATE * 4
MAX_PIXELS = 8192 * 8192  # frames larger than this (67 Mpx) are refused: decoding one would take 200 MB


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to use."""
    env = os.environ.get("EMO_FFMPEG")
    if env:
        return env
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _source(path: Path | str) -> str:
    return "file:" + str(Path(path).resolve())


_INPUT = "file:emo-input-placeholder"  # stands for the path while ffmpeg-python builds the command


def _compile(args, path: Path | str) -> list[str]:
    """ffmpeg-python's command with the real input path put back in.

    ffmpeg-python hashes its graph as UTF-8 and fails on a file name that is not valid
    UTF-8 (Python holds such bytes as surrogate escapes); subprocess encodes them back.
    """
    return [_source(path) if a == _INPUT else a for a in args.compile(cmd=ffmpeg_exe())]


def check_readable(path: Path | str) -> Path:
    """Fail early, with the fix, for paths that cannot be media files."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            try:
                os.stat(p)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise MediaError(f"{p}: symlink loop (the link points back to itself); "
                                     "point it at the media file") from None
            raise MediaError(f"{p}: symlink to a missing file ({os.readlink(p)}); fix or remove the link")
        raise MediaError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise MediaError(f"{p}: is a directory; pass the media files inside it (or `emo predict {p}/*`)")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty (0 bytes); re-copy or re-export it")
    if not os.access(p, os.R_OK):
        raise MediaError(f"{p}: permission denied; make the file readable")
    return p


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` says about a file."""

    path: Path
    duration: float | None  # seconds, None when unknown (streams, some containers)
    has_video: bool
    has_audio: bool
    width: int = 0  # displayed size, after rotation metadata is applied
    height: int = 0
    fps: float | None = None
    rotation: int = 0  # degrees, from the display matrix / rotate tag
    is_image: bool = False
    video_stream: int = 0  # which video stream is decoded (ffmpeg's v:N; cover art is skipped)
    audio_stream: int = 0  # which audio stream is decoded (ffmpeg's a:N: the default one, else the first)
    audio_streams: int = 0  # how many audio streams the file has


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\S+.*?: (Video|Audio): (.*)")
_SIZE = re.compile(r"(?<![0-9a-fx])(\d{2,5})x(\d{2,5})(?![0-9a-fx])")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_ROTATE = re.compile(r"(?:rotation of|rotate\s*:)\s*(-?[\d.]+)")


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def image_header_size(path: Path | str) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header, without decoding; None for other files.

    ``ffmpeg -i`` decodes a still image to describe it: a 300 KB PNG of 10000x10000 pixels
    costs it 300 MB and seconds, so the size limit is checked on the header first.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(int.from_bytes(head[22:26], "little",
                                                                                            signed=True))
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(head) and head[i] == 0xFF:
            marker = head[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
            i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def probe(path: Path | str, *, timeout: float = PROBE_TIMEOUT) -> MediaInfo:
    """Describe a media file's streams.

    Raises
    ------
    MediaError
        If the file is missing, empty, or ffmpeg cannot read it.
    """
    p = check_readable(path)
    size = image_header_size(p)
    if size is not None:  # refuse a huge still image before ffmpeg decodes it to describe it
        check_frame_size(MediaInfo(p, None, True, False, *size, is_image=True))
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _source(p)]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{p}: ffmpeg took over {timeout:.0f} s to read the header; the file is damaged "
                         "or not a media file") from None
    text = res.stderr.decode("utf-8", "replace")
    streams = _STREAM.findall(text)
    # cover art in an audio file is a one-picture "video" stream: not something to score
    videos = [d for kind, d in streams if kind == "Video" and "(attached pic)" not in d]
    audios = [d for kind, d in streams if kind == "Audio"]
    video_stream = next((i for i, (kind, d) in enumerate(x for x in streams if x[0] == "Video")
                         if "(attached pic)" not in d), 0)
    audio_stream = next((i for i, d in enumerate(audios) if "(default)" in d), 0)
    video, audio = bool(videos), bool(audios)
    if not streams:
        last = _last_error_line(text)
        raise MediaError(f"{p}: not a readable video, audio or image file ({last}); check the file, "
                         "or convert it with ffmpeg")
    dur = None
    m = _DURATION.search(text)
    if m:
        dur = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    width = height = 0
    fps = None
    rotation = 0
    if video:
        desc = videos[0]
        s = _SIZE.search(desc)
        if s:
            width, height = int(s[1]), int(s[2])
        f = _FPS.search(desc)
        if f:
            fps = float(f[1]) * (1000 if f[2] else 1)
        r = _ROTATE.search(text)
        if r:
            rotation = int(round(float(r[1]))) % 360
            if rotation in (90, 270):
                width, height = height, width
    is_image = p.suffix.lower() in IMAGE_EXTS or bool(video and re.match(r"(png|mjpeg|bmp|webp|tiff)", videos[0])
                                                         and not audio and (dur is None or dur <= 0.05))
    return MediaInfo(p, dur, video, audio, width, height, fps, rotation, is_image,
                     video_stream=video_stream, audio_stream=audio_stream, audio_streams=len(audios))


_FFMPEG_CONTEXT = re.compile(r"\[[^\]\s]+ @ 0x[0-9a-fA-F]+\]\s*")  # "[vost#0:0/rawvideo @ 0x55...] ": internals


def _last_error_line(text: str) -> str:
    lines = [_FFMPEG_CONTEXT.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and "output file" not in ln.lower()]  # ffmpeg's complaint of no output
    about_file = [ln for ln in lines if not ln.startswith("Terminating thread")]  # the thread report says less
    if not lines:
        return "ffmpeg printed nothing"
    ln = (about_file or lines)[-1]
    return ln.split(": ", 1)[-1] if ln.startswith("file:") or "/" in ln.split(":")[0] else ln


def _run_pipe(args: list[str], stderr_file) -> subprocess.Popen:
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file, bufsize=0)


class _Watchdog:
    """Kill ffmpeg when it produces nothing for ``timeout`` seconds (damaged or endless input)."""

    def __init__(self, proc: subprocess.Popen, timeout: float):
        import threading

        self.proc, self.timeout, self.fired = proc, timeout, False
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def alive(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self._last > self.timeout and self.proc.poll() is None:
                self.fired = True
                self.proc.kill()
                return

    def stop(self) -> None:
        self._done.set()


class _FFmpegRun:
    """One streaming ffmpeg process: stdout to read, stderr in a temp file, a stall watchdog.

    On exit the process is stopped and reaped; ``check`` turns a stall or a failure that
    produced nothing into a :class:`MediaError` naming the file.
    """

    def __init__(self, cmd: list[str], stall_timeout: float):
        self.cmd, self.stall_timeout = cmd, stall_timeout

    def __enter__(self) -> "_FFmpegRun":
        self.err = tempfile.TemporaryFile()
        self.proc = _run_pipe(self.cmd, self.err)
        self.dog = _Watchdog(self.proc, self.stall_timeout)
        self.rc = None
        return self

    def read(self, size: int) -> bytes:
        return _read_exact(self.proc.stdout, size, self.dog)

    def __exit__(self, exc_type, *exc) -> None:
        self.dog.stop()
        self.proc.stdout.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.rc = self.proc.wait()
        if exc_type is not None:  # the reader stopped early (or failed): nothing left to check
            self.err.close()

    def check(self, path: Path, *, what: str, produced: bool) -> None:
        try:
            if self.dog.fired:
                raise MediaError(f"{path}: ffmpeg produced no {what} for {self.stall_timeout:.0f} s and was stopped; "
                                 "the file is damaged or an endless stream (use --max-seconds)")
            if self.rc != 0 and not produced:
                self.err.seek(0)
                msg = _last_error_line(self.err.read().decode("utf-8", "replace"))
                raise MediaError(f"{path}: ffmpeg could not decode the {what} ({msg}); the file is damaged "
                                 "or uses an unsupported codec")
        finally:
            self.err.close()


def check_frame_size(info: MediaInfo) -> None:
    """Refuse frames over :data:`MAX_PIXELS` from the header's size, before anything is decoded.

    A still image is checked too: a 118 KB PNG can claim 10000x10000 pixels (300 MB decoded).
    """
    w, h = info.width, info.height
    if w * h > MAX_PIXELS:
        what, fix = (("the image is", "downscale it first (ffmpeg -i IN -vf scale=1920:-2 OUT)") if info.is_image else
                     ("frames are", "downscale the video first (ffmpeg -vf scale=1920:-2)"))
        raise MediaError(f"{info.path}: {what} {w}x{h} pixels, larger than emo accepts "
                         f"({MAX_PIXELS // 1_000_000} Mpx); {fix}")


def _output_size(info: MediaInfo, max_side: int) -> tuple[int, int]:
    w, h = info.width, info.height
    if w <= 0 or h <= 0:
        raise MediaError(f"{info.path}: ffmpeg reports no frame size; the video stream is damaged")
    check_frame_size(info)
    scale = min(1.0, max_side / max(w, h))
    # even sizes keep every pixel format happy
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def iter_frames(path: Path | str, *, fps: float | None = 5.0, info: MediaInfo | None = None,
                max_side: int = MAX_SIDE, chunk: int = 16, max_seconds: float | None = None,
                stall_timeout: float = STALL_TIMEOUT) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream decoded frames.

    Parameters
    ----------
    path : media file
    fps : frames per second to sample (``None``: every frame at the stream's own rate)
    max_side : frames are downscaled so that their longer side is at most this
    chunk : frames per yielded array
    max_seconds : stop after this much media time
    stall_timeout : stop ffmpeg after this many seconds without output

    Yields
    ------
    (times, frames) : float64 (n,) seconds and uint8 (n, H, W, 3) RGB, n <= chunk

    Raises
    ------
    MediaError
        If ffmpeg fails before any frame was decoded.
    """
    import ffmpeg

    info = info or probe(path)
    if not info.has_video:
        return
    w, h = _output_size(info, max_side)
    stream = ffmpeg.input(_INPUT)[f"v:{info.video_stream}"]
    if fps is not None:
        # eof_action=pass keeps the last frame of a clip shorter than 1/fps (a one-frame video)
        stream = stream.filter("fps", fps=fps, eof_action="pass")
    stream = stream.filter("scale", w, h)
    out_kw = {"format": "rawvideo", "pix_fmt": "rgb24"}
    if max_seconds is not None:
        out_kw["t"] = max_seconds
    args = ffmpeg.output(stream, "pipe:", **out_kw).global_args("-nostdin", "-hide_banner", "-loglevel", "error")
    cmd = _compile(args, info.path)
    frame_bytes = w * h * 3
    step = 1.0 / fps if fps else 1.0 / (info.fps or 25.0)
    n = 0
    run = _FFmpegRun(cmd, stall_timeout)
    with run:
        while True:
            buf = run.read(frame_bytes * chunk)
            k = len(buf) // frame_bytes
            if k:
                frames = np.frombuffer(buf[:k * frame_bytes], np.uint8).reshape(k, h, w, 3)
                yield (n + np.arange(k)) * step, frames
                n += k
            if len(buf) < frame_bytes * chunk:
                break
    run.check(info.path, what="video", produced=n > 0)


def ended_early(info: MediaInfo, decoded_seconds: float, *, step: float, max_seconds: float | None = None) -> bool:
    """Whether the decoded video stops short of what the file promises (a truncated download or copy).

    Two claims are checked: a RIFF file (AVI, WAV) states its own size in its first bytes, and
    the container states a duration. ``decoded_seconds`` is frames decoded x ``step`` (seconds
    per frame); a frame and a half of slack absorbs rounding at the end of the stream.
    """
    slack = 1.5 * step + 0.05
    if max_seconds is not None and decoded_seconds >= max_seconds - slack:
        return False  # stopped where it was asked to
    try:
        with open(info.path, "rb") as fh:
            head = fh.read(12)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        head, size = b"", 0
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE") and size < int.from_bytes(head[4:8], "little") + 8:
        return True
    expected = min(info.duration or 0.0, max_seconds if max_seconds is not None else float("inf"))
    return expected > 0 and decoded_seconds < expected - slack


def _read_exact(fh, size: int, dog: _Watchdog | None = None) -> bytes:
    parts, got = [], 0
    while got < size:
        b = fh.read(min(size - got, 1 << 20))
        if not b:
            break
        if dog is not None:
            dog.alive()
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def load_audio(path: Path | str, *, sr: int = SAMPLE_RATE, info: MediaInfo | None = None,
               max_seconds: float | None = None, stall_timeout: float = STALL_TIMEOUT) -> np.ndarray:
    """Decode the file's default audio stream (else its first) as mono float32 in [-1, 1] at ``sr`` Hz.

    Returns
    -------
    audio : float32 (n,)

    Raises
    ------
    NoAudioError
        If the file has no audio stream.
    MediaError
        If it cannot be decoded.
    """
    import ffmpeg

    info = info or probe(path)
    if not info.has_audio:
        raise NoAudioError(f"{info.path}: no audio track")
    out_kw = {"format": "f32le", "ac": 1, "ar": sr}
    if max_seconds is not None:
        out_kw["t"] = max_seconds
    args = (ffmpeg.input(_INPUT)[f"a:{info.audio_stream}"].output("pipe:", **out_kw)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error"))
    cmd = _compile(args, info.path)
    run = _FFmpegRun(cmd, stall_timeout)
    with run:
        data = run.read(MAX_AUDIO_BYTES + 4)
    run.check(info.path, what="audio", produced=bool(data))
    if len(data) > MAX_AUDIO_BYTES:
        raise MediaError(f"{info.path}: more than {MAX_AUDIO_SECONDS / 3600:.0f} h of audio; "
                         "analyse part of it with --max-seconds")
    return np.frombuffer(data, np.float32, count=len(data) // 4).copy()


class StallingReader:
    """Read a pipe, FIFO or device by its file descriptor, giving up after ``timeout`` seconds without a byte.

    Opened without blocking, so a FIFO nobody writes to cannot hang the run at ``open`` either;
    or given an already open descriptor (``fd``: stdin), which it reads but does not close.
    ``read(n)`` returns what has arrived (at most ``n`` bytes), ``b""`` at the end.
    """

    def __init__(self, path: Path | str | None = None, *, name: str, timeout: float | None = None,
                 fd: int | None = None):
        import select

        self.name, self.timeout = name, STALL_TIMEOUT if timeout is None else timeout
        self.owned = fd is None
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if fd is None else fd
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN | select.POLLPRI)

    def read(self, n: int = 1 << 20) -> bytes:
        if not self.poll.poll(self.timeout * 1000):
            raise MediaError(f"{self.name}: nothing arrived for {self.timeout:.0f} s; check that something "
                             "writes to it (a FIFO needs a writer), or pass a file")
        try:
            return os.read(self.fd, n if n > 0 else 1 << 20)
        except BlockingIOError:  # woken without data: poll again
            return self.read(n)

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)

    def __enter__(self) -> "StallingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def spool_stdin(stream=None, *, suffix: str = "", limit_bytes: int = 8 << 30, name: str = "<stdin>") -> Path:
    """Copy a non-seekable input (stdin) to a temporary file so it can be probed and decoded.

    The caller deletes the file; on any failure it is deleted here. Raises :class:`MediaError`
    past ``limit_bytes`` (and whatever ``stream.read`` raises: a stall, an interrupt).
    """
    import sys

    src = stream if stream is not None else sys.stdin.buffer
    fd, tmp = tempfile.mkstemp(prefix="emo-stdin-", suffix=suffix)
    total = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > limit_bytes:
                    raise MediaError(f"{name}: input larger than {limit_bytes >> 20} MiB; pass a file path instead")
                out.write(block)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)
