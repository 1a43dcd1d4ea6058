"""Shared fixtures: generated media (ffmpeg lavfi sources) and tiny model bundles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Set before numpy is imported (OpenBLAS reads it when it loads); the emo processes tests start
# inherit it. The tests' matrix products are small: a second BLAS thread only spins, and on a busy
# machine made the speech encoder ~20x slower (0.6 s a clip instead of 0.03 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# remembered file hashes (files.cached_sha256) go to a folder of this run, not the user's ~/.cache
os.environ.setdefault("EMO_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="emo-test-cache-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs about one worker per core (pytest_xdist_auto_num_workers): each worker's
    # TensorFlow then gets one thread per pool, instead of every worker's pools spinning on every core.
    for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DATA = REPO / "tests" / "data"  # reference files the tests compare with
SHARED = REPO.parent / "shared"


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, plus one. The real-time stream tests wait on the clock by
    design (seconds of idle wall time each); a spare worker fills those seconds with other tests.
    On 2 cores the suite took 271 s with 2 workers and 268 s with 3 (2026-12-07; 69 s with 3 on
    2026-11-30, before the tests that train face networks): those keep both cores busy, so the
    spare worker no longer gains much, and costs nothing."""
    return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


@pytest.fixture(autouse=True)
def keras_eager(request):
    """Keras runs each test's training and scoring steps eagerly. The tests train on a few dozen
    faces for an epoch or two, where tracing the steps into graphs (1-5 s per command) cost more than
    the training: the distillation test took 16 s in graph mode and 8 s eagerly. Tests marked
    ``graph`` keep graph mode, the way `emo` runs (the shipped recipe's test does), and so do the
    `emo` processes tests start."""
    if request.node.get_closest_marker("graph"):
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """An xdist worker ends at once when its session is over (its results were sent to the
    controller in pytest_sessionfinish): its interpreter's shutdown with TensorFlow loaded took
    about 3 s after the training tests, with every other worker done and the run waiting on it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # os._exit skips joblib's own shutdown: the worker processes scikit-learn started (loky's) would
        # idle on for 5 minutes after the run
        loky = sys.modules.get("joblib.externals.loky.reusable_executor")
        if getattr(loky, "_executor", None) is not None:
            loky._executor.shutdown(wait=True, kill_workers=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def ffmpeg(*args: str) -> None:
    from emocli.media.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *, seconds: float = 2.0, size: str = "320x240", rate: int = 25,
              audio: bool = True, video: bool = True, freq: int = 440, vcodec: str = "mpeg4") -> Path:
    """A generated clip: ffmpeg's testsrc2 pattern and/or a sine tone."""
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=16000:duration={seconds}"]
    if video:
        args += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "pcm_s16le" if path.suffix in (".avi", ".wav", ".mkv") else "aac"]
    ffmpeg(*args, str(path))
    return path


