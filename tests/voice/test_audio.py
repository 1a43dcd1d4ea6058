"""Voice features and the voice model: generated signals, a tiny SVM on random features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emocli.voice.features import (FEATURE_NAMES, N_FEATURES, WINDOW_FEATURE_NAMES, clip_feature_sets,
                                   clip_statistics, feature_dimension, frame_statistics, n_frames, pitch_track,
                                   short_term_features, speed_perturb, window_features)
from emocli.voice.model import Selection, VoiceModel
from emocli.errors import ModelError, NoAudioError, NotFittedError
from emocli.labels import LABELS

from conftest import REPO, write_wav

SR = 16000


def tone(seconds: float = 1.0, freq: float = 200.0, *, rng=None, noise: float = 0.05) -> np.ndarray:
    """A voiced-like signal: a harmonic tone with a little noise, float32 in [-1, 1]."""
    rng = rng or np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (0.3 * x + noise * rng.standard_normal(t.size)).astype(np.float32)


# -- features -------------------------------------------------------------------------------

def test_short_term_features_shape_dtype_and_names():
    x = tone(1.0)
    f = short_term_features(x, SR)
    assert f.dtype == np.float32
    assert f.shape == (N_FEATURES, 1 + (SR - 800) // 400) == (34, n_frames(x.size, SR))
    assert len(FEATURE_NAMES) == 34 and np.isfinite(f).all()


def test_clip_statistics_dimensions():
    x = tone(1.5)
    thesis = clip_statistics(x, SR, feature_set="thesis68")
    assert thesis.shape == (68,) and thesis.dtype == np.float32
    frames = short_term_features(x, SR)
    np.testing.assert_allclose(thesis[:34], frames.mean(axis=1), rtol=1e-5, atol=1e-6)  # means first, then stds
    rich = clip_statistics(x, SR, feature_set="rich")
    assert rich.shape == (feature_dimension("rich"),) == (289,)
    assert np.isfinite(rich).all()
    both = clip_feature_sets(x, SR, feature_sets=("rich", "thesis68"))
    np.testing.assert_array_equal(both["thesis68"], thesis)
    np.testing.assert_array_equal(both["rich"], rich)


def test_spectral_maps_reproduce_pyaudioanalysis_mfcc_and_chroma():
    """The matrices the vectorised features use give pyAudioAnalysis's own per-window functions."""
    from emocli.voice import features as af
    from pyAudioAnalysis import ShortTermFeatures as stf

    fbank, dct, chroma = af._spectral_maps(SR, 800)
    rng = np.random.default_rng(3)
    for mag in (rng.random(400), rng.random(400) ** 8, np.zeros(400)):
        _, ref = stf.chroma_features(mag, SR, 400)
        total = (mag ** 2).sum()
        ours = chroma @ mag ** 2 / (total if total else np.finfo(float).eps)
        np.testing.assert_allclose(ours, np.asarray(ref).ravel(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.log10(mag @ fbank.T + np.finfo(float).eps) @ dct,
                                   stf.mfcc(mag, fbank, 13), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["examples/1001_DFA_ANG_XX.avi", "examples/1001_DFA_SAD_XX.avi",
                                  "tests/data/ravdess_shouted_03-01-05-02-02-01-18.flac"])
def test_features_equal_pyaudioanalysis_on_real_clips(name):
    """The vectorised features against pyAudioAnalysis's window-by-window feature_extraction (the reference)."""

    from emocli.media.ffmpeg import load_audio
    from pyAudioAnalysis import ShortTermFeatures as stf

    path = REPO / name
    if not path.exists():
        pytest.skip(f"{name} not in this checkout")
    x = load_audio(path)
    ref_in = x.astype(np.float64) - x.astype(np.float64).mean()
    ref_in *= 2.0 ** 15 / np.abs(ref_in).max()
    ref, _ = stf.feature_extraction(ref_in, SR, 800, 400, deltas=False)
    np.testing.assert_allclose(short_term_features(x, SR), ref.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_blockwise_features_equal_pyaudioanalysis_feature_extraction(monkeypatch):
    from emocli.voice import features as af
    from pyAudioAnalysis import ShortTermFeatures as stf

    t = np.arange(3 * SR) / SR
    x = (np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
         + 0.1 * np.random.default_rng(0).normal(size=len(t)) + 0.05).astype(np.float32)
    ref_in = x.astype(np.float64) - x.astype(np.float64).mean()  # emo's input scaling, all at once
    ref_in *= 2.0 ** 15 / np.abs(ref_in).max()
    win, hop = af.window_samples(SR, window=af.WINDOW, step=af.STEP)
    ref, _ = stf.feature_extraction(ref_in, SR, win, hop, deltas=False)
    monkeypatch.setattr(af, "AUDIO_BLOCK", 5000)  # many blocks, frames straddling their edges
    np.testing.assert_allclose(short_term_features(x, SR), ref.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_feature_import_does_not_load_matplotlib_or_sklearn():
    import subprocess
    import sys

    code = ("import sys; from emocli.voice.features import short_term_features as f; import numpy as np; "
            "f(np.zeros(16000, np.float32), 16000); from emocli.quiet_imports import import_keras; import_keras(); "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'scipy.signal') if m in sys.modules)); "
            "from pyAudioAnalysis import ShortTermFeatures as stf; "
            "y = stf.lfilter([1], [1.0, 0.5], np.ones(3)); print(y.tolist()); "  # the stand-in calls the real one
            "print(stf.plt.plot.__module__); "
            # later imports get the real modules, not the stand-ins (which have no file and only lfilter)
            "import matplotlib.pyplot, sklearn.svm, scipy.signal; "
            "print(hasattr(scipy.signal, '__file__'), callable(getattr(scipy.signal, 'butter', None)), "
            "scipy.signal.lfilter([1], [1.0, -0.5], np.ones(3)).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:4] == ["[]", "[1.0, 0.5, 0.75]", "matplotlib.pyplot", "True True [1.0, 1.5, 1.75]"]


def test_window_features_are_short_term_features_plus_pitch():
    x = tone(1.0)
    w = window_features(x, SR)
    assert w.shape == (len(WINDOW_FEATURE_NAMES), short_term_features(x, SR).shape[1]) == (36, 39)
    np.testing.assert_array_equal(w[:34], short_term_features(x, SR))
    # the 34-row frames are enough for thesis68, not for the pitch statistics of "rich"
    np.testing.assert_array_equal(frame_statistics(w, feature_set="thesis68"),
                                  frame_statistics(w[:34], feature_set="thesis68"))
    with pytest.raises(ValueError, match="pitch"):
        frame_statistics(w[:34], feature_set="rich")
    with pytest.raises(ValueError, match="unknown feature set"):
        frame_statistics(w, feature_set="nope")


def test_pitch_of_a_harmonic_tone():
    f0, voicing = pitch_track(tone(1.0, 180.0, noise=0.01), SR)
    assert np.median(f0) == pytest.approx(180.0, rel=0.03)
    assert np.median(voicing) > 0.9


@pytest.mark.parametrize("n", [0, 1, 799])
def test_too_short_audio_raises_no_audio_error(n):
    with pytest.raises(NoAudioError, match="too short"):
        clip_statistics(np.zeros(n, np.float32), SR, feature_set="thesis68")
    with pytest.raises(NoAudioError):
        window_features(np.zeros(n, np.float32), SR)


def test_exactly_one_window_works():
    assert short_term_features(tone(0.05), SR).shape == (34, 1)
    assert np.isfinite(clip_statistics(tone(0.05), SR, feature_set="rich")).all()


def test_bad_shapes_and_rates_are_parameter_errors():
    """emo's own error type, and still a ValueError for callers that catch one."""
    from emocli.errors import EmoError, ParameterError

    assert issubclass(ParameterError, EmoError) and issubclass(ParameterError, ValueError)
    with pytest.raises(ParameterError, match="mono"):
        short_term_features(np.zeros((2, SR), np.float32), SR)
    with pytest.raises(ParameterError, match="sample rate"):
        short_term_features(tone(), 0)


def test_scale_does_not_change_features():
    x = tone(1.0)
    ref = clip_statistics(x, SR, feature_set="rich")
    for y in (x * 1e-4, x * 30.0, np.round(x * 32767).astype(np.int16)):
        np.testing.assert_allclose(clip_statistics(y, SR, feature_set="rich"), ref, rtol=1e-3, atol=1e-3)


def test_non_finite_and_silent_input_give_finite_features():
    x = tone(1.0)
    x[100:300] = np.nan
    x[500] = np.inf
    for sig in (x, np.zeros(SR, np.float32), np.full(SR, np.nan, np.float32)):
        for fs in ("thesis68", "rich"):
            assert np.isfinite(clip_statistics(sig, SR, feature_set=fs)).all()


def test_speed_perturb_changes_length_and_pitch():
    x = np.sin(2 * np.pi * 200.0 * np.arange(SR) / SR).astype(np.float32)
    fast = speed_perturb(x, 1.1)
    assert fast.dtype == np.float32 and abs(fast.size - SR / 1.1) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(fast))) * SR / fast.size
    assert peak_hz == pytest.approx(220.0, abs=2.0)
    np.testing.assert_array_equal(speed_perturb(x, 1.0), x)
    with pytest.raises(ValueError):
        speed_perturb(x, 5.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(800, 6000),
       scale=st.floats(1e-6, 1e4), kind=st.sampled_from(["noise", "tone", "clicks", "dc"]))
