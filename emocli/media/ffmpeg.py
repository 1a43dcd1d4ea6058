"""Decode media through ffmpeg pipes (still images through OpenCV). The only module that starts ffmpeg.

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

from emocli.errors import MediaError, NoAudioError

SAMPLE_RATE = 16000  # Hz: voice features are computed on 16 kHz mono
# The file extensions emo treats as media, everywhere: folders given to predict and corpora alike.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"})
VIDEO_EXTS = frozenset({".avi", ".mp4", ".flv", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".3gp", ".ts"})
AUDIO_EXTS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif"})
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS | AUDIO_EXTS
SKIPPED_DIRS = frozenset({"__MACOSX"})  # folder names never walked into (macOS zip resource forks)
MAX_SIDE = 1280  # pixels: larger frames are downscaled before detection (a 4K frame costs 25 MB)
PROBE_TIMEOUT = 30.0  # seconds for `ffmpeg -i` to describe a file
STALL_TIMEOUT = 60.0  # seconds without a decoded byte before ffmpeg is stopped (damaged or endless input)
MAX_AUDIO_SECONDS = 4 * 3600  # longer recordings need --max-seconds (4 h of 16 kHz float32 is 0.9 GB)
MAX_AUDIO_BYTES = MAX_AUDIO_SECONDS * SAMPLE_RATE * 4
MAX_PIXELS = 8192 * 8192  # frames larger than this (67 Mpx) are refused: decoding one would take 200 MB


def is_hidden(name: str) -> bool:
    """A file or folder name that folder walks skip: dot files (``.DS_Store``, macOS ``._*`` resource
    forks) and :data:`SKIPPED_DIRS`."""
    return name.startswith(".") or name in SKIPPED_DIRS


def media_files(root: Path | str, exts: frozenset[str] = MEDIA_EXTS, *, follow_links: bool = False,
                unreadable: list[OSError] | None = None) -> list[Path]:
    """Every file below ``root`` (recursively) whose extension is one of ``exts``, sorted; hidden
    files and folders (:func:`is_hidden`) are skipped.

    ``follow_links`` walks into symlinked folders too (corpora are often assembled from links).
    Sub-folders that cannot be listed are appended to ``unreadable`` (when given) as the OSError
    that ``os.walk`` met, instead of being skipped silently.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_links,
                                                onerror=unreadable.append if unreadable is not None else None):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        found.extend(Path(dirpath) / f for f in filenames if not is_hidden(f) and os.path.splitext(f)[1].lower() in exts)
    return sorted(found)


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
STREAM_LINE = re.compile(r"Stream #\S+.*?: (Video|Audio): (.*)")
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
    if not STREAM_LINE.findall(text):
        last = last_error_line(text)
        raise MediaError(f"{p}: not a readable video, audio or image file ({last}); check the file, "
                         "or convert it with ffmpeg")
    return describe(text, p)


def describe(text: str, p) -> MediaInfo:
    """A :class:`MediaInfo` from ``ffmpeg -i``'s description of an input that has streams."""
    streams = STREAM_LINE.findall(text)
    # cover art in an audio file is a one-picture "video" stream: not something to score
    videos = [d for kind, d in streams if kind == "Video" and "(attached pic)" not in d]
    audios = [d for kind, d in streams if kind == "Audio"]
    video_stream = next((i for i, (kind, d) in enumerate(x for x in streams if x[0] == "Video")
                         if "(attached pic)" not in d), 0)
    audio_stream = next((i for i, d in enumerate(audios) if "(default)" in d), 0)
    video, audio = bool(videos), bool(audios)
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
    is_image = Path(p).suffix.lower() in IMAGE_EXTS or bool(video and re.match(r"(png|mjpeg|bmp|webp|tiff)", videos[0])
                                                         and not audio and (dur is None or dur <= 0.05))
    return MediaInfo(p, dur, video, audio, width, height, fps, rotation, is_image,
                     video_stream=video_stream, audio_stream=audio_stream, audio_streams=len(audios))


_FFMPEG_CONTEXT = re.compile(r"\[[^\]\s]+ @ 0x[0-9a-fA-F]+\]\s*")  # "[vost#0:0/rawvideo @ 0x55...] ": internals