def write_wav(path: Path, x: np.ndarray, sr: int = 16000) -> Path:
    """16-bit mono WAV of a float signal in [-1, 1] (clipped)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.avi")


@pytest.fixture(scope="session")
def example_clip() -> Path:
    return EXAMPLES / "1001_DFA_HAP_XX.avi"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def build_tiny_bundle(directory: Path, *, face: bool = True, voice: bool = True, seed: int = 0) -> Path:
    """A bundle with a 2-block face net (random weights) and an SVM fitted on random features."""
    import keras

    from emocli.bundle import write_manifest
    from emocli.fusion import FusionModel
    from emocli.labels import LABELS

    directory.mkdir(parents=True, exist_ok=True)
    if face:
        from emocli.face.model import FaceModel
        from emocli.face.networks import build_emo_cnn

        keras.utils.set_random_seed(seed)
        fm = FaceModel()
        fm.network_ = build_emo_cnn(width=4)
        fm.save(directory)
    if voice:
        tiny_voice_model().save(directory)
    FusionModel("equal").fit().save(directory)
    write_manifest(directory, labels=list(LABELS))
    return directory


def tiny_voice_model(seed: int = 0):
    """A VoiceModel fitted on random 'thesis68' features of 3 speakers."""
    from emocli.voice.model import Selection, VoiceModel
    from emocli.labels import LABELS

    r = np.random.default_rng(seed)
    n = 7 * 6
    x = r.normal(size=(n, 68)).astype(np.float32)
    y = np.array([LABELS[i % 7] for i in range(n)])
    x[np.arange(n), np.arange(n) % 7] += 3.0  # make the classes separable
    groups = np.array([f"s{i % 3}" for i in range(n)])
    return VoiceModel(feature_set="thesis68", selection=Selection(C_grid=(1.0,), gamma_grid=(1.0,), n_repeats=1,
                                                               n_folds=3)).fit(x, y, groups)


def build_once(name: str, tmp_path_factory, build) -> Path:
    """``build(directory)`` once per test run, even with pytest-xdist's worker processes.

    Without xdist this is ``build(tmp_path_factory.mktemp(name))``. Under xdist every worker is a
    process of its own with its session fixtures, so each would build the artefact again (seconds
    of CPU each); instead the first worker to get here builds it in the run's shared temporary
    folder (the parent of each worker's) under a file lock, and the others wait and reuse it. The
    artefact is read-only for tests: one that changes it works on a copy.
    """
    import fcntl
    import shutil

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    done = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.is_dir():
            partial = shared / f".{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            build(partial)
            partial.rename(done)  # whole or absent, should a worker die mid-build
    return done


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return build_once("tiny_bundle", tmp_path_factory, build_tiny_bundle)


@pytest.fixture(scope="session")
def face_only_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """``build_tiny_bundle(..., voice=False)``: tiny_bundle without its voice model.

    Copied rather than rebuilt (the face network, same seed, is the same one; building and
    exporting it again costs seconds), with a fresh manifest as a new bundle would have.
    """
    import shutil

    from emocli.bundle import write_manifest
    from emocli.labels import LABELS

    directory = tmp_path_factory.mktemp("face_bundle")
    shutil.copytree(tiny_bundle, directory, dirs_exist_ok=True)
    for name in ("voice.skops", "voice.npz", "voice.json", "manifest.json"):
        (directory / name).unlink(missing_ok=True)
    write_manifest(directory, labels=list(LABELS))
    return directory


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path_factory, monkeypatch):
    """Each test gets a temporary folder of its own as the system's (``tempfile`` here, ``TMPDIR``
    for the processes it starts), so tests that check what emo leaves in the temporary folder
    (``emo-stdin-*`` spools) see only their own files, also with xdist workers running beside them."""
    import tempfile

    d = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


FOLDERS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # FER2013's names


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A tiny FER2013-layout folder: 8 grey 48x48 faces per class, one bright band per class (learnable)."""
    import cv2

    from emocli.labels import LABELS

    root = tmp_path_factory.mktemp("fer")
    rng = np.random.default_rng(0)
    for i in range(len(LABELS)):
        d = root / "train" / FOLDERS[i]
        d.mkdir(parents=True)
        for k in range(8):
            img = rng.integers(0, 60, (48, 48), dtype=np.uint8)
            img[6 * i:6 * i + 6] = 250  # one bright band per class: learnable
            cv2.imwrite(str(d / f"{k}.png"), img)
    return root / "train"


def colour_corpora(root: Path, rng, sizes: dict[str, int]) -> Path:
    """Folder-per-class colour faces (112 px, one bright band per class: learnable) under ``root``, e.g.
    ``{"affectnet/train": 14, "sfew/Train": 8}``: the layout of ../shared/data's colour corpora."""
    import cv2

    for sub, n in sizes.items():
        for i, folder in enumerate(FOLDERS):
            d = root / sub / folder
            d.mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 80, (112, 112, 3), dtype=np.uint8)
                img[14 * i:14 * i + 14] = (250, 200, 150)
                cv2.imwrite(str(d / f"{k}.png"), img)
    return root
