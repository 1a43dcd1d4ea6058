"""The numpy Whisper encoder: front end, forward pass, pooling, and the shipped converted weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emocli.voice import encoder as ve
from emocli.errors import ModelError, ParameterError
from emocli.files import sha256_file

from conftest import DATA, REPO, write_wav

EXAMPLE = REPO / "examples" / "1001_DFA_HAP_XX.avi"


def tiny_weights(*, dim: int = 16, heads: int = 2, layers: int = 2, positions: int = 60, seed: int = 0) -> dict:
    """Random weights with the converted encoder's names and shapes (CTranslate2's layout)."""
    rng = np.random.default_rng(seed)

    def r(*shape, s=0.2):
        return (rng.standard_normal(shape) * s).astype(np.float16)

    w = {"conv1.weight": r(dim, ve.N_MELS, 3), "conv1.bias": r(dim), "conv2.weight": r(dim, dim, 3),
         "conv2.bias": r(dim), "position_encodings.encodings": r(positions, dim),
         "layer_norm.gamma": 1 + r(dim), "layer_norm.beta": r(dim), "num_heads": np.array(heads, np.int16)}
    for i in range(layers):
        p = f"layer_{i}."
        w.update({p + "self_attention.layer_norm.gamma": 1 + r(dim), p + "self_attention.layer_norm.beta": r(dim),
                  p + "self_attention.linear_0.weight": r(3 * dim, dim), p + "self_attention.linear_0.bias": r(3 * dim),
                  p + "self_attention.linear_1.weight": r(dim, dim), p + "self_attention.linear_1.bias": r(dim),
                  p + "ffn.layer_norm.gamma": 1 + r(dim), p + "ffn.layer_norm.beta": r(dim),
                  p + "ffn.linear_0.weight": r(4 * dim, dim), p + "ffn.linear_0.bias": r(4 * dim),
                  p + "ffn.linear_1.weight": r(dim, 4 * dim), p + "ffn.linear_1.bias": r(dim)})
    return w


def reference_encoder(w: dict, mel: np.ndarray) -> np.ndarray:
    """openai/whisper's AudioEncoder.forward written out plainly (loops, float64, math.erf GELU)."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    heads = int(w["num_heads"])
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))

    def conv(x, wt, b, stride):  # x (C_in, T), torch Conv1d(kernel 3, padding 1)
        xp = np.pad(x, ((0, 0), (1, 1)))
        n = (xp.shape[1] - 3) // stride + 1
        return np.stack([np.einsum("oik,ik->o", wt, xp[:, t * stride:t * stride + 3]) + b for t in range(n)], 1)

    def ln(x, g, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b

    x = gelu(conv(mel.astype(np.float64), w["conv1.weight"], w["conv1.bias"], 1))
    x = gelu(conv(x, w["conv2.weight"], w["conv2.bias"], 2)).T
    x = x + w["position_encodings.encodings"][:len(x)]
    d = x.shape[1]
    hd = d // heads
    i = 0
    while f"layer_{i}.ffn.linear_0.weight" in w:
        p = f"layer_{i}."
        y = ln(x, w[p + "self_attention.layer_norm.gamma"], w[p + "self_attention.layer_norm.beta"])
        wq, wk, wv = np.split(w[p + "self_attention.linear_0.weight"], 3)
        bq, bk, bv = np.split(w[p + "self_attention.linear_0.bias"], 3)
        q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
        outs = []
        for h in range(heads):
            s = slice(h * hd, (h + 1) * hd)
            a = (q[:, s] * hd ** -0.25) @ (k[:, s] * hd ** -0.25).T
            a = np.exp(a - a.max(1, keepdims=True))
            outs.append((a / a.sum(1, keepdims=True)) @ v[:, s])
        x = x + np.hstack(outs) @ w[p + "self_attention.linear_1.weight"].T + w[p + "self_attention.linear_1.bias"]
        y = ln(x, w[p + "ffn.layer_norm.gamma"], w[p + "ffn.layer_norm.beta"])
        y = gelu(y @ w[p + "ffn.linear_0.weight"].T + w[p + "ffn.linear_0.bias"])
        x = x + y @ w[p + "ffn.linear_1.weight"].T + w[p + "ffn.linear_1.bias"]
        i += 1
    return ln(x, w["layer_norm.gamma"], w["layer_norm.beta"])


def tone(freq: float, seconds: float, sr: int = ve.SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def test_encoder_matches_a_plain_reference_and_has_whisper_shapes():
    w = tiny_weights()
    enc = ve.WhisperEncoder(w)
    assert (enc.dim, enc.n_heads, enc.n_layers) == (16, 2, 2)
    mel = np.random.default_rng(1).standard_normal((ve.N_MELS, 40)).astype(np.float32)
    out = enc(mel)
    assert out.shape == (20, 16) and out.dtype == np.float32  # stride 2: one frame per two mel frames
    np.testing.assert_allclose(out, reference_encoder(w, mel), atol=2e-4)
    with pytest.raises(ParameterError, match="at most 120 mel frames"):
        enc(np.zeros((ve.N_MELS, 122), np.float32))


def test_frames_pad_to_whole_seconds_and_split_long_clips(tmp_path):
    enc = ve.WhisperEncoder(tiny_weights(dim=8, layers=1, positions=1500))
    frames, n_real = enc.frames(tone(300, 1.3))
    assert frames.shape == (100, 8) and n_real == 65  # padded to 2 s = 100 frames of 20 ms
    frames, n_real = enc.frames(tone(300, 31.0))  # a 30 s piece + a 1 s piece
    assert frames.shape == (1550, 8) and n_real == 1550
    path = tmp_path / "enc.npz"
    np.savez(path, **tiny_weights())
    assert ve.WhisperEncoder.load(path).dim == 16
    with pytest.raises(ModelError, match="sha256 differs"):
        ve.WhisperEncoder.load(path, sha256="0" * 64)
    with pytest.raises(ModelError, match="not found"):
        ve.WhisperEncoder.load(tmp_path / "missing.npz")
    (tmp_path / "torn.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError, match=r"torn\.npz: not usable speech-encoder weights .*convert_whisper_encoder"):
        ve.WhisperEncoder.load(tmp_path / "torn.npz")


def test_mel_filterbank_and_log_mel_put_a_sine_in_its_band():
    filters = ve.mel_filters()
    assert filters.shape == (ve.N_MELS, ve.N_FFT // 2 + 1) and (filters >= 0).all()
    centres = ve._mel_to_hz(np.linspace(0, ve._hz_to_mel(8000.0), ve.N_MELS + 2))[1:-1]
    for f0 in (250.0, 1000.0, 3000.0):
        mel = ve.log_mel(tone(f0, 1.0))
        assert mel.shape == (ve.N_MELS, 100)  # 10 ms hop
        band = int(np.median(mel.argmax(0)))
        assert abs(centres[band] - f0) <= np.diff(centres)[max(band - 1, 0)]
        assert mel.max() - mel.min() <= 2.0 + 1e-6  # clamped 8 decades below the peak, divided by 4
    assert np.allclose(ve._mel_to_hz(ve._hz_to_mel(np.array([100.0, 999.0, 1000.0, 5000.0]))),
                       [100.0, 999.0, 1000.0, 5000.0])


def test_pooling_keeps_only_active_frames():
    sr = ve.SAMPLE_RATE
    audio = np.concatenate([np.zeros(sr // 2, np.float32), tone(200, 1.0), np.zeros(sr // 2, np.float32)])
    n_frames = 150  # 2 s of audio, 3 s of frames: the last 50 are padding
    mask = ve.active_mask(audio, n_frames)
    assert mask.shape == (n_frames,)
    assert mask[25:75].all() and not mask[:25].any() and not mask[75:].any()
    frames = np.zeros((n_frames, 4), np.float32)
    frames[mask] = 1.0
    frames[~mask] = 100.0  # silence and padding must not move the statistics
    np.testing.assert_allclose(ve.pool(frames, mask), [1, 1, 1, 1, 0, 0, 0, 0])
    silent = ve.active_mask(np.zeros(sr, np.float32), 60)
    assert silent[:50].all() and not silent[50:].any()  # silence: every real frame, never padding


def test_shipped_encoder_on_the_example_clip():
    from emocli.media.ffmpeg import load_audio

    path = ve.default_encoder_path()
    if not path.is_file():
        pytest.skip("converted encoder not shipped in this checkout")
    assert sha256_file(path) == ve.ENCODER_SHA256
    enc = ve.LiteWhisperEncoder.load(sha256=ve.ENCODER_SHA256)
    assert (enc.dim, enc.n_positions) == (384, 1500)
    assert (path.parent / (path.stem + ".LICENSE.txt")).read_text().count("MIT License") == 1
    audio = load_audio(EXAMPLE)
    frames, n_real = enc.frames(audio)
    assert frames.shape == (50 * math.ceil(len(audio) / ve.SAMPLE_RATE), 384)
    assert np.isfinite(frames).all() and n_real == math.ceil(len(audio) / ve.SAMPLES_PER_FRAME)
    vec = ve.embed(audio, ve.SAMPLE_RATE, enc)
    assert vec.shape == (768,) and np.isfinite(vec).all() and (vec[384:] >= 0).all()


def test_shipped_litert_encoder_equals_the_numpy_reference_pass():
    """The shipped LiteRT encoder against the frames the numpy pass (WhisperEncoder on the converted
    float16 weights) gave for the example's first 2 s, stored by scripts/convert_whisper_encoder.py
    --fixture; then again after a resize to another length and back."""
    from emocli.media.ffmpeg import load_audio

    ref = np.load(DATA / "whisper_reference.npz")
    enc = ve.LiteWhisperEncoder.load(sha256=ve.ENCODER_SHA256)
    audio = load_audio(EXAMPLE.with_name(str(ref["clip"])))
    mel = ve.log_mel(audio[:int(ref["seconds"]) * ve.SAMPLE_RATE], n_frames=int(ref["seconds"]) * 100)
    np.testing.assert_allclose(enc(mel), ref["frames"], atol=5e-4)
    assert enc(ve.log_mel(audio, n_frames=600)).shape == (300, 384)
    np.testing.assert_allclose(enc(mel), ref["frames"], atol=5e-4)
    with pytest.raises(ParameterError, match="at most 3000 mel frames"):
        enc(np.zeros((ve.N_MELS, 3002), np.float32))


def test_encoder_file_problems_are_one_line_model_errors(tmp_path):
    good = ve.default_encoder_path()
    with pytest.raises(ModelError, match="speech encoder not found"):
        ve.LiteWhisperEncoder.load(tmp_path / "missing.tflite")
    (tmp_path / "torn.tflite").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"torn\.tflite: not usable speech encoder .*convert_whisper_encoder"):
        ve.LiteWhisperEncoder.load(tmp_path / "torn.tflite")
    with pytest.raises(ModelError, match="sha256 differs"):
        ve.LiteWhisperEncoder.load(good, sha256="0" * 64)
    face = REPO / "models" / "default" / "face.tflite"
    if face.is_file():
        with pytest.raises(ModelError, match="not usable speech encoder"):
            ve.LiteWhisperEncoder.load(face)


def test_whisper_feature_sets_need_the_embedding():
    from emocli.voice.features import clip_vector, feature_dimension, frame_statistics, settings

    assert feature_dimension("whisper") == 768 and feature_dimension("whisper+rich") == 768 + 289
    frames = np.random.default_rng(0).random((36, 20))
    with pytest.raises(ValueError, match="speech-encoder embedding"):
        frame_statistics(frames, feature_set="whisper+rich")
    with pytest.raises(ValueError, match="needs the"):
        clip_vector("whisper", frames=frames)
    emb = np.arange(768, dtype=np.float32)
    v = clip_vector("whisper+rich", frames=frames, embedding=emb)
    assert v.shape == (1057,) and (v[:768] == emb).all()
    np.testing.assert_array_equal(v[768:], frame_statistics(frames, feature_set="rich"))
    st = settings(feature_set="whisper")
    assert st["encoder_sha256"] == ve.ENCODER_SHA256 and st["encoder"] == ve.ENCODER_FILE


def test_train_audio_with_whisper_features_records_the_encoder(tmp_path):
    """emo train-audio --feature-set whisper+rich on generated EmoDB-named tones; the bundle predicts."""
    import json
    from typer.testing import CliRunner

    from emocli.voice.model import VoiceModel
    from emocli.cli.app import app

    if not ve.default_encoder_path().is_file():
        pytest.skip("converted encoder not shipped in this checkout")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "emodb"
    corpus.mkdir()
    for spk in ("03", "08", "09"):
        for code, freq in (("W", 300.0), ("T", 110.0)):
            for take in ("a", "b"):
                x = tone(freq * rng.uniform(0.9, 1.1), 0.5) + 0.01 * rng.standard_normal(8000).astype(np.float32)
                write_wav(corpus / f"{spk}a01{code}{take}.wav", x, ve.SAMPLE_RATE)
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--test-speakers", "03",
                                   "--feature-set", "whisper+rich", "--no-augment", "--repeats", "1",
                                   "--workers", "1", "--cache", str(tmp_path / "cache"), "--no-vad"])  # tones
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "voice.json").read_text())
    assert meta["n_features"] == 1057 and meta["features"]["encoder_sha256"] == ve.ENCODER_SHA256
    assert meta["test"]["n"] == 4
    assert len(list((tmp_path / "cache").glob("*-enc*.npz"))) == 12  # embeddings cached beside the features
    model = VoiceModel.load(out, runtime=True)

    def score_audio(audio):  # the model's features of one clip, computed as training did, then scored
        from emocli.voice.features import clip_feature_sets

        st = model.settings_
        x = clip_feature_sets(audio, ve.SAMPLE_RATE, feature_sets=[st["feature_set"]], window=float(st["window_s"]),
                              step=float(st["step_s"]))[st["feature_set"]]
        return model.predict_proba(x)[0]

    p = score_audio(tone(300.0, 0.5))
    assert p.shape == (2,) and abs(p.sum() - 1) < 1e-9
    from emocli.pipeline.core import Pipeline

    # emo predict scores such a bundle from the same features training used
    from emocli.pipeline.options import Options
    wav = corpus / "08a01Wa.wav"
    from emocli.media.ffmpeg import load_audio

    res = Pipeline(out, Options()).run(wav)
    assert res.status == "ok" and res.modalities == ["voice"]
    direct = score_audio(load_audio(wav, sr=ve.SAMPLE_RATE))
    got = [res.voice_scores[lab] for lab in model.labels]
    assert np.allclose(got, direct, atol=1e-5)
    # a model trained on the float32 file of the same weights (shipped until 2026-12-06) reads these frames
    former = next(iter(ve.SAME_ENCODER_SHA256 - {ve.ENCODER_SHA256}))
    meta["features"]["encoder_sha256"] = former
    (out / "voice.json").write_text(json.dumps(meta))
    assert VoiceModel.load(out, runtime=True).settings_["encoder_sha256"] == former
    meta["features"]["encoder_sha256"] = "0" * 64
    (out / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="speech encoder"):
        VoiceModel.load(out, runtime=True)


def test_shipped_encoder_stores_its_weights_in_float16():
    """The shipped file keeps Whisper's 8.2 M weights in float16, as the source has them (half the
    float32 file's size). Had the converter folded a layer norm into the next layer, float16 would
    round the products: the frames test above (5e-4) catches that (they were off by 2.3e-2)."""
    from emocli.quiet_imports import lite_interpreter

    interp = lite_interpreter(str(ve.default_encoder_path()))
    consts = [t for t in interp.get_tensor_details() if t["dtype"] == np.float16]
    assert sum(int(np.prod(t["shape"])) for t in consts) > 8_000_000
    assert ve.default_encoder_path().stat().st_size < 17_000_000


def test_the_shipped_speech_encoder_model_scores_clips_and_segments(example_clip):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    pipe = Pipeline(options=Options(use_face=False, window=1.0))
    assert pipe.voice.settings["feature_set"] in ("whisper", "whisper+rich")
    res = pipe.run(example_clip)
    assert res.status == "ok" and res.modalities == ["voice"]
    assert sum(res.voice_scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert len(res.segments) >= 2
    for seg in res.segments:  # each segment's voice comes from its own audio's embedding
        assert seg["voice_scores"] is not None and sum(seg["voice_scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert res.segments[0]["voice_scores"] != res.segments[1]["voice_scores"]


def test_pool_of_pieces_equals_pool_of_all_frames(rng):
    frames = rng.normal(3.0, 2.0, (237, 5)).astype(np.float32)
    mask = rng.random(250) < 0.6  # longer than the frames: the tail covers padding
    mask[:40] = False  # the first piece has no active frame
    want = ve.pool(frames, mask[:237])
    cuts = [0, 40, 41, 150, 237]
    got = ve.pool((frames[a:b] for a, b in zip(cuts, cuts[1:])), mask)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ParameterError):
        ve.pool(iter([frames[:40]]), mask)


def test_embed_streams_the_pieces_and_gives_the_frames_pooling():
    """embed() pools piece by piece (a long clip's frames are never all held) and gives what
    pooling all frames with the clip's activity mask gives."""
    path = ve.default_encoder_path()
    if not path.is_file():
        pytest.skip("converted encoder not shipped in this checkout")
    enc = ve.LiteWhisperEncoder.load(sha256=ve.ENCODER_SHA256)
    sr = ve.SAMPLE_RATE
    audio = np.concatenate([tone(220, 20.0), np.zeros(5 * sr, np.float32), tone(330, 7.0)])  # two pieces
    frames, _ = enc.frames(audio)
    want = ve.pool(frames, ve.active_mask(audio, len(frames)))
    np.testing.assert_allclose(ve.embed(audio, sr, enc), want, rtol=1e-5, atol=1e-6)
