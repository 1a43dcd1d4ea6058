"""emo info: the bundle's files with their sha256 (as the manifest pins them), licences and training data,
the detectors, the speech encoder, ffmpeg and the GPU decision."""

import json

from typer.testing import CliRunner

from emocli.bundle import DEFAULT_BUNDLE
from emocli.cli.app import app

runner = CliRunner()


def test_info_json_describes_the_shipped_bundle():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    assert {f["file"]: f["sha256"] for f in d["files"]} == manifest["files"]
    by_name = {f["file"]: f for f in d["files"]}
    assert by_name["face_expert_rafdb.onnx"]["licence"].startswith("Apache-2.0")
    assert by_name["voice_vad.npz"]["licence"].startswith("MIT")
    assert "fer2013" in by_name["face.tflite"]["trained_on"]
    assert "BatchNorm" in by_name["face_bn.npz"]["role"] and "face.keras" not in by_name
    # what each face part learned from, as experts.json records it: the expert's stages, the head's framings
    experts = json.loads((DEFAULT_BUNDLE / "experts.json").read_text())
    stage = experts["info"]["rafdb_fine_tune"]["from_stage"]
    assert f"stages from {stage} on fine-tuned" in by_name["face_expert_rafdb.onnx"]["trained_on"]
    framed = "as a video frame crops it" in by_name["face_head.npz"]["trained_on"]
    assert framed == (experts["head"]["info"]["framing"] == "image+video")
    # the corpora by name, manifests too (named after their folder, not "manifest")
    assert {"ravdess", "emodb", "savee", "nemo", "ased", "turev_db", "urdu"} == set(
        by_name["voice.npz"]["trained_on"].split(" (")[0].split(", "))
    assert [x["name"] for x in d["detectors"]] == ["yunet", "blazeface"] and d["default_detector"] == "yunet"
    assert d["encoders"][0]["licence"].startswith("MIT")
    assert d["ffmpeg"]["version"].startswith("ffmpeg version")
    assert isinstance(d["gpu"], bool) and d["gpu_reason"]


def test_info_of_a_missing_bundle_is_one_line(tmp_path):
    r = runner.invoke(app, ["info", "--model", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "nope" in r.output and len(r.output.strip().splitlines()) == 1


def test_version_short_option_and_shell_completion():
    import os
    import subprocess
    import sys
    from pathlib import Path

    r = runner.invoke(app, ["-V"])
    assert r.exit_code == 0 and r.stdout.startswith("emo ")
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    env = dict(os.environ, _EMO_COMPLETE="complete_bash", COMP_WORDS="emo pre", COMP_CWORD="1")
    emo = Path(sys.executable).parent / "emo"  # the installed console script: completion keys on its name
    out = subprocess.run([str(emo)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["predict"]
