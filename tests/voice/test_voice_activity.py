"""The voice-activity gate: Silero VAD in numpy (voice_activity.py) and its use in the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, REPO, ffmpeg, write_wav
from emocli.bundle import DEFAULT_BUNDLE, verify_bundle, write_manifest
from emocli.cli.app import app
from emocli.errors import ModelError
from emocli.labels import LABELS
from emocli.media.ffmpeg import load_audio
from emocli.voice.levels import window_levels_dbfs
from emocli.voice.activity import (CHUNK, LEVEL_DBFS, MIN_SPEECH_S, SAMPLE_RATE, THRESHOLD, VAD_FILE, SileroVAD,
                                   at_level, gate_reason, has_speech, speech_seconds)

runner = CliRunner()
FIXTURE = REPO / "tests" / "data" / "silero_vad_reference.npz"
SPEECH = EXAMPLES / "1001_DFA_HAP_XX.avi"  # speech from about 0.45 s to 1.4 s
SHOUTED = REPO / "tests" / "data" / "ravdess_shouted_03-01-05-02-02-01-18.flac"  # RAVDESS, see ATTRIBUTION.md


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD.load(DEFAULT_BUNDLE / VAD_FILE)


def music(seconds: float = 2.0) -> np.ndarray:
    """A chord progression with harmonics over a drum-like noise pulse (no speech), about -20 dBFS."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * h * t) / h for f in (261.6, 329.6, 392.0) for h in (1, 2, 3, 4))
    pulse = np.random.default_rng(3).standard_normal(len(t)) * np.exp(-20 * (t % 0.5))
    x = chord * np.exp(-2.0 * (t % 1.0)) + 0.5 * pulse
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


@pytest.fixture(scope="module")
def vad_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """tiny_bundle with the shipped voice_vad.npz added to it."""
    directory = tmp_path_factory.mktemp("vad_bundle")
    shutil.copytree(tiny_bundle, directory, dirs_exist_ok=True)
    shutil.copy(DEFAULT_BUNDLE / VAD_FILE, directory / VAD_FILE)
    write_manifest(directory, labels=list(LABELS))
    return directory


@pytest.fixture(scope="module")
def music_with_face(tmp_path_factory) -> Path:
    """The example clip's picture (a face) with generated music for its sound."""
    d = tmp_path_factory.mktemp("music")
    wav = write_wav(d / "music.wav", music(2.0))
    out = d / "music_face.avi"
    ffmpeg("-i", str(EXAMPLES / "1001_DFA_NEU_XX.avi"), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
           "-c:v", "copy", "-c:a", "pcm_s16le", "-shortest", str(out))
    return out


def result(stdout: str) -> dict:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()][-1]


# -- the model ----------------------------------------------------------------------------------


def test_numpy_vad_reproduces_onnxruntime(vad):
    """Against the probabilities onnxruntime gave for the wheel's silero_vad.onnx, stored by
    scripts/convert_silero_vad.py --fixture: 62 chunks of a real clip, 63 of seeded noise.
    Tolerance 1e-4 (the conversion measured 2.3e-6 at most); the clip is decoded again here."""
    ref = np.load(FIXTURE)
    assert str(ref["speech_clip"]) == SPEECH.name
    ours, _ = vad.probabilities(load_audio(SPEECH, sr=SAMPLE_RATE))
    assert ours.shape == ref["speech"].shape == (62,)
    assert np.abs(ours - ref["speech"]).max() < 1e-4
    noise = (np.random.default_rng(int(ref["noise_seed"])).standard_normal(2 * SAMPLE_RATE) * 0.05).astype(np.float32)
    ours, _ = vad.probabilities(noise)
    assert np.abs(ours - ref["noise"]).max() < 1e-4
    assert (ref["speech"] >= THRESHOLD).sum() > 20 and (ref["noise"] < THRESHOLD).all()


