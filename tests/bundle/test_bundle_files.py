"""Files emo reads back: a bundle member, an extracted item or a backbone that
is damaged, even under a manifest re-hashed to match, is one line naming it and the fix, never a
traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from emocli.bundle import DEFAULT_BUNDLE, write_manifest
from emocli.cli.app import app

runner = CliRunner()
LABELS = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["labels"]


def damaged_bundle(tmp_path, member: str, damage) -> str:
    """The shipped bundle with ``member`` damaged by ``damage(path)``, the others linked, the manifest
    re-hashed (so only the member's own check can catch it)."""
    d = tmp_path / "bundle"
    d.mkdir()
    for p in DEFAULT_BUNDLE.iterdir():
        if p.name == member:
            shutil.copy(p, d / p.name)
        else:
            (d / p.name).symlink_to(p)
    damage(d / member)
    (d / "manifest.json").unlink()
    shutil.copy(DEFAULT_BUNDLE / "manifest.json", d / "manifest.json")
    write_manifest(d, labels=LABELS)
    return str(d)


def truncate(p):
    b = p.read_bytes()
    p.write_bytes(b[:len(b) // 2])


def nan_in_npz(p):
    z = dict(np.load(p))
    k = next(k for k, v in z.items() if v.dtype.kind == "f" and v.size)
    z[k] = z[k].copy()
    z[k].flat[0] = np.nan
    with open(p, "wb") as fh:
        np.savez(fh, **z)


def json_edit(**changes):
    def edit(p):
        d = json.loads(p.read_text())
        for path, value in changes.items():
            *parents, key = path.split("/")
            node = d
            for k in parents:
                node = node[k]
            node[key] = value
        p.write_text(json.dumps(d).replace("Infinity", "1e309"))
    return edit


@pytest.mark.parametrize("member, damage, says", [
    ("face_expert_rafdb.onnx", truncate, "not a usable ONNX face expert"),
    ("voice.npz", nan_in_npz, "non-finite values"),
    ("face_head.npz", nan_in_npz, "non-finite values"),
    ("voice_vad.npz", nan_in_npz, "non-finite values"),
    ("face.json", lambda p: p.write_text(""), "not valid JSON"),
    ("voice.json", json_edit(n_features="many"), "'n_features' must be a positive whole number"),
    ("voice.json", json_edit(n_features=None), "'n_features' must be a positive whole number"),
    ("voice.json", json_edit(n_features=[1057]), "'n_features' must be a positive whole number"),
    ("voice.json", json_edit(n_features=float("inf")), "'n_features' must be a positive whole number"),
    ("voice.json", json_edit(**{"features/window_s": float("inf")}), "unusable feature settings"),
    ("voice.json", json_edit(**{"svm/C": "x"}), "unusable SVM or selection settings"),
    ("voice.json", json_edit(format_version="x"), "'format_version' must be a whole number"),
    ("face.json", json_edit(**{"preprocessing/size": None}), "unusable face-model settings"),
    ("face.json", json_edit(**{"preprocessing/scale": float("inf")}), "unusable face-model settings"),
    ("face.json", json_edit(labels=-1), "unusable face-model settings"),
    ("experts.json", json_edit(**{"temperatures/rafdb": float("inf")}), "non-finite temperatures"),
])
def test_a_damaged_member_is_one_line_naming_it(tmp_path, member, damage, says):
    bundle = damaged_bundle(tmp_path, member, damage)
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", bundle, "--json"],
                      terminal_width=400)
    assert "Traceback" not in r.output and r.exc_info[0] in (SystemExit, None), r.exc_info
    text = r.stdout + r.stderr
    assert r.exit_code == 1 and member in text and says in text, text[-600:]


# -- extracted items ------------------------------------------------------------------------------

@pytest.fixture
def extraction(tiny_bundle, tmp_path):
    root = tmp_path / "afew"
    for folder, src in (("Happy", "HAP"), ("Sad", "SAD"), ("Angry", "ANG")):
        (root / "Train" / folder).mkdir(parents=True)
        shutil.copy(EXAMPLES / f"1001_DFA_{src}_XX.avi", root / "Train" / folder / f"{src}.avi")
    out = tmp_path / "feats"
    r = runner.invoke(app, ["extract", str(root), "--out", str(out), "--model", str(tiny_bundle)])
    assert r.exit_code == 0, r.output
    return root, out


def _damage_items(out):
    items = sorted((out / "items").glob("*.npz"))
    truncate(items[0])
    np.savez(items[1], label=np.array([{"pickled": True}], dtype=object))  # only loads with allow_pickle
    (out / "items" / "x.error.json").write_text("{not json")
    return items


def test_resume_redoes_damaged_items(tiny_bundle, extraction):
    root, out = extraction
    items = _damage_items(out)
    r = runner.invoke(app, ["extract", str(root), "--out", str(out), "--model", str(tiny_bundle), "--resume"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["done"] == 2 and summary["skipped"] == 1
    for p in items:
        with np.load(p, allow_pickle=False) as z:
            assert "face_scores" in z.files


def test_training_on_a_damaged_item_names_it(tiny_bundle, extraction, tmp_path):
    _, out = extraction
    items = _damage_items(out)
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    for cmd in (["train-audio", "--features", str(out), "--out", str(bundle)],
                ["train-video", "--features", str(out), "--out", str(bundle)],
                ["fuse", str(bundle), "--method", "learned", "--features", str(out)]):
        r = runner.invoke(app, cmd, terminal_width=400)
        assert r.exit_code == 1 and "Traceback" not in r.output, (cmd, r.output[-800:])
        assert "damaged extracted item" in r.output and items[0].name in r.output and "--resume" in r.output


def test_a_damaged_extract_json_is_one_line(tiny_bundle, extraction):
    root, out = extraction
    (out / "extract.json").write_text("{")
    r = runner.invoke(app, ["extract", str(root), "--out", str(out), "--model", str(tiny_bundle), "--resume"],
                      terminal_width=400)
    assert r.exit_code == 1 and "Traceback" not in r.output and "extract.json" in r.output


# -- backbones ------------------------------------------------------------------------------------

def test_a_refused_backbone_file_is_one_line(tmp_path):
    import cv2
    import keras

    faces = tmp_path / "faces"
    for lab in ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        (faces / lab).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(faces / lab / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (48, 48), np.uint8))
    text = tmp_path / "model.h5"
    text.write_text("not a model")
    inp = keras.Input((64, 64, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inp)
    out = keras.layers.Dense(7)(keras.layers.GlobalAveragePooling2D()(x))
    evil = tmp_path / "evil.h5"
    keras.Model(inp, out).save(evil)
    for path, says in ((text, "backbone file refused"), (evil, "Lambda")):
        r = runner.invoke(app, ["train-video", str(faces), "--out", str(tmp_path / "b"), "--backbone",
                                f"mini-xception:{path}", "--epochs", "1"], terminal_width=400)
        assert r.exit_code == 1 and "Traceback" not in r.output and says in r.output and str(path) in r.output


def test_an_unreadable_member_is_one_line(tmp_path, monkeypatch):
    """Root reads every file, so the permission error is simulated where the bundle check reads."""
    from emocli import bundle as bundle_module

    d = damaged_bundle(tmp_path, "fusion.json", lambda p: None)

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(bundle_module, "cached_sha256", denied)
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", d, "--json"],
                      terminal_width=400)
    assert r.exit_code == 1 and "Traceback" not in r.output and "cannot read it (Permission denied)" in r.output


@pytest.mark.parametrize("bad", ["x", None, [], float("inf")])
def test_a_manifest_with_a_malformed_version_is_one_line(tmp_path, bad):
    d = damaged_bundle(tmp_path, "fusion.json", lambda p: None)
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    m["format_version"] = bad
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(m).replace("Infinity", "1e309"))
    r = runner.invoke(app, ["predict", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "--model", d, "--json"],
                      terminal_width=400)
    assert r.exit_code == 1 and "Traceback" not in r.output and "'format_version' must be a whole number" in r.output


def test_bundle_hashes_are_remembered_and_a_change_is_still_caught(tmp_path, monkeypatch):
    """verify_bundle hashes each file once per install (the cache survives the process), and a member
    changed afterwards (size, time or inode) is hashed again and refused; a damaged cache is ignored."""
    from emocli import files
    from emocli.bundle import verify_bundle
    from emocli.errors import ModelError

    monkeypatch.setenv("EMO_CACHE_DIR", str(tmp_path / "cache"))
    d = tmp_path / "b"
    shutil.copytree(DEFAULT_BUNDLE, d, ignore=shutil.ignore_patterns("*.skops", "voice*.npz"))
    m = json.loads((d / "manifest.json").read_text())
    m["files"] = {k: v for k, v in m["files"].items() if (d / k).is_file()}
    (d / "manifest.json").write_text(json.dumps(m))
    calls = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda p: calls.append(p) or real(p))

    def fresh_process():
        monkeypatch.setattr(files, "_hash_cache", None)
        calls.clear()

    fresh_process()
    verify_bundle(d)
    assert len(calls) == len(m["files"]) and (tmp_path / "cache" / files.HASH_CACHE_FILE).is_file()
    fresh_process()
    verify_bundle(d)
    assert calls == []  # all remembered
    with open(d / "fusion.json", "a") as fh:
        fh.write(" ")
    fresh_process()
    with pytest.raises(ModelError, match="fusion.json: sha256"):
        verify_bundle(d)
    (tmp_path / "cache" / files.HASH_CACHE_FILE).write_text("{not json")
    fresh_process()
    with pytest.raises(ModelError, match="fusion.json: sha256"):
        verify_bundle(d)
    monkeypatch.setenv("EMO_CACHE_DIR", "off")
    fresh_process()
    with pytest.raises(ModelError, match="fusion.json: sha256"):
        verify_bundle(d)
    assert len(calls) >= 1


def test_shipped_bundle_knows_its_training_items():
    """The shipped training_items.npz: every part, about as many items as each model card says (byte-identical
    duplicates count once), a trained RAVDESS actor's clip seen and a held-out actor's clip unseen."""
    from conftest import SHARED
    from emocli import fingerprints

    sets = fingerprints.read(DEFAULT_BUNDLE)
    assert set(sets) == set(fingerprints.PARTS)
    voice = json.loads((DEFAULT_BUNDLE / "voice.json").read_text())["trained_on"]["n_clips"]
    face = json.loads((DEFAULT_BUNDLE / "face.json").read_text())["n_train"]
    assert voice - 5 <= len(sets["voice.svm"]) <= voice and face * 0.95 <= len(sets["face.emo-cnn"]) <= face
    assert (DEFAULT_BUNDLE / fingerprints.FINGERPRINTS_FILE).stat().st_size < 2_000_000
    trained = SHARED / "data" / "ravdess" / "Actor_04" / "03-01-05-01-01-01-04.flac"
    held = SHARED / "data" / "ravdess" / "Actor_02" / "03-01-05-01-01-01-02.flac"
    if not (trained.is_file() and held.is_file()):
        pytest.skip("../shared/data/ravdess not here")
    seen = fingerprints.seen_by(sets, fingerprints.fingerprints([trained, held]))
    assert seen["voice.svm"].tolist() == [True, False]
