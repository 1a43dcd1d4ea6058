"""Streaming for real: live inputs decoded in one pass, segments written as their windows close."""

import contextlib
import functools
import glob
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, ffmpeg
from emocli.media import ffmpeg as media, live
from emocli.cli.app import app
from emocli.labels import LABELS

runner = CliRunner()
EMO = [sys.executable, "-m", "emocli"]


def emo(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([*EMO, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def lines(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@pytest.fixture(scope="module")
def face_ts(tmp_path_factory):
    """~6.6 s of a real face and voice (an example clip three times) as MPEG-TS bytes."""
    out = tmp_path_factory.mktemp("live") / "face.ts"
    ffmpeg("-stream_loop", "2", "-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-c:v", "mpeg4", "-c:a", "aac",
           "-f", "mpegts", str(out))
    return out


def realtime_source(seconds: float | None, *, out: str = "-", audio: bool = True) -> list[str]:
    """ffmpeg sending a generated test stream in real time (-re) as MPEG-TS; ``None``: endless."""
    dur = f":duration={seconds}" if seconds else ""
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
           "-i", f"testsrc2=size=320x240:rate=25{dur}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=16000{dur}", "-c:a", "aac"]
    return [*cmd, "-c:v", "mpeg4", "-f", "mpegts", "-y" if out != "-" else "-flush_packets", *([] if out != "-" else ["1"]),
            out]


@contextlib.contextmanager
def endless_source():
    """An endless real-time test stream (:func:`realtime_source`), stopped when the block ends."""
    source = subprocess.Popen(realtime_source(None), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        yield source
    finally:
        source.kill()
        source.wait()


def test_first_segment_arrives_while_a_slow_pipe_is_still_writing(tiny_bundle, face_ts):
    data = face_ts.read_bytes()
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-*")))
    proc = emo("predict", "-", "--model", tiny_bundle, "--window", "1", "--json", stdin=subprocess.PIPE)
    finished = threading.Event()

    def write():  # the bytes of ~6.6 s of stream, spread over ~8 s
        try:
            step = len(data) // 40
            for i in range(0, len(data), step):
                proc.stdin.write(data[i:i + step])
                proc.stdin.flush()
                time.sleep(0.2)
            proc.stdin.close()
        finally:
            finished.set()

    writer = threading.Thread(target=write)
    writer.start()
    first = json.loads(proc.stdout.readline())
    assert not finished.is_set(), "the first segment came only after the whole stream"
    assert first["file"] == "<stdin>" and first["segment"]["start"] == 0.0 and first["segment"]["end"] == 1.0
    assert first["segment"]["label"] in LABELS and first["segment"]["frames_used"] >= 4
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-*"))) == before  # nothing spooled to disk
    writer.join(timeout=120)
    rest, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=120)
    out = [first, *lines(rest.decode())]
    assert proc.returncode == 0, err.decode()
    segs, res = [o["segment"] for o in out[:-1]], out[-1]
    assert [s["start"] for s in segs] == [float(k) for k in range(len(segs))] and 6 <= len(segs) <= 8
    assert res["status"] == "ok" and res["file"] == "<stdin>" and res["duration"] == pytest.approx(6.6, abs=0.5)
    assert sum(s["frames_used"] for s in segs) == res["frames_used"] and res["modalities"] == ["face", "voice"]
    for s in segs[:-1]:
        assert sum(s["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert s["face_scores"] is not None and s["voice_scores"] is not None


def test_realtime_stream_through_a_fifo(tiny_bundle, tmp_path):
    fifo = tmp_path / "live.ts"
    os.mkfifo(fifo)
    writer = subprocess.Popen(realtime_source(5, out=str(fifo)), stdin=subprocess.DEVNULL)
    proc = emo("predict", fifo, "--model", tiny_bundle, "--window", "1", "--json")
    try:
        first = json.loads(proc.stdout.readline())
        assert writer.poll() is None, "the first segment came only after the stream had ended"
        assert first["file"] == str(fifo) and first["segment"]["end"] == 1.0
        # testsrc2 shows no face: the voice scores the window alone, and says so
        assert first["segment"]["face_scores"] is None and first["segment"]["voice_scores"] is not None
        assert first["segment"]["notes"] == ["no face: voice alone"]
        rest, err = proc.communicate(timeout=120)
    finally:
        writer.kill()
        writer.wait()
    out = [first, *lines(rest.decode())]
    assert proc.returncode == 0, err.decode()
    assert out[-1]["status"] == "ok" and out[-1]["modalities"] == ["voice"] and len(out) >= 5


def test_endless_stream_is_bounded_by_max_seconds(tiny_bundle):
    with endless_source() as source:
        t0 = time.monotonic()
        proc = emo("predict", "-", "--model", tiny_bundle, "--window", "1", "--max-seconds", "3", "--json",
                   stdin=source.stdout)
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    assert proc.returncode == 0, err.decode()
    out = lines(out.decode())
    assert [o["segment"]["start"] for o in out[:-1]] == [0.0, 1.0, 2.0]
    assert out[-1]["status"] == "ok" and out[-1]["duration"] == pytest.approx(3.0, abs=0.3)
    assert took < 60  # the stream never ends: only --max-seconds stopped the run


def test_ctrl_c_on_a_live_stream_writes_the_segments_and_the_result_so_far(tiny_bundle):
    with endless_source() as source:
        proc = emo("predict", "-", "--model", tiny_bundle, "--window", "1", "--json", stdin=source.stdout)
        first = json.loads(proc.stdout.readline())
        assert first["segment"]["start"] == 0.0
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    out = [first, *lines(rest.decode())]
    res = out[-1]
    assert "segment" not in res and res["status"] == "ok" and res["file"] == "<stdin>"
    assert any(n.startswith("interrupted after") for n in res["notes"])
    assert res["duration"] >= 1.0 and "Traceback" not in err.decode() and "interrupted" in err.decode()


@pytest.fixture
def http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_input_is_streamed_not_mangled(tiny_bundle, http_server):
    folder, base = http_server
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_SAD_XX.avi"), "-c:v", "mpeg4", "-c:a", "aac", "-f", "mpegts",
           str(folder / "clip.ts"))
    url = f"{base}/clip.ts"
    r = runner.invoke(app, ["predict", url, "--model", str(tiny_bundle), "--window", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = lines(r.stdout)
    assert [o["file"] for o in out] == [url] * len(out) and len(out) >= 3
    assert out[-1]["status"] == "ok" and out[-1]["modalities"] == ["face", "voice"]
    missing = f"{base}/gone.mp4"
    r = runner.invoke(app, ["predict", missing, "--model", str(tiny_bundle), "--json"])
    assert r.exit_code == 1
    (res,) = lines(r.stdout)
    assert res["status"] == "error" and res["error"].startswith(f"{missing}: cannot open the stream (")
    assert "check the address" in res["error"] and "file not found" not in res["error"]


def test_unreachable_url_and_missing_capture_device_are_one_line_errors(tiny_bundle):
    r = runner.invoke(app, ["predict", "http://127.0.0.1:9/a.mp4", "/dev/video97", "--model", str(tiny_bundle),
                            "--json"])
    assert r.exit_code == 1
    a, b = lines(r.stdout)
    assert a["error"].startswith("http://127.0.0.1:9/a.mp4: cannot open the stream (") and "\n" not in a["error"]
    assert b["error"] == "/dev/video97: no such capture device; check the camera is connected (ls /dev/video*)"


def test_input_options_reach_ffmpeg_and_bad_ones_are_bad_usage(tiny_bundle, tmp_path):
    src = live.LiveSource("/dev/video0", url="/dev/video0")
    assert src.ffmpeg_input()[-4:] == ["-f", "v4l2", "-i", "/dev/video0"]
    src = live.LiveSource("/dev/video0", url="/dev/video0", input_options=("-f", "mjpeg", "-framerate", "30"))
    assert src.ffmpeg_input().count("-f") == 1 and "-framerate" in src.ffmpeg_input()
    assert "-analyzeduration" in live.LiveSource("<stdin>", fd=0).ffmpeg_input()
    # a raw stream with no container: readable only with its format given
    raw = tmp_path / "tone.raw"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=2", "-f", "s16le", "-ac", "1",
           str(raw))
    r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--json", "--input-options",
                            "-f s16le -ar 16000 -ch_layout mono"], input=raw.read_bytes())
    assert r.exit_code == 0, r.output
    assert lines(r.stdout)[-1]["modalities"] == ["voice"]
    for bad in ("-f 'v4l2", "-i /dev/video0", "v4l2"):
        r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--input-options", bad], input=b"")
        assert r.exit_code == 2, bad


def test_audio_ending_before_the_video_and_the_reverse_never_raise(tiny_bundle, tmp_path):
    clip = str(EXAMPLES / "1001_DFA_ANG_XX.avi")
    short_audio, short_video = tmp_path / "a.ts", tmp_path / "v.ts"
    ffmpeg("-stream_loop", "1", "-i", clip, "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=1",
           "-map", "0:v", "-map", "1:a", "-t", "4", "-c:v", "mpeg4", "-c:a", "aac", "-f", "mpegts", str(short_audio))
    ffmpeg("-i", clip, "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=4",
           "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "aac", "-f", "mpegts", str(short_video))
    for path, lone in ((short_audio, "face"), (short_video, "voice")):
        r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--window", "1", "--json"],
                          input=path.read_bytes())
        assert r.exit_code == 0, r.output
        out = lines(r.stdout)
        segs = [o["segment"] for o in out[:-1]]
        assert 4 <= len(segs) <= 5 and out[-1]["status"] == "ok"  # 4 s, and maybe the last frame's 0.2 s
        assert segs[0]["face_scores"] and segs[0]["voice_scores"]
        assert segs[-1][f"{lone}_scores"] and segs[-1]["label"] in LABELS
        assert segs[-1]["notes"][0].endswith(f": {lone} alone")


def test_empty_and_junk_streams_are_one_line_errors(tiny_bundle):
    r = runner.invoke(app, ["predict", "/dev/null", "--model", str(tiny_bundle), "--json"])
    assert r.exit_code == 1
    assert lines(r.stdout)[0]["error"] == "/dev/null: no data arrived (the stream is empty); pipe media bytes into it"
    junk = bytes(range(1, 256)) * 400
    r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--json"], input=b"\0" + junk)
    assert r.exit_code == 1
    err = lines(r.stdout)[0]["error"]
    assert err.startswith("<stdin>: not a readable video or audio stream (") and "--input-options" in err


def test_table_mode_shows_segments(tiny_bundle):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", str(tiny_bundle),
                            "--window", "1", "--table"], terminal_width=120)
    assert r.exit_code == 0, r.output
    seg_lines = [ln for ln in r.stdout.splitlines() if " s  " in ln and "-" in ln.split(" s  ")[0]]
    # two 1-s windows, then the last sampled frame's 0.2 s (the audio ends at 2.0 s)
    assert [ln.split()[0] for ln in seg_lines] == ["0.0-1.0", "1.0-2.0", "2.0-2.2"]


# --- results for scripts and people: -o, --format csv, --plot -----------------------------------

def test_output_file_csv_and_timeline_plot(tiny_bundle, tmp_path):
    import csv

    import matplotlib.image

    from emocli.report.output import CSV_COLUMNS

    clip = str(EXAMPLES / "1001_DFA_HAP_XX.avi")
    out, png = tmp_path / "res" / "out.csv", tmp_path / "timeline.png"
    r = runner.invoke(app, ["predict", clip, "--model", str(tiny_bundle), "--window", "1", "-o", str(out),
                            "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and f"wrote {out}" in r.stderr and f"wrote {png}" in r.stderr
    rows = list(csv.reader(out.open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row[1] for row in rows[1:]] == ["segment"] * 3 + ["result"] and rows[-1][4] == "ok"
    last = dict(zip(rows[0], rows[-1]))
    assert sum(float(last[lab]) for lab in LABELS) == pytest.approx(1.0, abs=1e-4) and last["label"] in LABELS
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 500
    assert list(tmp_path.glob("res/.out.csv.*")) == []  # the temporary name is gone
    # JSON lines from the extension, and --format csv on stdout
    r = runner.invoke(app, ["predict", clip, "--model", str(tiny_bundle), "-o", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 0 and json.loads((tmp_path / "r.jsonl").read_text())["status"] == "ok"
    r = runner.invoke(app, ["predict", clip, str(tmp_path / "gone.avi"), "--model", str(tiny_bundle),
                            "--format", "csv"])
    assert r.exit_code == 1
    rows = list(csv.reader(r.stdout.splitlines()))
    assert len(rows) == 3 and rows[2][4] == "error" and "gone.avi: file not found" in rows[2][-1]


def test_output_options_that_clash_are_bad_usage(tiny_bundle, tmp_path):
    clip = str(EXAMPLES / "1001_DFA_HAP_XX.avi")
    for args in (["--format", "table", "-o", str(tmp_path / "x.txt")], ["--format", "csv", "--table"],
                 ["--format", "table", "--json"], ["--plot", str(tmp_path / "t.png")]):
        r = runner.invoke(app, ["predict", clip, "--model", str(tiny_bundle), *args])
        assert r.exit_code == 2, args
    assert not list(tmp_path.iterdir())


def test_ctrl_c_keeps_the_output_file_and_the_plot(tiny_bundle, tmp_path):
    out, png = tmp_path / "live.jsonl", tmp_path / "live.png"
    with endless_source() as source:
        proc = emo("predict", "-", "--model", tiny_bundle, "--window", "1", "-o", out, "--plot", png,
                   stdin=source.stdout)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.glob(".live.jsonl.*")):
            time.sleep(0.2)
        tmp = list(tmp_path.glob(".live.jsonl.*"))[0]
        while time.monotonic() < deadline and b"segment" not in tmp.read_bytes():
            time.sleep(0.2)  # the first segment is in the temporary file: the run is under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    out_lines = lines(out.read_text())
    assert "segment" in out_lines[0] and out_lines[-1]["status"] == "ok"
    assert any(n.startswith("interrupted after") for n in out_lines[-1]["notes"])
    assert png.stat().st_size > 1000


def test_frames_lines_for_a_file_a_stream_and_in_csv(tiny_bundle):
    import csv

    clip = EXAMPLES / "1001_DFA_HAP_XX.avi"
    r = runner.invoke(app, ["predict", str(clip), "--model", str(tiny_bundle), "--window", "1", "--frames", "--json"])
    assert r.exit_code == 0, r.output
    out = lines(r.stdout)
    frames = [o["frame"] for o in out if "frame" in o]
    assert len(frames) == out[-1]["frames_used"] == 11 and [f["time"] for f in frames][:3] == [0.0, 0.2, 0.4]
    for f in frames:  # a box inside the 480x360 picture, and face scores that sum to 1
        x, y, w, h = f["box"]  # one box format everywhere: x, y, w, h (as faces[].box)
        assert 0 <= x and x + w <= 480 and 0 <= y and y + h <= 360 and w > 0 and h > 0
        assert sum(f["face_scores"].values()) == pytest.approx(1.0, abs=1e-4)
    # a stream: each window's frames come just before its segment line
    r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--window", "1", "--frames", "--json"],
                      input=clip.read_bytes())
    assert r.exit_code == 0, r.output
    kinds = ["frame" if "frame" in o else "segment" if "segment" in o else "result" for o in lines(r.stdout)]
    assert kinds[:6] == ["frame"] * 5 + ["segment"] and kinds[-1] == "result" and kinds.count("frame") == 11
    stream_frames = [o["frame"] for o in lines(r.stdout) if "frame" in o]
    assert stream_frames[0]["box"] == pytest.approx(frames[0]["box"], abs=3.0)  # the same face, found the same
    r = runner.invoke(app, ["predict", str(clip), "--model", str(tiny_bundle), "--frames", "--format", "csv"])
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert [row["kind"] for row in rows] == ["frame"] * 11 + ["result"]
    assert len(rows[0]["box"].split()) == 4 and float(rows[0]["face_happy"]) > 0
    r = runner.invoke(app, ["predict", str(clip), "--model", str(tiny_bundle), "--frames", "--table"])
    assert r.exit_code == 2


def test_live_view_draws_a_bar_per_emotion_and_leaves_the_segment_lines():
    import io

    from rich.console import Console

    from emocli.report.output import LiveView

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    view = LiveView(console)
    seg = {"start": 0.0, "end": 2.0, "label": "happy", "scores": {lab: (0.7 if lab == "happy" else 0.05) for lab in LABELS},
           "face_scores": {lab: 1 / 7 for lab in LABELS}, "voice_scores": None, "frames_used": 10}
    view.segment("<stdin>", seg)
    drawn = buf.getvalue()
    assert "2.0 s" in drawn and "happy" in drawn and "\u2588" * 17 in drawn  # 0.7 of a 24-character bar
    view.stop()
    assert "0.0-2.0 s" in buf.getvalue()


def test_piped_mp4_with_its_index_at_the_end_is_read_whole_and_a_faststart_one_streams(tiny_bundle, tmp_path):
    clip = str(EXAMPLES / "1001_DFA_SAD_XX.avi")
    late, early = tmp_path / "late.mp4", tmp_path / "early.mp4"
    ffmpeg("-i", clip, "-c:v", "mpeg4", "-c:a", "aac", str(late))  # ffmpeg writes moov after mdat by default
    ffmpeg("-i", clip, "-c:v", "mpeg4", "-c:a", "aac", "-movflags", "+faststart", str(early))
    assert live.index_after_data(late.read_bytes()[:4096]) is True
    assert live.index_after_data(early.read_bytes()[:4096]) is False
    assert live.index_after_data(b"RIFF....AVI ") is False and live.index_after_data(late.read_bytes()[:20]) is None
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-stdin-*")))
    results = {}
    for path in (late, early):
        r = runner.invoke(app, ["predict", "-", "--model", str(tiny_bundle), "--window", "1", "--json"],
                          input=path.read_bytes())
        assert r.exit_code == 0, r.output
        out = lines(r.stdout)
        assert out[-1]["status"] == "ok" and out[-1]["modalities"] == ["face", "voice"] and len(out) >= 3
        results[path.name] = out[-1]
    assert any("index after its media data" in n for n in results["late.mp4"]["notes"])
    assert not any("index after" in n for n in results["early.mp4"]["notes"])
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "emo-stdin-*"))) == before  # the copy is removed


def test_an_mp4_over_http_without_range_requests_is_scored_like_the_file(tiny_bundle, tmp_path):
    """python -m http.server answers no Range request: an MP4 whose index follows its media data cannot be
    decoded from it as it arrives, so emo fetches it whole (a note says so); a +faststart one streams."""
    import functools
    import http.server
    import threading

    clip = str(EXAMPLES / "1001_DFA_SAD_XX.avi")
    ffmpeg("-i", clip, "-c:v", "mpeg4", "-c:a", "aac", str(tmp_path / "late.mp4"))
    ffmpeg("-i", clip, "-c:v", "mpeg4", "-c:a", "aac", "-movflags", "+faststart", str(tmp_path / "early.mp4"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        as_file = lines(runner.invoke(app, ["predict", str(tmp_path / "late.mp4"), "--model", str(tiny_bundle),
                                            "--json"]).stdout)[-1]
        late = runner.invoke(app, ["predict", f"{base}/late.mp4", "--model", str(tiny_bundle), "--json"])
        early = runner.invoke(app, ["predict", f"{base}/early.mp4", "--model", str(tiny_bundle), "--json"])
    finally:
        server.shutdown()
    assert late.exit_code == 0, late.output
    res = lines(late.stdout)[-1]
    assert res["status"] == "ok" and res["label"] == as_file["label"] and res["scores"] == as_file["scores"]
    assert any("+faststart" in n for n in res["notes"])
    assert early.exit_code == 0, early.output
    assert not any("+faststart" in n for n in lines(early.stdout)[-1]["notes"])