def test_features_of_random_signals_are_finite(seed, n, scale, kind):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        x = rng.standard_normal(n)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(50, 4000) * np.arange(n) / SR)
    elif kind == "clicks":
        x = np.zeros(n)
        x[rng.integers(0, n, 5)] = 1.0
    else:
        x = np.ones(n) + 1e-3 * rng.standard_normal(n)
    x = (scale * x).astype(np.float32)
    frames = window_features(x, SR)
    assert frames.shape == (36, n_frames(n, SR)) and np.isfinite(frames).all()
    for fs in ("thesis68", "rich"):
        v = frame_statistics(frames, feature_set=fs)
        assert v.shape == (feature_dimension(fs),) and np.isfinite(v).all()


# -- model ----------------------------------------------------------------------------------

def random_features(rng, labels=LABELS, speakers=4, per=3, dim=68):
    y = np.array([lab for _ in range(speakers) for lab in labels for _ in range(per)])
    groups = np.array([f"spk{s}" for s in range(speakers) for _ in labels for _ in range(per)])
    x = rng.normal(size=(len(y), dim)).astype(np.float32)
    for i, lab in enumerate(labels):  # separable classes
        x[y == lab, i] += 4.0
    return x, y, groups


@pytest.fixture(scope="module")
def fitted():
    x, y, g = random_features(np.random.default_rng(0))
    return VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0, 10.0), gamma_grid=(0.5,), n_repeats=2)).fit(x, y, g), x, y


