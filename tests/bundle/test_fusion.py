import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emocli.errors import ModelError
from emocli.fusion import FusionModel, align, normalise
from emocli.labels import LABELS

probs = arrays(np.float64, (7,), elements=st.floats(0, 1e3, allow_nan=False))


def test_confusion_weights_are_recall_shares():
    rf = {lab: 0.6 for lab in LABELS}
    rv = {lab: 0.2 for lab in LABELS}
    rv["sad"] = 0.6
    fm = FusionModel("confusion").fit(rf, rv)
    assert fm.face_weights_[LABELS.index("anger")] == pytest.approx(0.75)
    assert fm.face_weights_[LABELS.index("sad")] == pytest.approx(0.5)
    # neither modality recalls a class: fall back to equal weights
    rf["surprise"] = rv["surprise"] = 0.0
    assert FusionModel("confusion").fit(rf, rv).face_weights_[LABELS.index("surprise")] == 0.5


def test_missing_modality_lets_the_other_decide():
    fm = FusionModel("equal").fit()
    v = np.eye(7)[2]
    assert np.allclose(fm.fuse(None, v), v)
    assert np.allclose(fm.fuse(v, None), v)
    from emocli.errors import ParameterError

    with pytest.raises(ParameterError, match="nothing to fuse"):
        fm.fuse(None, None)


def test_align_by_name_and_refuse_other_label_sets():
    src = ("sad", "anger", "disgust", "fear", "happy", "neutral", "surprise")
    s = np.arange(7.0)
    out = align(s, src, LABELS)
    assert out[LABELS.index("sad")] == 0.0 and out[LABELS.index("anger")] == 1.0
    with pytest.raises(ModelError, match="label sets differ"):
        align(np.arange(8.0), (*src, "boredom"), LABELS)


def test_model_trained_on_fewer_emotions_leaves_them_to_the_other():
    # a voice model trained on EmoDB has no "surprise"
    voice_labels = tuple(lab for lab in LABELS if lab != "surprise")
    voice = align(np.full(6, 1 / 6), voice_labels, LABELS)
    assert np.isnan(voice[LABELS.index("surprise")]) and np.nansum(voice) == pytest.approx(1.0)
    face = np.eye(7)[LABELS.index("surprise")]
    fm = FusionModel("equal").fit()
    out = fm.fuse(face, voice)
    assert out.sum() == pytest.approx(1.0) and np.all(np.isfinite(out))
    # surprise is decided by the face alone (weight 1), not halved by the voice's silence
    assert out[LABELS.index("surprise")] == pytest.approx(1.0 / (1.0 + 0.5))


def test_save_load_round_trip(tmp_path):
    fm = FusionModel("confusion").fit({lab: 0.5 for lab in LABELS}, {lab: 0.25 for lab in LABELS})
    fm.save(tmp_path)
    back = FusionModel.load(tmp_path)
    assert np.allclose(back.face_weights_, fm.face_weights_)
    (tmp_path / "fusion.json").write_text('{"method": "equal"}')
    with pytest.raises(ModelError, match="malformed"):
        FusionModel.load(tmp_path)


@settings(max_examples=200, deadline=None)
@given(face=probs, voice=probs, w=arrays(np.float64, (7,), elements=st.floats(0, 1)))
def test_fused_is_a_probability_vector(face, voice, w):
    fm = FusionModel("equal").fit()
    fm.face_weights_ = w
    out = fm.fuse(face, voice)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    assert out.sum() == pytest.approx(1.0)


@given(p=probs)
def test_normalize_preserves_order_of_labels(p):
    out = normalise(p)
    assert out.sum() == pytest.approx(1.0)
    if p.sum() > 0:
        # dividing by the sum keeps the order but may round near-ties to one value
        # (p = [1000, 1000 + 1 ulp, ...]): the largest score stays a largest one
        assert out[np.argmax(p)] == out.max()
        assert np.all(np.diff(out[np.argsort(p, kind="stable")]) >= 0)


@pytest.mark.parametrize("method,pca", [("feature-svm", True), ("feature-dense", True), ("learned", False)])
def test_feature_fusion_reports_cross_validated_accuracy_and_pca_size(method, pca):
    from emocli.fusion import heldout_accuracy, pca_size

    r = np.random.default_rng(0)
    y = np.array(["happy", "sad", "anger"] * 10)
    x = r.normal(size=(30, 90))
    for c in range(3):
        x[c::3, 10 * c:10 * c + 10] += 3.0  # separable
    acc, folds = heldout_accuracy(method, x, y, seed=0)
    assert folds == 5 and acc >= 0.8
    fm = FusionModel(method).fit().fit_estimator(x, y, seed=0)
    k = pca_size(fm.estimator_)
    assert (k is not None) == pca and (k is None or 1 <= k <= 68)
    # one clip of a class: no two folds to measure on
    assert heldout_accuracy(method, x[:4], y[:4]) is None
