import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from emocli.errors import ParameterError
from emocli.labels import LABELS
from emocli.pipeline.core import Pipeline
from emocli.pipeline.options import Options


@pytest.fixture(scope="module")
def face_pipe(face_only_bundle):
    return Pipeline(face_only_bundle, Options(fps=5))


def _is_distribution(d):
    return list(d) == list(LABELS) and sum(d.values()) == pytest.approx(1.0, abs=1e-5)


def test_example_clip_face_scores(face_pipe, example_clip):
    res = face_pipe.run(example_clip)
    assert res.status == "ok", res.error
    assert _is_distribution(res.scores) and _is_distribution(res.face_scores)
    assert res.voice_scores is None  # the bundle has no voice model
    assert res.modalities == ["face"]
    # ~2 s at 5 fps, a face in every frame
    assert 9 <= res.frames_seen <= 12 and res.frames_used == res.frames_seen
    assert res.label in LABELS
    json.dumps(res.to_json(), allow_nan=False)


def test_batch_size_does_not_change_scores(face_only_bundle, example_clip):
    a = Pipeline(face_only_bundle, Options(batch_size=1)).run(example_clip)
    b = Pipeline(face_only_bundle, Options(batch_size=64)).run(example_clip)
    assert np.allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-5)


def test_no_face_and_no_voice_model_is_an_error(face_pipe, tmp_path):
    clip = make_clip(tmp_path / "pattern.avi", seconds=1.0)
    res = face_pipe.run(clip)
    assert res.status == "error" and "no face" in res.error and "pattern.avi" in res.error
    assert res.scores is None


def test_keep_frames_returns_per_frame_arrays(face_only_bundle, example_clip):
    res = Pipeline(face_only_bundle, Options(keep_frames=True)).run(example_clip)
    assert res.frame_scores.shape == (res.frames_used, 7)
    assert res.face_features.shape == (res.frames_used, 256)
    assert np.all(np.diff(res.frame_times) > 0)


def test_still_image_face_only(face_pipe, example_clip, tmp_path):
    import cv2

    from emocli.media import ffmpeg as media

    _, frames = next(media.iter_frames(example_clip, fps=5))
    img = tmp_path / "still.png"
    cv2.imwrite(str(img), frames[0][:, :, ::-1])
    res = face_pipe.run(img)
    assert res.status == "ok" and res.frames_used == 1 and res.modalities == ["face"]


def test_haar_detector_option(face_only_bundle, example_clip):
    res = Pipeline(face_only_bundle, Options(detector="haar")).run(example_clip)
    assert res.status == "ok" and res.frames_used >= 8


def _views_bundle(face_only_bundle, directory, **views):
    """A copy of the bundle whose face.json chooses other test-time views (as select_tta writes them)."""
    import shutil

    from emocli.bundle import read_manifest_unchecked, write_manifest

    shutil.copytree(face_only_bundle, directory)
    meta = json.loads((directory / "face.json").read_text())
    meta["preprocessing"].update(views)
    (directory / "face.json").write_text(json.dumps(meta))
    write_manifest(directory, labels=read_manifest_unchecked(directory)["labels"])
    return directory