def last_error_line(text: str) -> str:
    lines = [_FFMPEG_CONTEXT.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and "output file" not in ln.lower()]  # ffmpeg's complaint of no output
    about_file = [ln for ln in lines if not ln.startswith("Terminating thread")]  # the thread report says less
    if not lines:
        return "ffmpeg printed nothing"
    ln = (about_file or lines)[-1]
    return ln.split(": ", 1)[-1] if ln.startswith("file:") or "/" in ln.split(":")[0] else ln


def _run_pipe(args: list[str], stderr_file) -> subprocess.Popen:
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file, bufsize=0)


class Watchdog:
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
        self.dog = Watchdog(self.proc, self.stall_timeout)
        self.rc = None
        return self

    def read(self, size: int) -> bytes:
        return read_exact(self.proc.stdout, size, self.dog)

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
                msg = last_error_line(self.err.read().decode("utf-8", "replace"))
                raise MediaError(f"{path}: ffmpeg could not decode the {what} ({msg}); the file is damaged "
                                 "or uses an unsupported codec")
        finally:
            self.err.close()


def media_seconds(info, max_seconds: float | None = None) -> float | None:
    """Seconds of an input that are analysed: its duration, at most ``max_seconds`` (None when unknown)."""
    if info.duration is None:
        return max_seconds
    return info.duration if max_seconds is None else min(info.duration, max_seconds)


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


def read_exact(fh, size: int, dog: Watchdog | None = None) -> bytes:
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


