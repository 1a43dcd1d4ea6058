"""Face experts (experts.py), clip pooling and the product fusion rule."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from emocli.errors import ModelError, ParameterError
from emocli.face.experts import (ARCFACE_TEMPLATE, CROP_LANDMARKS, EXPERT_SIZE, HEAD_FILE, ExpertSet, FaceHead, align_face,
                            fit_temperature, parse_experts, softmax, temper)
from emocli.fusion import FusionModel
from emocli.labels import LABELS
from emocli.pipeline.faces import pool_frames

from conftest import REPO

NEUTRAL = LABELS.index("neutral")
HAPPY = LABELS.index("happy")


def test_align_face_puts_the_landmarks_on_the_template():
    # five bright dots at known places of a 300x200 image land on the template's points
    img = np.zeros((200, 300, 3), np.uint8)
    src = ARCFACE_TEMPLATE * 1.7 + np.float32([60, 10])
    for x, y in src:
        img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    out = align_face(img, src)
    assert out.shape == (EXPERT_SIZE, EXPERT_SIZE, 3) and out.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert out[int(round(y)), int(round(x))].max() > 100
    assert out.mean() < 20  # and nothing else is bright


def test_temperature_fixes_overconfidence(rng):
    n = 4000
    y = rng.integers(0, 7, n)
    # a model right 50 % of the time that always claims 99 % confidence
    pred = np.where(rng.random(n) < 0.5, y, rng.integers(0, 7, n))
    p = np.full((n, 7), 0.01 / 6)
    p[np.arange(n), pred] = 0.99
    t = fit_temperature(p, y)
    assert t > 2.0
    cal = temper(p, t)
    assert np.allclose(cal.sum(1), 1)
    assert (cal.argmax(1) == p.argmax(1)).all()  # a temperature never changes the top class
    assert 0.4 < cal.max(1).mean() < 0.65  # and the confidence now matches the accuracy
    # an already calibrated model keeps T about 1
    q = softmax(rng.normal(size=(n, 7)) * 2)
    y2 = np.array([rng.choice(7, p=row) for row in q])
    assert fit_temperature(q, y2) == pytest.approx(1.0, abs=0.15)


def test_expert_set_combines_calibrated_scores_with_weights():
    a = np.tile(np.eye(7)[HAPPY] * 0.9 + 0.1 / 7, (3, 1))
    b = np.tile(np.eye(7)[NEUTRAL] * 0.9 + 0.1 / 7, (3, 1))
    es = ExpertSet(temperatures_={"emo-cnn": 1.0, "rafdb": 1.0}, weights_={"emo-cnn": 0.75, "rafdb": 0.25})
    out = es.combine({"emo-cnn": a, "rafdb": b})
    assert np.allclose(out.sum(1), 1) and (out.argmax(1) == HAPPY).all()
    assert np.allclose(out, 0.75 * a + 0.25 * b, atol=1e-6)
    assert np.allclose(es.combine({"emo-cnn": a, "rafdb": b}, use=["rafdb"]), b, atol=1e-6)
    with pytest.raises(ModelError):
        es.combine({"emo-cnn": a}, use=["rafdb"])
    back = ExpertSet.from_dict(json.loads(json.dumps(es.to_dict())))
    assert back.weights_ == es.weights_ and back.temperatures_ == es.temperatures_
    with pytest.raises(ModelError, match="malformed"):
        ExpertSet.from_dict({"experts": ["emo-cnn"]})
    with pytest.raises(ModelError, match="non-positive"):
        ExpertSet.from_dict({"experts": ["emo-cnn"], "temperatures": {"emo-cnn": 0}, "weights": {}})


def test_parse_experts():
    assert parse_experts("all", ("emo-cnn", "rafdb")) == ("emo-cnn", "rafdb")
    assert parse_experts(" rafdb, emo-cnn ,rafdb", ("emo-cnn", "rafdb")) == ("rafdb", "emo-cnn")
    with pytest.raises(ParameterError, match="unknown face expert"):
        parse_experts("vgg", ("emo-cnn",))
    with pytest.raises(ParameterError, match="has no rafdb"):
        parse_experts("rafdb", ("emo-cnn",))


def test_expressive_pooling_lets_few_expressive_frames_speak():
    neutral = np.eye(7)[NEUTRAL] * 0.8 + 0.2 / 7
    happy = np.eye(7)[HAPPY] * 0.8 + 0.2 / 7
    frames = np.array([neutral] * 8 + [happy] * 3)
    assert pool_frames(frames, method="mean").argmax() == NEUTRAL  # the thesis's mean: talking frames win
    pooled = pool_frames(frames, method="expressive")
    assert pooled.argmax() == HAPPY and pooled.sum() == pytest.approx(1.0)
    # a clip that is neutral throughout stays neutral
    assert pool_frames(np.array([neutral] * 5), method="expressive").argmax() == NEUTRAL
    with pytest.raises(ValueError):
        pool_frames(frames, method="max")


def test_product_rule_is_the_normalised_product_with_equal_weights():
    f = softmax(np.random.default_rng(1).normal(size=7))
    v = softmax(np.random.default_rng(2).normal(size=7))
    out = FusionModel("equal", rule="product").fit().fuse(f, v)
    assert np.allclose(out, f * v / (f * v).sum())
    # one modality close to zero on a class cannot veto it outright
    v2 = np.full(7, 1 / 7)
    f2 = np.eye(7)[HAPPY] * 0.999 + 1e-12
    assert FusionModel("equal", rule="product").fit().fuse(f2, v2).argmax() == HAPPY
    # an emotion the voice model lacks (NaN) is decided by the face
    v3 = v.copy()
    v3[LABELS.index("surprise")] = np.nan
    out3 = FusionModel("equal", rule="product").fit().fuse(f, v3)
    assert np.all(np.isfinite(out3)) and out3.sum() == pytest.approx(1.0)


def test_fusion_rule_round_trips_and_is_checked(tmp_path):
    fm = FusionModel("confusion", rule="product").fit({lab: 0.5 for lab in LABELS}, {lab: 0.25 for lab in LABELS})
    fm.save(tmp_path)
    assert FusionModel.load(tmp_path).rule == "product"
    d = json.loads((tmp_path / "fusion.json").read_text())
    d.pop("rule")  # bundles from before the rule existed read as the weighted sum
    (tmp_path / "fusion.json").write_text(json.dumps(d))
    assert FusionModel.load(tmp_path).rule == "sum"
    d["rule"] = "max"
    (tmp_path / "fusion.json").write_text(json.dumps(d))
    with pytest.raises(ModelError, match="unknown fusion rule"):
        FusionModel.load(tmp_path)
    with pytest.raises(ModelError, match="unknown fusion rule"):
        FusionModel("equal", rule="max").fit()


@pytest.fixture(scope="module")
def frame_and_box(example_clip):
    from emocli.face.detect import FaceTracker, faces_in_frames, get_detector
    from emocli.media.ffmpeg import iter_frames

    for _, frames in iter_frames(example_clip, fps=2.0):
        idx, _, boxes = faces_in_frames(frames[:1], detector=get_detector(), tracker=FaceTracker())
        if idx:
            return frames[0], boxes[0]
    pytest.fail("no face in the example clip")


def test_the_head_reads_face_images_also_as_a_video_frame_crops_them(frame_and_box):
    """train-head's video framing: a face image that a corpus framed tightly (the face fills it) is
    cut again as emo's detector and crop_face cut a video frame's face; a face-free image stays whole."""
    from emocli.face.detect import get_detector
    from emocli.train.head import VIDEO_FACE_WIDTH, video_framed

    frame, box = frame_and_box
    x0, y0 = int(box.x0), int(box.y0)
    tight = np.ascontiguousarray(frame[y0:y0 + int(box.width), x0:x0 + int(box.width)])  # RAF-DB-like: no margin
    noise = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    (framed, whole), boxes = video_framed([tight, noise], get_detector())
    # the face is found on the canvas; its crop is square and wider than the face image (the 10 % margin)
    assert framed.shape[0] == framed.shape[1] and VIDEO_FACE_WIDTH < framed.shape[0] < 1.6 * VIDEO_FACE_WIDTH
    assert whole.shape == (VIDEO_FACE_WIDTH, VIDEO_FACE_WIDTH, 3)  # no face: the image, scaled as the face would be
    # the face sits in the middle of its crop, with the canvas's grey on its border
    assert abs(float(framed[0].mean()) - 128) < 3 and abs(float(framed[framed.shape[0] // 2].mean()) - 128) > 3
    assert boxes.shape == (2, 4) and np.isfinite(boxes[0]).all() and np.isnan(boxes[1]).all()

    def no_detector(frame):
        raise AssertionError("the boxes were given: nothing to detect")

    # the boxes kept (train-head caches them): the same crops, without detecting again
    (again, whole_again), same = video_framed([tight, noise], no_detector, boxes)
    assert np.array_equal(again, framed) and np.array_equal(whole_again, whole) and np.array_equal(same, boxes, True)


def test_yunet_finds_five_landmarks_inside_the_chosen_face(frame_and_box):
    from emocli.bundle import models_dir
    from emocli.face.experts import YuNetLandmarks
    from emocli.face.detect import YUNET_FILE

    frame, box = frame_and_box
    lm = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)(frame, (box.x0, box.y0, box.x1, box.y1))
    assert lm is not None and lm.shape == (5, 2)
    assert (lm[:, 0] > box.x0).all() and (lm[:, 0] < box.x1).all()
    assert (lm[:, 1] > box.y0).all() and (lm[:, 1] < box.y1 + 0.1 * box.height).all()
    # right eye left of left eye (image coordinates), eyes above the nose, nose above the mouth
    assert lm[0, 0] < lm[1, 0] and lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()
    # the crop template is a plausible stand-in: its points have the same order
    assert CROP_LANDMARKS[0, 0] < CROP_LANDMARKS[1, 0] and CROP_LANDMARKS[2, 1] < CROP_LANDMARKS[3, 1]


def test_predict_reports_each_expert_and_can_use_one(example_clip):
    def run(*args):
        out = subprocess.run([sys.executable, "-m", "emocli", "predict", str(example_clip), "--json",
                              "--modality", "face", *args], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    both = run()
    assert set(both["face_experts"]) == {"emo-cnn", "rafdb"}
    for scores in both["face_experts"].values():
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    # with the face head, frames get the crop and its mirror (the views the head learned from); emo-cnn
    # alone spreads the bundle's views over the frames, so the two agree at --tta mirror
    one = run("--face-experts", "emo-cnn", "--tta", "mirror")
    assert one["face_experts"] is None
    assert one["face_scores"] == pytest.approx(both["face_experts"]["emo-cnn"], abs=1e-4)
    bad = subprocess.run([sys.executable, "-m", "emocli", "predict", str(example_clip), "--face-experts", "vgg"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "unknown face expert" in bad.stderr


def test_a_bundle_without_experts_uses_its_own_network(tiny_bundle, clip):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    pipe = Pipeline(tiny_bundle, Options(detect=False, use_voice=False))
    assert pipe.face.experts_used == ("emo-cnn",) and pipe.face.expert_net is None
    res = pipe.run(clip)
    assert res.status == "ok" and res.face_experts is None
    with pytest.raises(ModelError, match="has no rafdb"):
        Pipeline(tiny_bundle, Options(detect=False, use_voice=False, face_experts="rafdb"))


def test_experts_file_that_is_not_json_is_refused(tmp_path):
    from emocli.bundle import write_manifest
    from emocli.pipeline.core import Pipeline

    bundle = tmp_path / "b"
    shutil.copytree(REPO / "models" / "default", bundle)
    (bundle / "experts.json").write_text("{not json")
    write_manifest(bundle, labels=list(LABELS))
    with pytest.raises(ModelError, match="experts.json: not valid JSON"):
        Pipeline(bundle)


def test_kept_frames_carry_each_expert_and_the_embeddings(example_clip):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    res = Pipeline(options=Options(keep_frames=True, use_voice=False, fps=2.0)).run(example_clip)
    n = res.frames_used
    assert res.status == "ok" and n > 0
    assert set(res.expert_frame_scores) == {"emo-cnn", "rafdb"}
    for scores in res.expert_frame_scores.values():
        assert scores.shape == (n, 7) and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert res.expert_features.shape == (n, 512) and np.isfinite(res.expert_features).all()
    experts = Pipeline().face.experts
    if experts.head_ is not None:
        # the frame scores are the learned head on both experts' features
        x = np.hstack([res.expert_features, res.face_features])
        assert np.allclose(res.frame_scores, experts.head_.predict_proba(x), atol=1e-4)
    else:
        # the frame scores are the experts' weighted average
        w = np.array([experts.weights_["emo-cnn"], experts.weights_["rafdb"]])
        mix = (w[0] * res.expert_frame_scores["emo-cnn"] + w[1] * res.expert_frame_scores["rafdb"]) / w.sum()
        assert np.allclose(res.frame_scores, mix, atol=1e-5)


def _head(rng, n_in=6, temperature=1.0):
    return FaceHead(mean=rng.normal(size=n_in).astype(np.float32), scale=np.full(n_in, 2.0, np.float32),
                    coef=rng.normal(size=(7, n_in)).astype(np.float32), intercept=np.zeros(7, np.float32),
                    temperature=temperature)


def test_face_head_round_trips_through_the_bundle_files(tmp_path, rng):
    head = _head(rng, temperature=1.7)
    head.info = {"C": 0.1}
    es = ExpertSet(head_=head)
    head.save(tmp_path / HEAD_FILE)
    back = ExpertSet.from_dict(json.loads(json.dumps(es.to_dict())), tmp_path / "experts.json")
    x = rng.normal(size=(5, 6)).astype(np.float32)
    p = back.head_.predict_proba(x)
    assert back.head_.info == {"C": 0.1} and back.head_.temperature == pytest.approx(1.7)
    assert p.shape == (5, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(p, head.predict_proba(x), atol=1e-6)
    # a higher temperature flattens the same head's scores
    assert (_head(np.random.default_rng(0), temperature=5.0).predict_proba(x).max(1)
            < _head(np.random.default_rng(0)).predict_proba(x).max(1)).all()


def test_a_missing_or_broken_face_head_is_refused_with_the_fix(tmp_path, rng):
    doc = ExpertSet(head_=_head(rng)).to_dict()
    where = tmp_path / "experts.json"
    with pytest.raises(ModelError, match=r"face_head.npz: face head missing; restore the bundle"):
        ExpertSet.from_dict(doc, where)
    (tmp_path / HEAD_FILE).write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"face_head.npz: unreadable face head .*emo train-head"):
        ExpertSet.from_dict(doc, where)
    bad = _head(rng)
    bad.intercept = np.zeros(5, np.float32)
    bad.save(tmp_path / HEAD_FILE)
    with pytest.raises(ModelError, match="inconsistent face head shapes"):
        ExpertSet.from_dict(doc, where)


def test_a_face_head_of_the_wrong_width_is_refused_at_load(tmp_path, rng):
    from emocli.bundle import write_manifest
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    bundle = tmp_path / "b"
    shutil.copytree(REPO / "models" / "default", bundle)
    es = ExpertSet.from_dict(json.loads((bundle / "experts.json").read_text()), bundle / "experts.json")
    es.head_ = _head(rng, n_in=10)
    es.head_.save(bundle / HEAD_FILE)
    (bundle / "experts.json").write_text(json.dumps(es.to_dict()))
    write_manifest(bundle, labels=list(LABELS))
    with pytest.raises(ModelError, match=r"face_head.npz: the face head takes 10 inputs but the experts give 512 \+ 256"):
        Pipeline(bundle)
    # emo-cnn alone does not need the head
    assert Pipeline(bundle, Options(face_experts="emo-cnn")).face.head is None


def test_voice_only_runs_do_not_need_the_face_experts(example_clip):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    res = Pipeline(options=Options(use_face=False)).run(example_clip)
    assert res.status == "ok" and res.modalities == ["voice"] and res.face_experts is None


def test_which_faces_the_rafdb_network_scores(rng):
    from emocli.face.experts import EXPERT_MIN_FACE, expert_applies

    colour = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    grey = np.repeat(rng.integers(0, 255, (100, 100, 1), dtype=np.uint8), 3, axis=2)
    small = colour[:EXPERT_MIN_FACE - 1, :EXPERT_MIN_FACE - 1]
    assert expert_applies(colour) and not expert_applies(grey) and not expert_applies(grey[..., 0])
    assert not expert_applies(small)
    # the face head learned from grey RAF-DB faces too: it asks for size only
    assert expert_applies(grey, colour=False) and expert_applies(grey[..., 0], colour=False)
    assert not expert_applies(small, colour=False)


def test_evaluate_scores_face_crops_as_predict_does(tmp_path, frame_and_box):
    """A folder of crops is scored in batches, with the experts and the head, like predict --no-detect."""
    import cv2

    from emocli.corpus.layouts import load_corpus
    from emocli.runners.evaluate import evaluate_items
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    full, box = frame_and_box
    frame = np.ascontiguousarray(full[int(box.y0):int(box.y1), int(box.x0):int(box.x1)])
    for k, img in enumerate([frame, cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
                             cv2.resize(frame, (48, 48))]):
        (tmp_path / "happy").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "happy" / f"{k}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    pipe = Pipeline(options=Options(detect=False, use_voice=False))
    items = sorted(load_corpus(tmp_path), key=lambda it: it.path.name)
    ev = evaluate_items(items, pipe).report()
    for it, row in zip(items, ev["items"]):
        res = pipe.run(it.path)
        assert row["face_scores"] == pytest.approx(res.face_scores, abs=1e-4), it.path.name
    assert pipe.face.head is not None  # the shipped bundle has one: the colour and grey faces used it


def test_experts_calibration_cache_rescores_for_another_network_or_views(tmp_path, tiny_bundle, rng):
    """emo calibrate-experts' score cache answers only for the network and views that filled it."""
    import cv2

    from emocli.train import calibration as script
    from emocli.face.model import network_key

    images = []
    for k in range(3):
        images.append(tmp_path / f"face{k}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))

    class CountingExpert:  # stands in for the MobileFaceNet and counts how often the set is scored
        calls = 0

        def logits(self, x):
            CountingExpert.calls += 1
            return np.zeros((len(x), len(LABELS)), np.float32)

    bundle, cache = tmp_path / "bundle", tmp_path / "cache"
    shutil.copytree(tiny_bundle, bundle)
    first = script.score_set("set", images, bundle, lambda img: None, CountingExpert(), cache)
    again = script.score_set("set", images, bundle, lambda img: None, CountingExpert(), cache)
    assert CountingExpert.calls == 1 and np.array_equal(first["emo-cnn"], again["emo-cnn"])

    meta = json.loads((bundle / "face.json").read_text())
    meta["preprocessing"]["flip_tta"] = not meta["preprocessing"].get("flip_tta", False)
    (bundle / "face.json").write_text(json.dumps(meta))
    script.score_set("set", images, bundle, lambda img: None, CountingExpert(), cache)
    assert CountingExpert.calls == 2  # other views: scored again

    (bundle / "face_expert_rafdb.onnx").write_bytes(b"another expert file")  # the tiny bundle had none
    script.score_set("set", images, bundle, lambda img: None, CountingExpert(), cache)
    assert CountingExpert.calls == 3  # another expert file (emo train-expert): scored again

    key = network_key(bundle)
    net = bundle / "face.tflite" if (bundle / "face.tflite").is_file() else bundle / "face.keras"
    net.write_bytes(net.read_bytes() + b"\0")
    assert network_key(bundle) != key  # another network file: another key


def test_face_head_cache_rescores_emo_cnn_for_another_network_and_keeps_the_expert(tmp_path, tiny_bundle, rng,
                                                                                 monkeypatch):
    """emo train-head's feature cache answers only for the network that filled it; for
    another one it computes emo-cnn's features again and reuses the MobileFaceNet's outputs."""
    import cv2

    from emocli.train import head as script
    from emocli.errors import DatasetError
    from emocli.face.model import FaceModel, network_key

    images = []
    for k in range(3):
        images.append(tmp_path / f"face{k}.png")
        cv2.imwrite(str(images[-1]), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))

    class CountingExpert:  # stands in for the MobileFaceNet
        calls = 0

        def logits(self, x, embeddings=False):
            CountingExpert.calls += 1
            return rng.random((len(x), 8), np.float32), np.zeros((len(x), len(LABELS)), np.float32)

    cnn_calls = []
    real = FaceModel.score_inputs
    monkeypatch.setattr(FaceModel, "score_inputs", lambda self, *a, **kw: (cnn_calls.append(1), real(self, *a, **kw))[1])
    bundle, cache = tmp_path / "bundle", tmp_path / "cache"
    shutil.copytree(tiny_bundle, bundle)
    first = script.extract("set", images, bundle, lambda img: None, CountingExpert(), cache=cache)
    again = script.extract("set", images, bundle, lambda img: None, CountingExpert(), cache=cache)
    assert (CountingExpert.calls, len(cnn_calls)) == (1, 1) and not {"network", "expert"} & set(again)
    assert np.array_equal(first["cnn_feat"], again["cnn_feat"])

    meta = json.loads((bundle / "face.json").read_text())
    meta["preprocessing"]["flip_tta"] = not meta["preprocessing"].get("flip_tta", False)
    (bundle / "face.json").write_text(json.dumps(meta))  # another key, as another network file gives
    third = script.extract("set", images, bundle, lambda img: None, CountingExpert(), cache=cache)
    assert (CountingExpert.calls, len(cnn_calls)) == (1, 2)  # emo-cnn scored again, the expert's outputs reused
    assert np.array_equal(third["raf_emb"], first["raf_emb"])
    with np.load(cache / "set.npz") as z:
        assert str(z["network"]) == network_key(bundle)
    # readers of the cache (the baseline, scripts/fusion_rule.py) take it only for its own network
    assert np.array_equal(script.load_cached("set", bundle, cache)["cnn_feat"], third["cnn_feat"])
    meta["preprocessing"]["flip_tta"] = not meta["preprocessing"]["flip_tta"]
    (bundle / "face.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="another face network"):
        script.load_cached("set", bundle, cache)

    # another expert file (emo train-expert): its outputs computed again, emo-cnn's kept
    meta["preprocessing"]["flip_tta"] = not meta["preprocessing"]["flip_tta"]
    (bundle / "face.json").write_text(json.dumps(meta))
    (bundle / "face_expert_rafdb.onnx").write_bytes(b"another expert file")  # the tiny bundle had none
    fourth = script.extract("set", images, bundle, lambda img: None, CountingExpert(), cache=cache)
    assert (CountingExpert.calls, len(cnn_calls)) == (2, 2)
    assert np.array_equal(fourth["cnn_feat"], third["cnn_feat"]) and not np.array_equal(fourth["raf_emb"],
                                                                                        third["raf_emb"])



def test_calibrate_experts_command_fits_and_writes_the_experts_and_keeps_the_head(tmp_path, rng):
    """Issue 28, 5: the experts' temperatures and weights are an `emo` command (they were
    scripts/face_experts.py); a rerun keeps the bundle's face head and its figures."""
    from typer.testing import CliRunner

    from conftest import colour_corpora
    from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
    from emocli.cli.app import app
    from emocli.face.experts import ExpertSet

    data = colour_corpora(tmp_path / "data", rng, {"affectnet/train": 14, "sfew/Train": 6, "fer2013/val": 2})
    bundle = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    before = json.loads((bundle / "experts.json").read_text())
    runner = CliRunner()
    r = runner.invoke(app, ["calibrate-experts", str(data), "--model", str(bundle), "--cache", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "affectnet-calib" in r.output and "temperatures" in r.output
    assert json.loads((bundle / "experts.json").read_text()) == before  # nothing written without --write
    r = runner.invoke(app, ["calibrate-experts", str(data), "--model", str(bundle), "--cache", str(tmp_path / "c"),
                            "--write"])
    assert r.exit_code == 0, r.output
    doc = json.loads((bundle / "experts.json").read_text())
    assert doc["temperatures"] != before["temperatures"] and set(doc["temperatures"]) == {"emo-cnn", "rafdb"}
    assert doc["head"] == before["head"]  # the face head stays, with the recall fuse weighs it by
    assert doc["info"]["validation_recall"] == before["info"]["validation_recall"]
    assert "average_validation_recall" in doc["info"] and "emo calibrate-experts" in doc["info"]["command"]
    verify_bundle(bundle)
    assert ExpertSet.from_dict(doc, bundle / "experts.json").head_ is not None
    r = runner.invoke(app, ["calibrate-experts", str(tmp_path / "nowhere"), "--model", str(bundle)])
    assert r.exit_code == 1 and "affectnet/train" in r.output and "../shared/data" in r.output
    for extra in [p for p in (data / "affectnet" / "train").glob("*/*.png") if int(p.stem) >= 8]:
        extra.unlink()  # 8 a class: one held out of each, all in the calib half, no test half left
    r = runner.invoke(app, ["calibrate-experts", str(data), "--model", str(bundle), "--cache", str(tmp_path / "c")])
    assert r.exit_code == 1 and "affectnet-test" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_train_head_command_fits_chooses_and_writes_the_face_head(tmp_path, rng, monkeypatch):
    """Issue 28, 5: the face head is trained by an `emo` command (it was scripts/face_head.py)."""
    from typer.testing import CliRunner

    from conftest import colour_corpora
    from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
    from emocli.cli.app import app
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    data = colour_corpora(tmp_path / "data", rng, {"affectnet/train": 10, "sfew/Train": 5, "rafdb/train": 10})
    bundle = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    head_before = (bundle / "face_head.npz").read_bytes()
    runner = CliRunner()
    args = ["train-head", str(data), "--model", str(bundle), "--cache", str(tmp_path / "c")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "chosen on the calib halves" in r.output and (bundle / "face_head.npz").read_bytes() == head_before
    r = runner.invoke(app, [*args, "--write"])
    assert r.exit_code == 0, r.output
    assert (bundle / "face_head.npz").read_bytes() != head_before
    info = json.loads((bundle / "experts.json").read_text())["head"]["info"]
    assert "emo train-head" in info["command"] and set(info["test"]) == {"affectnet-test", "sfew-test", "rafdb-test"}
    # both framings were fitted and scored: the faces as files and as video frames crop them
    assert "image+video" in r.output and "rafdb@video" in r.output and info["framing"] in ("image", "image+video")
    assert set(info["test_as_video_frames"]) == set(info["test"])
    verify_bundle(bundle)
    assert Pipeline(bundle, Options()).face.head is not None  # the new head loads, with the experts' widths
    r = runner.invoke(app, ["train-head", str(tmp_path / "nowhere"), "--model", str(bundle)])
    assert r.exit_code == 1 and "rafdb/train" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*args, "--framing", "image", "--write"])  # the head as fitted before, from the cache
    assert r.exit_code == 0 and "image+video" not in r.output, r.output
    info = json.loads((bundle / "experts.json").read_text())["head"]["info"]
    assert info["framing"] == "image" and not info["test_as_video_frames"]
    # features of another expert (emo train-expert wrote one): scored again, each face cut where the
    # detector found it before, not detected again
    import emocli.train.head as head

    cached = tmp_path / "c" / "video" / "sfew-calib.npz"
    with np.load(cached) as z:
        arrays = dict(z)
    np.savez(cached, **{**arrays, "expert": np.array("another expert"), "raf_emb": arrays["raf_emb"] * 0})

    def detect(*a, **k):
        raise AssertionError("detected again")

    monkeypatch.setattr(head, "faces_in_frames", detect)
    r = runner.invoke(app, [*args, "--framing", "image+video"])
    assert r.exit_code == 0 and "features of another face expert" in r.output, r.output
    with np.load(cached) as z:
        assert str(z["expert"]) != "another expert" and np.array_equal(z["raf_emb"], arrays["raf_emb"])
        assert np.array_equal(z["boxes"], arrays["boxes"], equal_nan=True)