def test_test_time_views(face_only_bundle, example_clip, tmp_path):
    import dataclasses

    import cv2

    from emocli.media import ffmpeg as media
    from emocli.face.model import FaceModel

    model = FaceModel.load(face_only_bundle)  # its own copy, in the Keras form, to check views against the network
    # Sharper scores: the random network's are all near 1/7, where a wrong view (averaged with 11 right ones)
    # would move them by less than the tolerance; x100 logits make it move them by ~1e-3.
    scores_layer = model.network_.get_layer("scores")
    kernel, bias = scores_layer.get_weights()
    scores_layer.set_weights([kernel * 100, bias])
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    net = lambda a: np.asarray(model.network_(a, training=False))  # noqa: E731
    mean = lambda views: np.mean([net(v) for v in views], axis=0)  # noqa: E731
    np.testing.assert_allclose(model.score_inputs(x, views="none"), net(x), atol=1e-5)
    np.testing.assert_allclose(model.score_inputs(x, views="mirror"), mean([x, x[:, :, ::-1]]), atol=1e-5)
    with pytest.raises(ParameterError, match="views"):
        model.score_inputs(x, views="sideways")

    # the bundle's views: the crop, a centre zoom of 90 %, four shifts by 10 % with reflected borders, and mirrors
    m, d = 2, 5  # round(48 * 0.1 / 2), round(48 * 0.1)
    zoom = np.stack([cv2.resize(c, (48, 48), interpolation=cv2.INTER_LINEAR) for c in x[:, m:-m, m:-m]])
    zoom = zoom.reshape(x.shape)
    down = np.concatenate([x[:, d:0:-1], x[:, :-d]], axis=1)  # content moved down by d rows
    up = np.concatenate([x[:, d:], x[:, -2:-d - 2:-1]], axis=1)
    right = np.concatenate([x[:, :, d:0:-1], x[:, :, :-d]], axis=2)
    left = np.concatenate([x[:, :, d:], x[:, :, -2:-d - 2:-1]], axis=2)
    model.preprocessing = dataclasses.replace(model.preprocessing, flip_tta=True, tta_zoom=0.1)
    np.testing.assert_allclose(model.score_inputs(x), mean([x, zoom, x[:, :, ::-1], zoom[:, :, ::-1]]), atol=1e-5)
    shifted = dataclasses.replace(model.preprocessing, tta_shift=0.1)
    model.preprocessing = shifted
    views = [x, zoom, down, up, right, left]
    np.testing.assert_allclose(model.score_inputs(x, batch_size=2), mean(views + [v[:, :, ::-1] for v in views]),
                               atol=1e-5)
    assert type(shifted).from_dict(shifted.to_dict()) == shifted
    # "spread" (video frames): face i gets unmirrored view (offset + i) mod 6 and its mirror, across batches,
    # so six frames of one still face average exactly the twelve views a still image gets
    six = np.repeat(x[:1], 6, axis=0)
    spread = model.score_inputs(six, views="spread", view_offset=3, batch_size=4)
    for i in range(6):
        v = views[(3 + i) % 6][:1]
        np.testing.assert_allclose(spread[i], mean([v, v[:, :, ::-1]])[0], atol=1e-5)
    f_spread, _ = model.score_inputs(six, views="spread", features=True)
    f_bundle, _ = model.score_inputs(x[:1], features=True)
    np.testing.assert_allclose(f_spread.mean(0), f_bundle[0], atol=1e-4)

    def face(p, path):
        res = p.run(path)
        assert res.status == "ok", res.error
        return np.array(list(res.face_scores.values()))

    # a bundle whose chosen views include a zoomed crop
    bundle = _views_bundle(face_only_bundle, tmp_path / "zoom", flip_tta=True, tta_zoom=0.1)
    pipes = {tta: Pipeline(bundle, Options(tta=tta)) for tta in ("auto", "bundle", "spread", "mirror", "none")}
    # video frames: auto = the bundle's views spread over the frames (crop + mirror, crop zoomed + mirror, ...);
    # a still image: auto = the bundle's views
    np.testing.assert_allclose(face(pipes["auto"], example_clip), face(pipes["spread"], example_clip), atol=1e-6)
    for other in ("mirror", "bundle"):
        assert not np.allclose(face(pipes["auto"], example_clip), face(pipes[other], example_clip), rtol=0, atol=1e-6)
    _, frames = next(media.iter_frames(example_clip, fps=5))
    img = tmp_path / "still.png"
    cv2.imwrite(str(img), frames[0][:, :, ::-1])
    np.testing.assert_allclose(face(pipes["auto"], img), face(pipes["bundle"], img), atol=1e-6)
    assert not np.allclose(face(pipes["none"], img), face(pipes["bundle"], img), rtol=0, atol=1e-6)


def test_runtime_face_network_matches_keras_and_keeps_tensorflow_out(face_only_bundle, example_clip, tmp_path):
    import subprocess
    import sys

    from emocli.errors import ModelError
    from emocli.face.model import FaceModel
    from emocli.face.lite import LiteNetwork

    keras_form = FaceModel.load(face_only_bundle)
    lite_form = FaceModel.load(face_only_bundle, runtime=True)
    assert isinstance(lite_form.network_, LiteNetwork)
    x = np.random.default_rng(2).uniform(0, 255, (9, 48, 48, 1)).astype(np.float32)
    for views in ("none", "bundle"):
        fk, sk = keras_form.score_inputs(x, views=views, features=True, batch_size=4)
        fl, sl = lite_form.score_inputs(x, views=views, features=True, batch_size=4)
        np.testing.assert_allclose(sl, sk, atol=1e-5)
        np.testing.assert_allclose(fl, fk, atol=1e-4)
    with pytest.raises(ModelError, match="runtime=False"):
        lite_form.save(tmp_path / "again")
    # `emo predict` on a CPU runs BlazeFace and the face network on LiteRT: no TensorFlow
    code = ("import sys; from emocli.pipeline.core import Pipeline; "
            f"r = Pipeline({str(face_only_bundle)!r}).run({str(example_clip)!r}); "
            "print(r.status, 'tensorflow' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "EMO_NO_GPU": "1"}).stdout.split()
    assert out == ["ok", "False", "False"]


def test_damaged_runtime_face_network_is_refused(face_only_bundle, tmp_path):
    import shutil

    from emocli.errors import ModelError
    from emocli.face.model import FaceModel

    bundle = tmp_path / "b"
    shutil.copytree(face_only_bundle, bundle)
    (bundle / "face.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match=r"face\.tflite.*restore the bundle"):
        FaceModel.load(bundle, runtime=True)
    # emo-cnn is stored once: its Keras form is rebuilt from face.tflite, so it is refused too
    assert not (bundle / "face.keras").exists()
    with pytest.raises(ModelError, match=r"face\.tflite, face_bn\.npz: cannot rebuild .* restore the bundle"):
        FaceModel.load(bundle)


def test_run_and_prepare_then_complete_give_the_same_result(tiny_bundle, example_clip):
    """One input in one process (run) and in bulk mode's two stages (prepare in a worker, complete
    in the main process) share their decoding and their finish: the same scores, segments, notes."""
    pipe = Pipeline(tiny_bundle, Options(fps=5, window=1.0))
    a, b = pipe.run(example_clip), pipe.complete(pipe.prepare(example_clip))
    assert a.status == b.status == "ok", (a.error, b.error)
    assert (a.label, a.frames_seen, a.frames_used, a.notes) == (b.label, b.frames_seen, b.frames_used, b.notes)
    np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-6)
    assert [(s["start"], s["end"], s["label"]) for s in a.segments] == [(s["start"], s["end"], s["label"])
                                                                        for s in b.segments]


def test_prepared_faces_wait_in_the_spool_and_score_the_same(tiny_bundle, example_clip, tmp_path, monkeypatch):
    """A worker's faces beyond SPOOL_AFTER_BYTES wait in files under the run's spool, not in memory
    (--workers memory does not grow with a clip's length); complete() reads each back, deletes it,
    and gives the result the faces kept in memory give."""
    from emocli.pipeline import faces as pipeline_faces

    pipe = Pipeline(tiny_bundle, Options(fps=5, window=1.0))
    kept = pipe.prepare(example_clip, spool=tmp_path)  # a 2-s clip: its faces fit in memory
    assert kept.faces.chunks and not any(isinstance(c, Path) for c in kept.faces.chunks)
    assert not any(tmp_path.iterdir())
    a = pipe.complete(kept)
    monkeypatch.setattr(pipeline_faces, "SPOOL_AFTER_BYTES", 0)  # every chunk goes to the spool
    prep = pipe.prepare(example_clip, spool=tmp_path)
    files = set(tmp_path.iterdir())
    assert files and set(prep.faces.chunks) == files  # every chunk is a file there
    b = pipe.complete(prep)
    assert not any(tmp_path.iterdir())  # each deleted once read
    assert a.status == b.status == "ok" and (a.label, a.frames_used, a.notes) == (b.label, b.frames_used, b.notes)
    np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-6)
    # an input that fails after faces were spooled leaves no file either
    prep = pipe.prepare(example_clip, spool=tmp_path)
    prep.error, prep.error_type = "decoding stopped", "MediaError"
    assert pipe.complete(prep).status == "error" and not any(tmp_path.iterdir())


