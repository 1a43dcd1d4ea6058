"""Faces under 64 px: the bundle's small-face mix of emo-cnn and the RAF-DB expert (issue 34, item 2)."""

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FOLDERS, colour_corpora
from emocli.bundle import DEFAULT_BUNDLE, read_manifest_unchecked, verify_bundle, write_manifest
from emocli.cli.app import app
from emocli.errors import ModelError
from emocli.face.experts import EXPERTS_FILE, ExpertSet, is_grey, temper

runner = CliRunner()
SMALL = {"temperatures": {"colour": {"emo-cnn": 0.8, "rafdb": 2.4}, "grey": {"emo-cnn": 1.0, "rafdb": 1.5}},
         "cnn_weight": {"colour": 0.3, "grey": 0.6}, "info": {"side": 48}}


def test_small_mix_uses_each_kinds_weight_and_temperatures_and_round_trips():
    es = ExpertSet(small_=SMALL)
    rng = np.random.default_rng(0)
    cnn, raf = (rng.dirichlet(np.ones(7), 4).astype(np.float32) for _ in range(2))
    grey = np.array([False, True, False, True])
    p = es.small_mix(cnn, raf, grey)
    want_colour = 0.3 * temper(cnn[0], 0.8) + 0.7 * temper(raf[0], 2.4)
    want_grey = 0.6 * temper(cnn[1], 1.0) + 0.4 * temper(raf[1], 1.5)
    assert np.allclose(p[0], want_colour, atol=1e-6) and np.allclose(p[1], want_grey, atol=1e-6)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(es.small_mix(cnn, raf, grey, use=("rafdb",))[0], temper(raf[0], 2.4), atol=1e-6)
    back = ExpertSet.from_dict(json.loads(json.dumps(es.to_dict())))
    assert back.small_["cnn_weight"] == SMALL["cnn_weight"] and back.small_weight(True) == 0.6
    assert ExpertSet().small_weight(False) == 1.0  # no settings: emo-cnn alone, as before


@pytest.mark.parametrize("bad", [{"cnn_weight": {"colour": 0.3}}, {**SMALL, "cnn_weight": {"colour": 1.5, "grey": 0}},
                                 {**SMALL, "temperatures": {"colour": {"rafdb": 0}, "grey": {}}}])
def test_malformed_small_face_settings_are_one_line_with_the_fix(bad):
    d = {**ExpertSet().to_dict(), "small_faces": bad}
    with pytest.raises(ModelError, match="calibrate-small-faces") as e:
        ExpertSet.from_dict(d, "b/experts.json")
    assert "\n" not in str(e.value) and "b/experts.json" in str(e.value)


def test_is_grey():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    assert is_grey(g) and is_grey(np.stack([g] * 3, -1))
    assert not is_grey(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))


def _small_bundle(tmp_path, small=SMALL):
    bundle = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    doc = json.loads((bundle / EXPERTS_FILE).read_text())
    doc.pop("small_faces", None)
    if small is not None:
        doc["small_faces"] = small
    (bundle / EXPERTS_FILE).write_text(json.dumps(doc))
    man = read_manifest_unchecked(bundle)
    write_manifest(bundle, labels=man["labels"], settings=man.get("settings"))
    return bundle


def test_a_small_colour_face_gets_the_mix_and_a_grey_one_emo_cnn_where_its_weight_is_one(tmp_path):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    rng = np.random.default_rng(2)
    colour = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    grey = np.stack([rng.integers(0, 255, (48, 48), dtype=np.uint8)] * 3, -1)
    plain = Pipeline(_small_bundle(tmp_path / "a", None), Options(detect=False)).face
    mixed = Pipeline(_small_bundle(tmp_path / "b", {**SMALL, "cnn_weight": {"colour": 0.3, "grey": 1.0}}),
                     Options(detect=False)).face
    p_plain, p_mixed = plain.score_crops([colour, grey]), mixed.score_crops([colour, grey])
    assert not np.allclose(p_plain[0], p_mixed[0], atol=1e-3)  # the expert scored the small colour face
    # the grey face: emo-cnn alone (weight 1), tempered by the grey temperature 1.0 = as before
    assert np.allclose(p_plain[1], p_mixed[1], atol=1e-5)
    _, mask, small = mixed.aligned([colour, grey], [None, None], [colour, grey])
    assert mask.tolist() == [True, False] and small.tolist() == [1, 0]
    _, mask, small = plain.aligned([colour, grey], [None, None], [colour, grey])
    assert not mask.any() and not small.any()


