import numpy as np
import pytest

from conftest import make_clip
from emocli import media
from emocli.errors import MediaError, NoAudioError


def test_probe_generated_clip(clip):
    info = media.probe(clip)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_frames_count_follows_duration_times_fps(clip):
    chunks = list(media.iter_frames(clip, fps=5, chunk=4))
    frames = np.concatenate([f for _, f in chunks])
    times = np.concatenate([t for t, _ in chunks])
    assert frames.dtype == np.uint8 and frames.shape[1:] == (240, 320, 3)
    assert abs(len(frames) - 2.0 * 5) <= 1
    assert all(len(f) <= 4 for _, f in chunks)  # fixed-size reads
    assert np.allclose(np.diff(times), 0.2)


def test_frames_downscaled_to_max_side(tmp_path):
    big = make_clip(tmp_path / "big.mp4", seconds=0.4, size="1920x1080", audio=False, vcodec="mpeg4")
    _, frames = next(media.iter_frames(big, fps=5, max_side=640))
    assert frames.shape[1:3] == (360, 640)


def test_audio_is_16k_mono_float(clip):
    audio = media.load_audio(clip)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(2.0 * media.SAMPLE_RATE, rel=0.02)
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_video_without_audio_raises_no_audio(tmp_path):
    silent = make_clip(tmp_path / "silent.avi", audio=False)
    assert not media.probe(silent).has_audio
    with pytest.raises(NoAudioError, match="silent.avi"):
        media.load_audio(silent)


@pytest.mark.parametrize("name,content,match", [
    ("missing.avi", None, "not found"),
    ("empty.avi", b"", "empty"),
    ("text.avi", b"this is not a video\n" * 20, "not a readable"),
])
def test_bad_files_name_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(MediaError, match=match) as exc:
        media.probe(p)
    assert name in str(exc.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(MediaError, match="directory"):
        media.probe(tmp_path)


def test_leading_dash_and_unicode_paths(tmp_path):
    p = make_clip(tmp_path / "-äé clip.avi", seconds=1.0)
    info = media.probe(p)
    assert info.has_video
    assert sum(len(f) for _, f in media.iter_frames(p, fps=5)) >= 4

