"""Scale-out on Ray (emocli.runners.ray): the same results as the local path, on a local Ray instance.

The Ray tests are slow (a Ray instance plus one TensorFlow process per actor) and are skipped
when Ray is not installed (pip install -e '.[ray,test]'); run them with
``pytest tests/test_scale.py -m slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from emocli.cli.app import app
from emocli.pipeline.options import Options

runner = CliRunner()
CLIPS = ["ANG", "HAP", "SAD"]


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the module; emocli.runners.ray uses it instead of starting its own."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for attempt in range(3):
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     object_store_memory=256 * 1024**2)
            break
        except Exception:  # Ray gives its processes 30 s to start: too little on a busy CI machine's cold start
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture
def inputs(tmp_path):
    return [str(EXAMPLES / f"1001_DFA_{c}_XX.avi") for c in CLIPS] + [str(tmp_path / "missing.avi")]


def _same_result(got, want):
    assert got.file == want.file
    assert (got.status, got.label, got.frames_used, got.modalities) == \
        (want.status, want.label, want.frames_used, want.modalities), got.file
    assert got.error == want.error and got.error_type == want.error_type
    for name in ("scores", "face_scores", "voice_scores"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), (got.file, name)
        if a is not None:
            assert a.keys() == b.keys()
            assert np.allclose([a[k] for k in a], [b[k] for k in a], atol=1e-5), (got.file, name)


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    from emocli.errors import EmoError
    from emocli.runners.ray import ray_predict

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EmoError, match=r"pip install 'emocli\[ray\]'"):
        ray_predict(None, Options(), [])


@pytest.mark.slow
@pytest.mark.parametrize("shard_size", [1, 3])
def test_ray_predict_equals_local_bulk(ray_local, tiny_bundle, inputs, shard_size):
    from emocli.runners.pool import run_bulk
    from emocli.media.inputs import expand_inputs
    from emocli.pipeline.core import Pipeline
    from emocli.runners.ray import ray_predict

    want = list(run_bulk(Pipeline(tiny_bundle, Options()), expand_inputs(inputs)))
    got = list(ray_predict(tiny_bundle, Options(), expand_inputs(inputs), shard_size=shard_size))
    assert [r.file for r in got] == inputs  # input order
    assert [r.status for r in got] == ["ok"] * len(CLIPS) + ["error"]
    for g, w in zip(got, want, strict=True):
        _same_result(g, w)


@pytest.mark.slow
def test_cli_predict_ray_prints_the_same_json_lines(ray_local, tiny_bundle, inputs):
    args = ["predict", *inputs, "--model", str(tiny_bundle), "--json"]
    local, remote = runner.invoke(app, args), runner.invoke(app, [*args, "--ray"])
    assert local.exit_code == remote.exit_code == 1  # the missing file
    strip = (lambda out: [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                          for line in out.splitlines() if line.startswith("{")])
    want, got = strip(local.stdout), strip(remote.stdout)
    assert len(got) == len(inputs)
    for g, w in zip(got, want, strict=True):
        for name in ("scores", "face_scores", "voice_scores"):
            a, b = g.pop(name), w.pop(name)
            assert (a is None) == (b is None) and (a is None or np.allclose(list(a.values()), list(b.values()),
                                                                            atol=1e-5))
        assert g == w


@pytest.fixture
def corpus(tmp_path):
    """AFEW layout: <root>/{Train,Val}/<Emotion>/*.avi, plus one undecodable clip."""
    root = tmp_path / "AFEW"
    for split, emotion, code in (("Val", "Happy", "HAP"), ("Val", "Sad", "SAD"), ("Train", "Angry", "ANG"),
                                 ("Train", "Happy", "HAP")):
        (root / split / emotion).mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / f"1001_DFA_{code}_XX.avi", root / split / emotion / f"{code.lower()}.avi")
    (root / "Val" / "Fear").mkdir()
    (root / "Val" / "Fear" / "broken.avi").write_bytes(b"RIFF\0\0\0\0AVI not really a video")
    return root


def _extract(fn, corpus, out, bundle, *, resume=False):
    """What `emo extract` does around run_extraction (or ray_extract): load, check the folder, run."""
    from emocli.bundle import verify_bundle
    from emocli.corpus.layouts import load_corpus
    from emocli.runners.extract import check_out_dir, settings_for

    items = load_corpus(corpus, None)
    opts = Options(keep_frames=True)
    check_out_dir(out, settings_for(corpus, None, None, bundle, verify_bundle(bundle), opts), resume=resume)
    return items, fn(items, root=corpus, out=out, bundle=bundle, options=opts)


@pytest.mark.slow
def test_ray_extract_writes_what_local_extract_writes(ray_local, tiny_bundle, corpus, tmp_path):
    from emocli.runners.extract import ITEMS, load_extracted, run_extraction
    from emocli.runners.ray import ray_extract

    items, want = _extract(run_extraction, corpus, tmp_path / "local", tiny_bundle)
    _, got = _extract(ray_extract, corpus, tmp_path / "ray", tiny_bundle)
    assert got == want  # the same summary, failures in the same order
    assert want["items"] == len(items) == 5 and want["done"] == 4 and want["failed"] == 1
    assert (tmp_path / "ray" / "index.csv").read_text() == (tmp_path / "local" / "index.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "ray" / ITEMS).iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / ITEMS).iterdir())
    w = {d["id"]: d for d in load_extracted(tmp_path / "local")}
    g = {d["id"]: d for d in load_extracted(tmp_path / "ray")}
    assert g.keys() == w.keys() and len(g) == 4
    for iid in w:
        assert g[iid].keys() == w[iid].keys()
        for name, a in w[iid].items():
            b = g[iid][name]
            if isinstance(a, str) or a.dtype.kind in "US":
                assert np.array_equal(a, b), (iid, name)
            else:
                assert a.shape == b.shape and a.dtype == b.dtype, (iid, name)
                assert np.allclose(a, b, atol=1e-5), (iid, name)
    # resumable the same way: nothing left to do, so no Ray work at all
    _, again = _extract(ray_extract, corpus, tmp_path / "ray", tiny_bundle, resume=True)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 5, 0)


def test_bulk_starts_its_worker_pool_only_for_a_file(monkeypatch, tiny_bundle, tmp_path):
    """Workers are spawned at the first file: a run of inputs that are all errors (or all live
    streams) never starts them, and a file among them does."""
    from conftest import make_clip
    from emocli.runners import pool as bulk
    from emocli.pipeline.core import Pipeline

    started = []
    real = bulk.process_pool

    def counting_pool(*args, **kwargs):
        started.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "process_pool", counting_pool)
    pipe = Pipeline(tiny_bundle, Options())
    errors = [("x", None, "x: no such file"), ("y", None, "y: no such file")]
    assert [r.status for r in bulk.run_bulk(pipe, iter(errors), workers=2)] == ["error", "error"]
    assert started == []
    clip = make_clip(tmp_path / "a.wav", video=False, seconds=1.0)
    got = list(bulk.run_bulk(pipe, iter([errors[0], (str(clip), clip, None)]), workers=2))
    assert [r.status for r in got] == ["error", "ok"] and len(started) == 1