def test_predict_says_which_faces_the_small_face_mix_scored(tmp_path):
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    rng = np.random.default_rng(3)
    img, grey = tmp_path / "face.png", tmp_path / "grey.png"
    cv2.imwrite(str(img), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    cv2.imwrite(str(grey), rng.integers(0, 255, (40, 40), dtype=np.uint8))
    pipe = Pipeline(_small_bundle(tmp_path, {**SMALL, "cnn_weight": {"colour": 0.2, "grey": 1.0}}), Options(detect=False))
    res = pipe.run(img)
    assert any("1 face(s) under 64 px scored by the small-face mix" in n for n in res.notes), res.notes
    assert not any("skipped" in n for n in res.notes)
    res = pipe.run(grey)
    assert any("skipped 1 of 1 face(s) (grey and under 64 px): emo-cnn scored them alone" in n for n in res.notes)
    assert not any("small-face mix" in n for n in res.notes)


def _fer_folder(root, rng, n):
    for i, folder in enumerate(FOLDERS):
        d = root / "fer2013" / "train" / folder
        d.mkdir(parents=True)
        for k in range(n):
            img = rng.integers(0, 80, (48, 48), dtype=np.uint8)
            img[6 * i:6 * i + 6] = 240
            cv2.imwrite(str(d / f"{k}.png"), img)


def test_calibrate_small_faces_command_fits_writes_and_refuses_in_one_line(tmp_path):
    rng = np.random.default_rng(4)
    data = colour_corpora(tmp_path / "data", rng, {"affectnet/train": 14, "sfew/Train": 6, "rafdb/train": 14})
    _fer_folder(tmp_path / "data", rng, 10)
    bundle = _small_bundle(tmp_path, None)
    face = json.loads((bundle / "face.json").read_text())
    face.pop("n_holdout", None)  # the shipped network's held-out part is of the real FER2013
    (bundle / "face.json").write_text(json.dumps(face))
    man = read_manifest_unchecked(bundle)
    write_manifest(bundle, labels=man["labels"], settings=man.get("settings"))
    before = (bundle / EXPERTS_FILE).read_text()
    r = runner.invoke(app, ["calibrate-small-faces", str(data), "--bundle", str(bundle)])
    assert r.exit_code == 0, r.output
    assert "colour: emo-cnn weight" in r.output and "grey: emo-cnn weight" in r.output
    assert (bundle / EXPERTS_FILE).read_text() == before  # nothing written without --write
    r = runner.invoke(app, ["calibrate-small-faces", str(data), "--bundle", str(bundle), "--write"])
    assert r.exit_code == 0, r.output
    doc = json.loads((bundle / EXPERTS_FILE).read_text())
    small = doc["small_faces"]
    assert set(small["cnn_weight"]) == {"colour", "grey"} and small["info"]["calibrated_on"]["fer2013-heldout"] > 0
    assert doc["head"] == json.loads(before)["head"]  # the face head stays
    verify_bundle(bundle)
    assert set(small["info"]["uar_by_cnn_weight"]["colour"]) == {str(w / 10) if w % 10 else f"{w // 10}.0"
                                                                  for w in range(11)}
    for args, why in (([str(tmp_path / "nowhere")], "fer2013/train"), ([str(data), "--side", "80"], "--side")):
        r = runner.invoke(app, ["calibrate-small-faces", *args, "--bundle", str(bundle), "--write"])
        assert r.exit_code != 0 and why in r.output and "Traceback" not in r.output
    assert json.loads((bundle / EXPERTS_FILE).read_text()) == doc
    no_expert = shutil.copytree(bundle, tmp_path / "no_expert")
    (no_expert / "face_expert_rafdb.onnx").unlink()
    r = runner.invoke(app, ["calibrate-small-faces", str(data), "--bundle", str(no_expert), "--write"])
    assert r.exit_code == 1 and "face_expert_rafdb.onnx" in r.output and "--bundle" in r.output
    assert len(r.output.strip().splitlines()) == 1 and (no_expert / EXPERTS_FILE).read_text() == json.dumps(doc, indent=2) + "\n"


def test_the_mix_replaces_emo_cnn_only_when_it_gains_two_points():
    from emocli.train.small_faces import choose

    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(7), 30)
    right = np.eye(7)[y] * 0.6 + 0.4 / 7
    noise = rng.dirichlet(np.ones(7), len(y))
    fit = choose({"a": (y, noise, right)}, ("a",))  # the expert right, emo-cnn guessing
    assert fit["cnn_weight"] < 0.5 and fit["uar_by_cnn_weight"][0.0] == 1.0
    fit = choose({"a": (y, right, noise)}, ("a",))  # emo-cnn right: it stays alone
    assert fit["cnn_weight"] == 1.0
    almost = right.copy()
    almost[:3] = np.roll(almost[:3], 1, axis=1)  # emo-cnn wrong on 3 of 210 faces, a mix might fix them: not 2 points
    fit = choose({"a": (y, almost, 0.5 * right + 0.5 * noise)}, ("a",))
    assert fit["cnn_weight"] == 1.0