def test_fit_contract_and_probabilities(fitted):
    model, x, y = fitted
    assert model.labels == list(LABELS)
    p = model.predict_proba(x)
    assert p.shape == (len(x), 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (model.predict(x) == y).mean() > 0.9
    assert np.array_equal(model.predict(x), np.asarray(model.labels)[p.argmax(axis=1)])
    assert model.C_ in (1.0, 10.0)
    assert set(model.validation_recall_) == set(LABELS)
    assert model.validation_["clips"] == len(y) and model.validation_["n"] == 2 * len(y)  # 2 repeats pooled
    assert model.settings_["feature_set"] == "thesis68" and model.settings_["sample_rate"] == SR


def test_columns_follow_label_order_of_present_classes(rng):
    labels = ("surprise", "anger", "sad")  # given out of order
    x, y, g = random_features(rng, labels=labels, speakers=3)
    model = VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(3.0,), gamma_grid=(0.5,), n_repeats=1)).fit(x, y, g)
    assert model.labels == ["anger", "sad", "surprise"]
    p = model.predict_proba(x)
    for lab in labels:
        assert p[y == lab].argmax(axis=1).tolist().count(model.labels.index(lab)) >= 0.8 * (y == lab).sum()


def test_augmented_rows_are_trained_on_but_never_scored(rng):
    x, y, g = random_features(rng, speakers=3, per=2)
    aug = np.zeros(len(y), bool)
    aug[::2] = True
    model = VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0,), gamma_grid=(0.5,), n_repeats=1))
    model.fit(x, y, g, augmented=aug)
    assert model.validation_["clips"] == model.validation_["n"] == int((~aug).sum())


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(NotFittedError):
        VoiceModel().predict_proba(np.zeros((1, 289)))


def test_wrong_feature_count_is_refused(fitted):
    model, _, _ = fitted
    with pytest.raises(ValueError, match="68"):
        model.predict_proba(np.zeros((2, 10)))