def probe_and_load_audio(path: Path | str, *, sr: int = SAMPLE_RATE, max_seconds: float | None = None,
                         stall_timeout: float = STALL_TIMEOUT) -> tuple[MediaInfo, np.ndarray] | None:
    """:func:`probe` and :func:`load_audio` of an audio file in one ffmpeg run instead of two.

    ffmpeg describes its input on stderr before decoding it, so the description that :func:`probe`
    reads comes with the samples (one process start instead of two: ~12 ms of a 4-s clip's ~70 ms
    of CPU in a bulk run). Applies to files with an audio extension (:data:`AUDIO_EXTS`) whose one
    stream is audio (cover art aside); for anything else, or when ffmpeg fails, it returns None and
    the caller takes the usual path, which gives the usual errors. The samples equal
    :func:`load_audio`'s: the same stream, filters and output format.
    """
    import ffmpeg

    p = Path(path)
    if p.suffix.lower() not in AUDIO_EXTS or not p.is_file() or image_header_size(p) is not None:
        return None
    out_kw = {"format": "f32le", "ac": 1, "ar": sr}
    if max_seconds is not None:
        out_kw["t"] = max_seconds
    # "-loglevel info" prints the input's description; progress lines are off (-nostats)
    args = (ffmpeg.input(_INPUT)["a:0"].output("pipe:", **out_kw)
            .global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"))
    run = _FFmpegRun(_compile(args, p), stall_timeout)
    try:
        with run:
            data = run.read(MAX_AUDIO_BYTES + 4)
        run.err.seek(0)
        text = run.err.read().decode("utf-8", "replace")
    finally:
        run.err.close()
    text = text.split("\nOutput #0", 1)[0].split("\nStream mapping:", 1)[0]  # the input's description only
    if run.dog.fired or run.rc != 0 or not data or len(data) > MAX_AUDIO_BYTES or not STREAM_LINE.findall(text):
        return None
    info = describe(text, p)
    if info.has_video or info.audio_streams != 1 or info.is_image:
        return None  # the usual path picks the stream to decode and the frames
    return info, np.frombuffer(data, np.float32, count=len(data) // 4).copy()


def frame_rate(fps: float) -> str:
    """``fps`` as the exact rate ffmpeg should use: NTSC rates (29.97 = 30000/1001, 23.976, 59.94) as
    fractions, so that a long video keeps its timing; others as given."""
    from fractions import Fraction

    ntsc = round(fps * 1.001)
    if ntsc and abs(fps - ntsc / 1.001) < 0.005 and abs(fps - ntsc) > 0.005:
        return f"{ntsc * 1000}/1001"
    return str(Fraction(fps).limit_denominator(1000))


@functools.lru_cache(maxsize=4)
def has_encoder(name: str) -> bool:
    """Whether the ffmpeg binary in use can encode with ``name`` (libx264 is missing from some builds)."""
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-encoders"], capture_output=True,
                             timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"^\s*V\S*\s+{re.escape(name)}\s", res.stdout.decode("utf-8", "replace"), re.M) is not None


class VideoWriter:
    """Encode uint8 RGB frames (H, W, 3) into a video file through ffmpeg's stdin, with the audio of
    ``audio_from`` (the stream the voice is read from, re-encoded to AAC) when it has one.

    Video is H.264 (libx264; MPEG-4 part 2 where the binary lacks it) at ``rate`` frames per
    second (a string such as ``30000/1001``, see :func:`frame_rate`), at the frames' own size; the
    muxer follows ``path``'s extension. Use as a context manager: leaving it ends the file, and
    a failure raises :class:`MediaError` naming ``display`` (default: ``path``).
    """

    def __init__(self, path: Path | str, *, width: int, height: int, rate: str, audio_from: MediaInfo | None = None,
                 max_seconds: float | None = None, display: Path | str | None = None):
        self.path, self.display = Path(path), display or path
        self.width, self.height, self.frames = width, height, 0
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate, "-i", "pipe:0"]
        maps = ["-map", "0:v"]
        if audio_from is not None and audio_from.has_audio:
            cmd += ["-i", _source(audio_from.path)]
            maps += ["-map", f"1:a:{audio_from.audio_stream}", "-c:a", "aac", "-b:a", "128k"]
        if has_encoder("libx264"):
            # 4:2:0 needs even sides; an odd-sized video keeps its size in 4:4:4
            pix = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            video = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", pix]
        else:
            video = ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"]
        out = ["-t", str(max_seconds)] if max_seconds is not None else []
        if self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            out += ["-movflags", "+faststart"]
        self.cmd = [*cmd, *maps, *video, *out, "file:" + str(self.path.resolve())]

    def __enter__(self) -> "VideoWriter":
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err)
        return self

    def write(self, frame: np.ndarray) -> None:
        """One frame, uint8 RGB (height, width, 3)."""
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:  # ffmpeg stopped: its message says why (raised on leaving)
            return
        self.frames += 1

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if exc_type is not None:
            self.proc.kill()
        rc = self.proc.wait()
        self.err.seek(0)
        said = self.err.read().decode("utf-8", "replace")
        self.err.close()
        if exc_type is None and rc != 0:
            raise MediaError(f"{self.display}: ffmpeg could not write the video ({last_error_line(said)}); "
                             "check the name's extension and that the folder is writable")


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


# --------------------------------------------------------------------------------------------------
# still images (OpenCV decodes them: no ffmpeg process per image)


def read_image(path: Path, *, problems: list[str] | None = None) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3).

    With ``problems`` (a list), what the decoder complains about (libjpeg prints "Corrupt
    JPEG data" on stderr and still returns an image) is caught and appended there instead of
    reaching stderr, and so is a JPEG that lacks its end marker (cut short, then padded).

    Raises
    ------
    MediaError
        If the file is missing or not a decodable image.
    """
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise MediaError(f"{path}: file not found; check the path")
    if problems is None:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    else:
        with _c_stderr_captured() as said:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        problems.extend(ln.strip() for ln in said if ln.strip())
        raw = data.tobytes()
        if img is not None and raw[:2] == b"\xff\xd8" and b"\xff\xd9" not in raw[raw.rfind(b"\xff\xda"):]:
            problems.append("the JPEG has no end marker")
    if img is None:
        raise MediaError(f"{path}: not a readable image (corrupt or unsupported format); re-export it as JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class _c_stderr_captured:
    """Catch what C libraries write to file descriptor 2 while the block runs; a list of lines."""

    def __enter__(self) -> list[str]:
        import sys

        sys.stderr.flush()
        self.lines: list[str] = []
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self.lines

    def __exit__(self, *exc) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.lines.extend(self.tmp.read(1 << 16).decode("utf-8", "replace").splitlines())
        self.tmp.close()