def test_window_edges_close_as_a_stream_does():
    """Windows of a clip end where a stream's would: the last one where the media ends, without merging
    a short last window into the one before (a stream cannot look ahead)."""
    from emocli.pipeline.windows import window_edges

    assert window_edges(5.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert window_edges(4.0, 2.0) == [(0.0, 2.0), (2.0, 4.0)]
    assert window_edges(4.3, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 4.3)]
    assert window_edges(0.5, 2.0) == [(0.0, 0.5)]
    assert window_edges(1e-6, 2.0) == [(0.0, 1e-6)]  # a still image: one window with its face
    assert window_edges(0.0, 2.0) == []


def test_a_file_and_the_same_bytes_as_a_stream_give_the_same_result(tiny_bundle, tmp_path):
    """One window closer: a 20-s clip's voice is the mean of its 10-s blocks whether it is read as a
    file or as a stream, and its --window segments are the same."""
    from conftest import EXAMPLES, ffmpeg

    from emocli.media.live import LiveSource

    clip = tmp_path / "loop.avi"
    ffmpeg("-stream_loop", "9", "-i", str(EXAMPLES / "1001_DFA_HAP_XX.avi"), "-c", "copy", str(clip))
    pipe = Pipeline(tiny_bundle, Options(window=3.0))
    as_file = pipe.run(clip)
    segments = []
    with clip.open("rb") as fh:
        as_stream = pipe.run_stream(LiveSource("<stdin>", stream=fh), on_segment=segments.append)
    assert as_file.status == as_stream.status == "ok", (as_file.error, as_stream.error)
    assert as_file.label == as_stream.label
    for key in ("scores", "face_scores", "voice_scores"):
        assert getattr(as_file, key) == pytest.approx(getattr(as_stream, key), abs=1e-5)
    voice_notes = [[n for n in r.notes if n.startswith("voice:")] for r in (as_file, as_stream)]
    assert voice_notes[0] == voice_notes[1] == ["voice: the mean of 2 10-s blocks' voice scores"]
    assert [(s["start"], s["end"], s["label"], s["frames_used"]) for s in as_file.segments] == [
        (s["start"], s["end"], s["label"], s["frames_used"]) for s in segments]


def test_options_refuse_choices_the_command_line_would_refuse():
    """Options check their choices from the lists the command line reads (emocli.choices), so the Python API
    refuses what `emo predict` refuses, with the choices named."""
    from emocli.choices import FACE_MODES, POOLINGS, TTA_CHOICES

    for name, good in (("faces", FACE_MODES), ("pooling", POOLINGS), ("tta", TTA_CHOICES), ("detector", ("yunet",))):
        for value in good:
            Options(**{name: value})
        with pytest.raises(ParameterError, match=rf"Options\.{name} must be one of"):
            Options(**{name: "nonesuch"})