def test_save_load_round_trip(fitted, tmp_path):
    model, x, _ = fitted
    model.save(tmp_path, extra={"held_out_speakers": ["spk9"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice.json", "voice.npz"]
    meta = json.loads((tmp_path / "voice.json").read_text())
    assert meta["labels"] == list(LABELS) and meta["features"]["feature_set"] == "thesis68"
    assert meta["held_out_speakers"] == ["spk9"] and meta["svm"]["C"] == model.C_
    assert set(meta["validation_recall"]) == set(LABELS)
    loaded = VoiceModel.load(tmp_path)  # float16 support vectors, numpy's kernel: within 1e-3, the same labels
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-3)
    assert (loaded.predict_proba(x).argmax(1) == model.predict_proba(x).argmax(1)).all()
    assert loaded.labels == model.labels and loaded.settings_ == model.settings_


def test_crafted_skops_with_untrusted_types_is_refused(fitted, tmp_path):
    """A bundle made before 2026-12 with only voice.skops is read with scikit-learn: a crafted file is refused."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    model, x, y = fitted
    model.save(tmp_path)
    (tmp_path / "voice.npz").unlink()
    # A scikit-learn type skops trusts by default, but that no voice model contains.
    sio.dump(LogisticRegression().fit(x, y), tmp_path / "voice.skops")
    with pytest.raises(ModelError, match=r"voice\.skops.*LogisticRegression"):
        VoiceModel.load(tmp_path)
    # A type from outside scikit-learn altogether.
    sio.dump({"model": np.random.default_rng(0)}, tmp_path / "voice.skops")
    with pytest.raises(ModelError, match=r"voice\.skops"):
        VoiceModel.load(tmp_path)
    (tmp_path / "voice.skops").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match=r"voice\.skops"):
        VoiceModel.load(tmp_path)


def test_packed_support_vectors_load_bit_for_bit_and_bad_planes_are_one_line(fitted, tmp_path):
    """``save(packed=True)`` (the adapted model's form) stores the support vectors' bytes as planes,
    compressed: the same float16 values and scores as the plain form; planes of another shape or
    with a NaN in them are refused, naming the file."""
    from emocli.voice.model import pack_planes, unpack_planes

    model, x, _ = fitted
    model.save(tmp_path / "plain")
    model.save(tmp_path / "packed", packed=True)
    with np.load(tmp_path / "plain" / "voice.npz") as a, np.load(tmp_path / "packed" / "voice.npz") as b:
        assert "support_vectors" not in b.files and b["support_vector_planes"].shape[0] == 2
        assert np.array_equal(unpack_planes(b["support_vector_planes"]).view(np.uint16),
                              a["support_vectors"].view(np.uint16))
        arrays = {k: b[k] for k in b.files}
    plain, packed = VoiceModel.load(tmp_path / "plain"), VoiceModel.load(tmp_path / "packed")
    assert np.array_equal(plain.predict_proba(x), packed.predict_proba(x))
    for dtype in (np.float32, np.float16):  # both widths, bit for bit
        v = np.random.default_rng(0).normal(size=(5, 3)).astype(dtype)
        assert np.array_equal(unpack_planes(pack_planes(v)), v)
    bad = dict(arrays, support_vector_planes=arrays["support_vector_planes"][:1])
    np.savez_compressed(tmp_path / "packed" / "voice.npz", **bad)
    with pytest.raises(ModelError, match=r"packed/voice\.npz: not usable compact voice model .*planes must be"):
        VoiceModel.load(tmp_path / "packed")
    nan = pack_planes(np.full(unpack_planes(arrays["support_vector_planes"]).shape, np.nan, np.float16))
    np.savez_compressed(tmp_path / "packed" / "voice.npz", **dict(arrays, support_vector_planes=nan))
    with pytest.raises(ModelError, match=r"packed/voice\.npz: not usable .*non-finite support vectors"):
        VoiceModel.load(tmp_path / "packed")


def test_saved_model_scores_like_scikit_learn_and_replaces_an_old_skops(fitted, tmp_path):
    """voice.npz (numpy alone) gives the fitted scikit-learn model's scores; a legacy voice.skops beside it
    is read when it is the only form, and a new save removes it."""
    import skops.io as sio

    from emocli.voice.model import CompactSVM

    model, x, _ = fitted
    model.save(tmp_path)
    compact = VoiceModel.load(tmp_path)
    assert type(compact.estimator_).__name__ == "CompactSVM"
    probe = np.vstack([x, x[:7] * 3.0 + 1.0])  # also points far from the training data
    # numpy's scoring of the same arrays is scikit-learn's
    exact = CompactSVM.from_estimator(model.estimator_)
    np.testing.assert_allclose(exact.predict_proba(probe), model.predict_proba(probe), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(exact.decision_function(probe),
                               model.estimator_.calibrated_classifiers_[0].estimator.decision_function(probe),
                               rtol=1e-5, atol=1e-7)
    # float16 support vectors (a quarter of the file) move the scores by ~1e-4, no label
    assert np.load(tmp_path / "voice.npz")["support_vectors"].dtype == np.float16
    np.testing.assert_allclose(compact.predict_proba(probe), model.predict_proba(probe), atol=1e-3)
    assert (compact.predict_proba(probe).argmax(1) == model.predict_proba(probe).argmax(1)).all()
    assert compact.labels == model.labels and compact.settings_ == model.settings_
    # a loaded model saves again, the same arrays
    compact.save(tmp_path / "again")
    np.testing.assert_allclose(VoiceModel.load(tmp_path / "again").predict_proba(probe), compact.predict_proba(probe))
    # a bundle of before 2026-12: only the scikit-learn form
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    sio.dump(model.estimator_, legacy / "voice.skops")
    (legacy / "voice.json").write_bytes((tmp_path / "voice.json").read_bytes())
    old = VoiceModel.load(legacy)
    assert type(old.estimator_).__name__ == "CalibratedClassifierCV"
    np.testing.assert_allclose(old.predict_proba(probe), compact.predict_proba(probe), atol=1e-3)  # float16 SVs
    old.save(legacy)
    assert sorted(p.name for p in legacy.iterdir()) == ["voice.json", "voice.npz"]


def test_compact_runtime_form_of_a_two_emotion_model_scores_like_scikit_learn(tmp_path):
    """scikit-learn flips the signs of a binary SVC's coefficients: the compact form must follow
    (it once scored every two-emotion model inverted)."""
    x, y, g = random_features(np.random.default_rng(3))
    keep = np.isin(y, ["anger", "sad"])
    model = VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0,), gamma_grid=(0.5,), n_repeats=1)).fit(
        x[keep], y[keep], g[keep])
    model.save(tmp_path)
    compact = VoiceModel.load(tmp_path)
    probe = np.vstack([x, x[:7] * 3.0 + 1.0])
    np.testing.assert_allclose(compact.predict_proba(probe), model.predict_proba(probe), atol=1e-3)  # float16 SVs
    assert (compact.predict(x[keep]) == y[keep]).mean() > 0.9


def test_compact_runtime_file_damaged_is_refused(fitted, tmp_path):
    model, _, _ = fitted
    model.save(tmp_path)
    (tmp_path / "voice.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match=r"voice\.npz.*retrain"):
        VoiceModel.load(tmp_path, runtime=True)
    with open(tmp_path / "voice.npz", "wb") as fh:
        np.savez(fh, mean=np.zeros(3))
    with pytest.raises(ModelError, match=r"voice\.npz"):
        VoiceModel.load(tmp_path, runtime=True)


def test_mismatched_or_missing_description_is_refused(fitted, tmp_path):
    model, _, _ = fitted
    model.save(tmp_path)
    meta = json.loads((tmp_path / "voice.json").read_text())
    meta["labels"] = meta["labels"][:5]
    (tmp_path / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="voice"):
        VoiceModel.load(tmp_path)
    (tmp_path / "voice.json").unlink()
    with pytest.raises(ModelError, match="voice.json"):
        VoiceModel.load(tmp_path)


# -- train-audio ----------------------------------------------------------------------------

def test_train_audio_command_on_a_generated_emodb(tmp_path):
    """EmoDB naming (SSTTTEV.wav): anger = high tone, sad = low tone; speaker 03 held out."""
    from typer.testing import CliRunner

    from emocli.cli.app import app

    rng = np.random.default_rng(0)
    corpus = tmp_path / "emodb"
    corpus.mkdir()
    for spk in ("03", "08", "09", "10"):
        for code, freq in (("W", 300.0), ("T", 110.0), ("L", 200.0)):  # L = boredom: dropped
            for take in ("a", "b"):
                write_wav(corpus / f"{spk}a01{code}{take}.wav", tone(0.4, freq * rng.uniform(0.9, 1.1), rng=rng))
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--test-speakers", "03",
                                   "--feature-set", "thesis68", "--no-augment", "--repeats", "1",
                                   "--workers", "1", "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "voice.json").read_text())
    assert meta["labels"] == ["anger", "sad"]
    assert meta["held_out_speakers"] == ["emodb_03"]
    assert meta["test"]["n"] == 4 and meta["test"]["accuracy"] == 1.0
    assert np.asarray(meta["test"]["confusion"]).shape == (2, 2)
    # a new bundle gets emo's speech-activity gate (the shipped Silero VAD and its licence), so the new
    # model does not classify music or tones either; --no-vad leaves only the level gate
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"voice.npz", "voice.json", "voice_vad.npz", "training_items.npz"}
    assert (out / "LICENSE.voice_vad.MIT.txt").is_file()
    res = CliRunner().invoke(app, ["predict", str(corpus / "03a01Wa.wav"), "--model", str(out), "--json"])
    assert res.exit_code == 1 and "no speech detected (voice activity" in res.output
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 16
    plain = tmp_path / "plain"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(plain), "--test-speakers", "03",
                                   "--feature-set", "thesis68", "--no-augment", "--repeats", "1",
                                   "--workers", "1", "--cache", str(tmp_path / "cache"), "--no-vad"])
    assert res.exit_code == 0, res.output
    assert set(json.loads((plain / "manifest.json").read_text())["files"]) == {"voice.npz", "voice.json",
                                                                               "training_items.npz"}
    res = CliRunner().invoke(app, ["predict", str(corpus / "03a01Wa.wav"), "--model", str(plain), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["label"] == "anger"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--test-speakers", "77"])
    assert res.exit_code == 1 and "no speaker" in res.output


def test_voice_cache_follows_the_clip_content_not_its_path_or_time(tmp_path):
    """A corpus copied elsewhere (new paths, new modification times) keeps its cached features;
    a clip whose samples change does not."""
    import os
    import shutil

    from emocli.files import sha256_file
    from emocli.train.voice import _voice_cache_key

    a = tmp_path / "a" / "03a01Wa.wav"
    a.parent.mkdir()
    write_wav(a, tone(0.3, 220.0))
    key = _voice_cache_key(sha256_file(a), window=0.05, step=0.025, sr=16000, speed=1.0)
    b = tmp_path / "copy" / "03a01Wa.wav"
    b.parent.mkdir()
    shutil.copyfile(a, b)  # a fresh modification time
    os.utime(b, (1, 1))
    assert _voice_cache_key(sha256_file(b), window=0.05, step=0.025, sr=16000, speed=1.0) == key
    assert _voice_cache_key(sha256_file(b), window=0.05, step=0.025, sr=16000, speed=0.9) != key
    write_wav(b, tone(0.3, 230.0))
    assert _voice_cache_key(sha256_file(b), window=0.05, step=0.025, sr=16000, speed=1.0) != key


def test_noise_and_reverb_copies():
    """Pink noise lands at the asked SNR below the speech; reverberation keeps the length and
    smears energy into the silence after the speech; copies are reproducible from their seed."""
    from emocli.voice.features import add_noise, add_reverb, perturb, speech_power
    from emocli.errors import ParameterError

    sr = 16000
    speech = np.concatenate([tone(0.5, 220.0), np.zeros(sr // 2, np.float32)])
    noisy = add_noise(speech, sr, 15.0, np.random.default_rng(0))
    noise = noisy.astype(np.float64) - speech
    assert noisy.shape == speech.shape
    assert 10 * np.log10(speech_power(speech, sr) / np.mean(noise ** 2)) == pytest.approx(15.0, abs=0.01)
    spec = np.abs(np.fft.rfft(noise)) ** 2  # pink: the lower octave holds more power than the upper
    f = np.fft.rfftfreq(len(noise), 1 / sr)
    assert spec[(f > 500) & (f < 1000)].sum() > 1.5 * spec[(f > 4000) & (f < 8000)].sum() / 4

    wet = add_reverb(speech, sr, 0.6, np.random.default_rng(0))
    assert wet.shape == speech.shape
    tail = slice(int(0.55 * sr), int(0.65 * sr))  # just after the tone ends
    assert np.mean(wet[tail] ** 2) > 1e-4 > np.mean(speech[tail] ** 2)

    assert np.array_equal(perturb(speech, sr, "noise", seed=3), perturb(speech, sr, "noise", seed=3))
    assert not np.array_equal(perturb(speech, sr, "noise", seed=3), perturb(speech, sr, "noise", seed=4))
    assert abs(len(perturb(speech, sr, 1.1)) - len(speech) / 1.1) <= 1
    with pytest.raises(ParameterError, match="unknown augmentation"):
        perturb(speech, sr, "echo")


def test_train_audio_perturb_adds_copies_and_refuses_unknown_names(tmp_path):
    from typer.testing import CliRunner

    from emocli.cli.app import app

    rng = np.random.default_rng(0)
    corpus = tmp_path / "emodb"
    corpus.mkdir()
    for spk in ("03", "08", "09", "10"):
        for code, freq in (("W", 300.0), ("T", 110.0)):
            for take in ("a", "b"):
                write_wav(corpus / f"{spk}a01{code}{take}.wav", tone(0.4, freq * rng.uniform(0.9, 1.1), rng=rng))
    out, cache = tmp_path / "bundle", tmp_path / "cache"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--test-speakers", "03",
                                   "--feature-set", "thesis68", "--no-augment", "--perturb", "noise,reverb",
                                   "--repeats", "1", "--workers", "1", "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "voice.json").read_text())
    assert meta["trained_on"]["perturbations"] == ["noise", "reverb"]
    assert meta["n_augmented"] == 24  # 12 training clips x 2 copies; the held-out speaker's 4 are never altered
    assert len(list(cache.glob("*.npz"))) == 16 + 24
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--perturb", "echo"])
    assert res.exit_code == 1 and "unknown perturbation(s) echo" in res.output


def _tiny_emodb(root, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir()
    for spk in ("03", "08", "09", "10"):
        for code, freq in (("W", 300.0), ("T", 110.0)):
            for take in ("a", "b"):
                write_wav(root / f"{spk}a01{code}{take}.wav", tone(0.4, freq * rng.uniform(0.9, 1.1), rng=rng))
    return root


def test_train_audio_into_a_bundle_keeps_its_feature_set_and_its_speaker_model_in_step(tmp_path):
    """Issue 28, 2: retraining a bundle's voice keeps the feature set it was trained with (it became the
    default `rich`), and a plain retrain beside a speaker-adapted model is refused before any work (it left
    voice_speaker.* disagreeing with the new plain model)."""
    from typer.testing import CliRunner

    from emocli.cli.app import app

    corpus = _tiny_emodb(tmp_path / "emodb")
    out = tmp_path / "bundle"
    common = ["--test-speakers", "03", "--no-augment", "--repeats", "1", "--workers", "1", "--no-vad",
              "--cache", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--feature-set", "thesis68",
                                   "--speaker-norm", *common])
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), *common])
    assert res.exit_code == 1 and "voice_speaker" in res.output and "--adapted-model" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(out), "--speaker-norm", *common])
    assert res.exit_code == 0, res.output
    assert "feature set thesis68 (the one" in res.output
    for name in ("voice.json", "voice_speaker.json"):
        assert json.loads((out / name).read_text())["features"]["feature_set"] == "thesis68"
    fresh = tmp_path / "fresh"
    res = CliRunner().invoke(app, ["train-audio", str(corpus), "--out", str(fresh), *common])
    assert res.exit_code == 0 and "feature set rich (the default)" in res.output


def test_fits_in_worker_processes_choose_what_fits_here_choose(fitted, monkeypatch):
    """A large training set's grid runs in worker processes; the folds' predictions, the choice and the
    calibrated model are the same as when every fit runs here."""
    import emocli.voice.model as voice_model

    model, x, y = fitted
    g = np.array([f"s{i % 6}" for i in range(len(x))])
    monkeypatch.setattr(voice_model, "PARALLEL_FROM", 0)
    monkeypatch.setattr(voice_model, "available_cpus", lambda: 2)
    again = VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0, 10.0), gamma_grid=(0.5,),
                                                                    n_repeats=2)).fit(x, y, g)
    monkeypatch.setattr(voice_model, "PARALLEL_FROM", 10 ** 9)
    here = VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0, 10.0), gamma_grid=(0.5,),
                                                                   n_repeats=2)).fit(x, y, g)
    assert again.grid_ == here.grid_ and again.C_ == here.C_
    np.testing.assert_allclose(again.predict_proba(x), here.predict_proba(x), rtol=1e-9, atol=1e-12)
