"""emo train-expert: the RAF-DB MobileFaceNet's last stage fine-tuned on the colour face corpora (issue 34)."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import colour_corpora
from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
from emocli.cli.app import app
from emocli.face.experts import EXPERTS_FILE, HEAD_FILE, RAFDB_FILE, OnnxExpert

pytestmark = pytest.mark.slow  # trains face networks: `pytest -m 'not slow'` leaves it out

pytest.importorskip("onnx")  # in the test extra; the runtime does not need it
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data, source bundle, new bundle, command output) of one short fine-tuning run."""
    root = tmp_path_factory.mktemp("expert")
    data = colour_corpora(root / "data", np.random.default_rng(0),
                          {"affectnet/train": 10, "sfew/Train": 5, "rafdb/train": 10, "fer2013/val": 2})
    bundle = shutil.copytree(DEFAULT_BUNDLE, root / "bundle")
    out = root / "new"
    r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(out), "--epochs", "3",
                            "--lr", "0.003", "--cache", str(root / "cache"), "--mirror"])
    assert r.exit_code == 0, r.output
    return data, bundle, out, r.output


def test_fine_tuning_writes_a_new_bundle_with_a_better_expert_and_no_stale_head(trained):
    data, bundle, out, output = trained
    assert (bundle / RAFDB_FILE).read_bytes() == (DEFAULT_BUNDLE / RAFDB_FILE).read_bytes()  # the source stays
    assert (bundle / HEAD_FILE).is_file() and not (out / HEAD_FILE).is_file()
    doc = json.loads((out / EXPERTS_FILE).read_text())
    assert "head" not in doc  # fitted on the old embedding: `emo train-head` fits one again
    info = doc["info"]["rafdb_fine_tune"]
    assert info["chosen_epoch"] >= 1 and [e["epoch"] for e in info["epochs"]] == [0, 1, 2, 3]
    assert info["mean_calib_uar"] > info["epochs"][0]["mean_calib_uar"]
    assert info["trained_on"]["rafdb-train"] > 0 and "emo train-expert" in info["command"] and info["mirror"]
    assert "epoch 3" in output and "emo train-head" in output and "emo calibrate-experts" in output
    verify_bundle(out)  # the manifest names the new expert file
    from emocli.report.info import describe

    rows = {f["file"]: f for f in describe(out)["files"]}
    assert "last stage fine-tuned on" in rows[RAFDB_FILE]["trained_on"]  # emo info says which stages were trained

    # the written expert is the one chosen: it reads the bands the old one never saw
    from emocli.train.calibration import align_crops, face_sets
    from emocli.media.ffmpeg import read_image

    paths, y = face_sets(data)["rafdb-train"]
    faces, _, _ = align_crops([read_image(p) for p in paths], lambda img: None)
    old, new = (OnnxExpert(b / RAFDB_FILE).logits(np.asarray(faces)).argmax(1) for b in (bundle, out))
    assert (new == y).mean() > (old == y).mean()


def test_the_new_bundle_predicts_and_takes_a_new_calibration_and_head(trained, tmp_path):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    data, _, out, _ = trained
    out = shutil.copytree(out, tmp_path / "bundle")
    assert Pipeline(out, Options()).face.head is None
    for command, extra in (("calibrate-experts", []), ("train-head", ["--framing", "image"])):  # framing: test_experts
        r = runner.invoke(app, [command, str(data), "--bundle", str(out), "--cache", str(tmp_path / command), "--write",
                                *extra])
        assert r.exit_code == 0, r.output
    assert Pipeline(out, Options()).face.head is not None
    info = json.loads((out / EXPERTS_FILE).read_text())["info"]
    assert info["rafdb_fine_tune"]["chosen_epoch"] >= 1  # the expert's record outlives its recalibration
    assert "emo train-expert" in info["rafdb"]["trained_on"]
    verify_bundle(out)


def test_outputs_that_would_overwrite_and_missing_corpora_are_refused(trained, tmp_path):
    data, bundle, out, _ = trained
    before = (out / RAFDB_FILE).read_bytes()
    for target, why in ((out, "not empty"), (bundle, "the bundle the expert comes from")):
        r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(target)])
        assert r.exit_code == 1 and why in r.output and "--out" in r.output and "Traceback" not in r.output
    assert (out / RAFDB_FILE).read_bytes() == before
    for cache in (tmp_path / "y", tmp_path / "y" / "crops"):  # the crops would land in the new bundle
        r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(tmp_path / "y"),
                                "--cache", str(cache)])
        assert r.exit_code == 1 and "crop cache" in r.output and "--cache" in r.output
        assert not (tmp_path / "y").exists()
    r = runner.invoke(app, ["train-expert", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "rafdb/train" in r.output and "../shared/data" in r.output
    assert not (tmp_path / "x").exists()


def test_a_run_where_no_epoch_beats_the_expert_writes_nothing_and_says_so(trained, tmp_path):
    data, bundle, _, _ = trained
    out = tmp_path / "new"
    r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(out), "--epochs", "1",
                            "--lr", "1e-12", "--cache", str(data.parent / "cache")])  # the fixture's aligned crops
    assert r.exit_code == 1 and "no epoch beat" in r.output and "--learning-rate" in r.output
    assert "Traceback" not in r.output and not out.exists()


def test_earlier_stages_train_on_augmented_images_and_the_stem_keeps_its_int8_weights(trained, tmp_path):
    """--from-stage 14x14: the 14x14 and 7x7 stages learn from frame-like augmented faces; the stages before
    them stay as they came (their int8 weights keep their bytes)."""
    import onnx

    data, bundle, _, _ = trained
    out = tmp_path / "new"
    r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(out), "--epochs", "1",
                            "--lr", "0.002", "--cache", str(data.parent / "cache"), "--from-stage", "14x14"])
    assert r.exit_code == 0, r.output
    info = json.loads((out / EXPERTS_FILE).read_text())["info"]["rafdb_fine_tune"]
    assert info["from_stage"] == "14x14" and "--from-stage 14x14" in info["command"] and "FrameLike" in info["augmentation"]
    assert info["chosen_epoch"] >= 1 and info["mean_calib_uar"] > info["epochs"][0]["mean_calib_uar"]
    assert info["after"].startswith("emo train-expert")  # the shipped expert was fine-tuned already: its command kept

    def weights(path):  # each convolution's weights, and the convolutions whose weights are int8
        from emocli.face.mobilefacenet import constants

        model = onnx.load(str(path))
        deq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        values = constants(model)
        return {n.output[0]: values[n.input[1]] for n in convs}, {n.output[0] for n in convs if n.input[1] in deq}

    (old, _), (new, int8) = weights(bundle / RAFDB_FILE), weights(out / RAFDB_FILE)
    stem, block14 = "336_quantized_f", "397_quantized_f"  # the first convolution; a 14x14 depthwise one
    assert stem in int8 and np.array_equal(old[stem], new[stem])  # frozen: its int8 bytes kept
    assert block14 not in int8 and not np.allclose(old[block14], new[block14])  # trained: written float32


def test_a_stage_that_is_not_one_and_mirror_with_augmented_images_are_refused(trained, tmp_path):
    data, bundle, _, _ = trained
    for extra, why in ((["--from-stage", "5x5"], "not a stage"), (["--from-stage", "all", "--mirror"], "--mirror")):
        r = runner.invoke(app, ["train-expert", str(data), "--bundle", str(bundle), "--out", str(tmp_path / "x"),
                                *extra])
        assert r.exit_code == 1 and why in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