def test_a_stream_in_pieces_gives_the_whole_clips_probabilities(vad):
    audio = load_audio(SPEECH, sr=SAMPLE_RATE)
    whole, _ = vad.probabilities(audio)
    state, parts = None, []
    for a, b in ((0, 3 * CHUNK), (3 * CHUNK, 20 * CHUNK), (20 * CHUNK, len(audio))):
        p, state = vad.probabilities(audio[a:b], state=state)
        parts.append(p)
    assert np.abs(np.concatenate(parts) - whole).max() < 1e-5
    assert len(whole) == -(-len(audio) // CHUNK)  # one probability per started chunk


def test_gate_rule_counts_seconds_of_speech_chunks():
    p = np.zeros(100, np.float32)
    p[:9] = THRESHOLD  # 9 chunks = 0.288 s
    assert speech_seconds(p) == pytest.approx(9 * CHUNK / SAMPLE_RATE)
    assert not has_speech(p)
    p[9] = 0.9
    assert speech_seconds(p) >= MIN_SPEECH_S and has_speech(p)
    assert has_speech(np.array([0.0, 0.0, 0.9, 0.9], np.float32))  # a short segment: half of it is enough
    assert not has_speech(np.zeros(0, np.float32))


def test_shipped_bundle_lists_the_vad_with_its_licence():
    manifest = verify_bundle(DEFAULT_BUNDLE)
    assert VAD_FILE in manifest["files"]
    licence = (DEFAULT_BUNDLE / "LICENSE.voice_vad.MIT.txt").read_text()
    assert "MIT License" in licence and manifest["files"][VAD_FILE] in licence


# -- the gate in emo predict ----------------------------------------------------------------------


def test_music_under_a_face_scores_the_face_alone(vad_bundle, music_with_face):
    r = runner.invoke(app, ["predict", str(music_with_face), "--model", str(vad_bundle), "--json"])
    assert r.exit_code == 0, r.output
    res = result(r.stdout)
    assert res["status"] == "ok" and res["voice_scores"] is None and res["face_scores"] is not None
    assert any(n.startswith("no speech detected (voice activity:") and n.endswith("voice not used")
               for n in res["notes"])


def test_music_alone_is_the_silence_path(vad_bundle, tmp_path):
    """A wav of music, like a silent wav, has nothing to score: a one-line error, exit 1, naming the gate."""
    wav = write_wav(tmp_path / "music.wav", music(2.0))
    r = runner.invoke(app, ["predict", str(wav), "--model", str(vad_bundle), "--json"])
    assert r.exit_code == 1
    assert result(r.stdout)["status"] == "error" and "voice activity" in r.output


def test_speech_passes_the_gate(vad_bundle):
    r = runner.invoke(app, ["predict", str(SPEECH), "--model", str(vad_bundle), "--json"])
    assert r.exit_code == 0, r.output
    res = result(r.stdout)
    assert res["voice_scores"] is not None and not any("voice activity" in n for n in res["notes"])


def test_bundle_without_the_vad_keeps_the_level_gate(tiny_bundle, music_with_face):
    assert VAD_FILE not in verify_bundle(tiny_bundle)["files"]
    r = runner.invoke(app, ["predict", str(music_with_face), "--model", str(tiny_bundle), "--json"])
    assert r.exit_code == 0, r.output
    assert result(r.stdout)["voice_scores"] is not None  # loud music passes the level gate


@pytest.mark.parametrize("live", [False, True], ids=["file", "stream"])
def test_window_segments_say_which_are_gated(vad_bundle, tmp_path, live):
    """2 s of speech then 2 s of music, 1-s windows: the speech windows have a voice, the music ones say no speech."""
    audio = np.concatenate([load_audio(SPEECH, sr=SAMPLE_RATE)[:2 * SAMPLE_RATE], music(2.0)])
    wav = write_wav(tmp_path / "half.wav", audio)
    args = ["predict", "-" if live else str(wav), "--model", str(vad_bundle), "--window", "1", "--json"]
    r = runner.invoke(app, args, input=wav.read_bytes() if live else None)
    assert r.exit_code == 0, r.output
    segs = [json.loads(line)["segment"] for line in r.stdout.splitlines() if '"segment"' in line]
    assert [s["start"] for s in segs] == [0.0, 1.0, 2.0, 3.0]
    assert all(s["voice_scores"] is not None and not s.get("notes") for s in segs[:2])
    assert all(s["voice_scores"] is None and s["label"] is None for s in segs[2:])
    assert all("no speech (voice activity)" in s["notes"][0] for s in segs[2:])
    assert result(r.stdout)["voice_scores"] is not None


# -- a damaged or mismatched VAD file ------------------------------------------------------------


def test_damaged_vad_file_is_a_one_line_error_naming_it(vad_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(vad_bundle, bad)
    data = (bad / VAD_FILE).read_bytes()
    (bad / VAD_FILE).write_bytes(data[: len(data) // 2])
    r = runner.invoke(app, ["predict", str(SPEECH), "--model", str(bad), "--json"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and VAD_FILE in err[0] and "convert_silero_vad.py" in err[0] and "sha256" in err[0]


def test_wrong_weights_under_a_rewritten_manifest_are_refused(vad_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(vad_bundle, bad)
    np.savez(bad / VAD_FILE, conv1_weight=np.zeros(3))  # a valid npz, not the VAD's weights
    write_manifest(bad, labels=list(LABELS))
    with pytest.raises(ModelError, match=r"voice_vad\.npz.*convert_silero_vad\.py"):
        SileroVAD.load(bad / VAD_FILE)
    r = runner.invoke(app, ["predict", str(SPEECH), "--model", str(bad), "--json"])
    assert r.exit_code == 1 and VAD_FILE in r.stderr and "Traceback" not in r.output


def _gate(vad, x):
    lv = window_levels_dbfs(x, SAMPLE_RATE)
    return gate_reason(vad.probabilities(at_level(x, lv))[0], lv)


def test_shouted_speech_passes_the_gate(vad):
    """Strong-intensity anger, peaking at -0.2 dBFS: Silero heard it as recorded finds 0.16 s of speech
    (the old gate rejected it); heard at the gate's level, it passes."""
    x = load_audio(SHOUTED, sr=SAMPLE_RATE)
    assert speech_seconds(vad.probabilities(x)[0]) < MIN_SPEECH_S  # the case: as recorded it fails
    assert _gate(vad, x) is None
    assert _gate(vad, np.clip(2 * x, -1, 1)) is None  # clipped harder still


def test_whispered_level_speech_passes_and_the_gate_ignores_the_level(vad):
    """Speech whose loudest stretch is at -65 dBFS (under the old absolute -50 dBFS floor) passes;
    the gate's decision and probabilities do not depend on the recording level."""
    x = load_audio(SPEECH, sr=SAMPLE_RATE)
    quiet = x * np.float32(10 ** ((-65 - window_levels_dbfs(x, SAMPLE_RATE).max()) / 20))
    assert window_levels_dbfs(quiet, SAMPLE_RATE).max() < -50
    assert _gate(vad, quiet) is None
    p_loud = vad.probabilities(at_level(x))[0]
    p_quiet = vad.probabilities(at_level(quiet))[0]
    assert np.abs(p_loud - p_quiet).max() < 1e-3
    assert abs(window_levels_dbfs(at_level(quiet), SAMPLE_RATE).max() - LEVEL_DBFS) < 0.01


def test_steady_sounds_and_silence_are_rejected_at_any_level(vad):
    """A microphone's hiss (at -65 dBFS: amplified to the gate's level, still no speech), a mains hum,
    a tone, music and digital silence are all rejected, each with its reason."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    cases = {"hiss": rng.standard_normal(len(t)) * 10 ** (-65 / 20),
             "hum": 0.05 * np.sin(2 * np.pi * 50 * t) + 0.02 * np.sin(2 * np.pi * 150 * t),
             "tone": 0.3 * np.sin(2 * np.pi * 440 * t), "music": music(3.0), "silence": np.zeros(len(t))}
    reasons = {k: _gate(vad, np.asarray(v, np.float32)) for k, v in cases.items()}
    assert all(reasons.values()), reasons
    assert reasons["silence"] == "digital silence"
    assert reasons["hiss"].startswith("a steady sound") and reasons["tone"].startswith("a steady sound")
    assert "s of speech" in reasons["music"]


def test_a_quiet_voice_is_scored_through_the_pipeline(vad_bundle, tmp_path):
    """End to end: the example's voice 50 dB down (loudest 50 ms at about -70 dBFS) still gives voice scores."""
    x = load_audio(SPEECH, sr=SAMPLE_RATE)
    wav = write_wav(tmp_path / "quiet.wav", x * 10 ** (-50 / 20))
    from emocli.pipeline.core import Pipeline

    res = Pipeline(vad_bundle).run(wav)
    assert res.status == "ok" and res.voice_scores is not None, res.notes
