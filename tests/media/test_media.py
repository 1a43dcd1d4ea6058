import numpy as np
import pytest

from conftest import DATA, make_clip
from emocli.media import ffmpeg as media
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



def test_probe_and_load_audio_in_one_run_equal_the_two_runs(tmp_path):
    """An audio file's description and samples from one ffmpeg run are what probe() and
    load_audio() give in two (whole, and cut by max_seconds)."""
    import subprocess

    from conftest import write_wav

    rng = np.random.default_rng(0)
    wav = write_wav(tmp_path / "-dash voix.wav", 0.3 * rng.standard_normal(3 * 22050), sr=22050)
    flac = DATA / "ravdess_shouted_03-01-05-02-02-01-18.flac"
    mp3 = tmp_path / "clip.mp3"
    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-i", str(wav), str(mp3)], check=True)
    for path in (wav, flac, mp3):
        info, audio = media.probe_and_load_audio(path)
        assert info == media.probe(path)
        np.testing.assert_array_equal(audio, media.load_audio(path, info=info))
        _, cut = media.probe_and_load_audio(path, max_seconds=1.0)
        np.testing.assert_array_equal(cut, media.load_audio(path, info=info, max_seconds=1.0))


def test_probe_and_load_audio_leaves_other_files_to_the_usual_path(tmp_path, clip):
    """Video, two audio streams, a damaged or misnamed file: None, and the usual path says what is wrong."""
    import subprocess

    from conftest import write_wav

    assert media.probe_and_load_audio(clip) is None  # not an audio extension
    wav = write_wav(tmp_path / "a.wav", 0.1 * np.ones(16000))
    two = tmp_path / "two.m4a"
    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-i", str(wav), "-i", str(wav), "-map", "0:a", "-map", "1:a",
                    "-c:a", "aac", str(two)], check=True)
    assert media.probe(two).audio_streams == 2 and media.probe_and_load_audio(two) is None
    with_video = tmp_path / "video.m4a"
    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-i", str(clip), "-c:v", "mpeg4", "-c:a", "aac", "-f", "mp4",
                    str(with_video)], check=True)
    assert media.probe(with_video).has_video and media.probe_and_load_audio(with_video) is None
    torn = tmp_path / "torn.flac"
    torn.write_bytes(b"fLaC" + b"\0" * 200)
    assert media.probe_and_load_audio(torn) is None
    with pytest.raises(MediaError, match="torn.flac"):
        media.probe(torn)
    assert media.probe_and_load_audio(tmp_path / "missing.wav") is None
