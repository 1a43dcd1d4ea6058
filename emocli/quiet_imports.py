"""Heavy imports, quietly and without what emo does not use.

TensorFlow's C++ runtime writes start-up lines ("All log messages before
absl::InitializeLog()...", the oneDNN notice) straight to file descriptor 2 before any
logging setting applies, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them. emo's stderr is for
people, so the descriptor points at /dev/null for the duration of the import only
(:func:`quiet_fd2`, :func:`import_keras`). :func:`stand_in_modules` puts stand-ins in place of
a library's slow optional imports while it loads (Keras's scikit-learn and matplotlib helpers;
pyAudioAnalysis's matplotlib and scipy.signal, see :mod:`emocli.voice.features`).
:func:`lite_interpreter` opens a ``.tflite`` network (BlazeFace, face.tflite) on LiteRT. :func:`gpu_available`
says whether TensorFlow sees a GPU without importing it where none can be.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys


@contextlib.contextmanager
def quiet_fd2():
    """Point file descriptor 2 at /dev/null for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Keras's top-level package imports its scikit-learn wrappers and plotting helpers, which
# import scikit-learn and matplotlib when they are installed: 1.5 s of a 2-second clip's
# prediction, for features emo never uses. Both sit behind ``try: import ... except
# ImportError`` in Keras, so they are hidden while Keras loads (see import_keras).
_KERAS_OPTIONAL = ("sklearn", "matplotlib")


@contextlib.contextmanager
def stand_in_modules(entries):
    """Put ``entries`` (module name -> stand-in module, or None) into ``sys.modules`` for the block.

    Only names not imported yet are touched; afterwards each is removed again if it still holds
    the stand-in, so later imports get the real module. ``None`` is the import system's "known
    missing" marker: ``import name`` then raises ImportError.
    """
    placed = {name: mod for name, mod in entries.items() if name not in sys.modules}
    sys.modules.update(placed)
    try:
        yield
    finally:
        for name, mod in placed.items():
            if name in sys.modules and sys.modules[name] is mod:
                del sys.modules[name]


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU (Keras then scores faces there, and training uses mixed precision).

    TensorFlow is imported only where an NVIDIA device exists; ``EMO_NO_GPU`` (any value) keeps
    such a machine on the CPU.
    """
    return gpu_status()[0]


def gpu_status() -> tuple[bool, str]:
    """(whether a GPU is used, why or why not), by :func:`gpu_available`'s rule."""
    import glob

    if os.environ.get("EMO_NO_GPU"):
        return False, "EMO_NO_GPU is set: the CPU is used"
    if not glob.glob("/dev/nvidia[0-9]*"):
        return False, "no NVIDIA device (/dev/nvidia*): faces are scored on the CPU with LiteRT"
    import_keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False, "an NVIDIA device exists but TensorFlow sees no GPU (pip install 'emocli[gpu]')"
    return True, f"TensorFlow uses {len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}"


WORKER_PROCESS = False  # set by emocli.runners.pool in its worker processes: one thread each


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads a network may use in this process: one in a bulk worker process (the workers already
    fill the cores), else one per CPU this process may run on."""
    return 1 if WORKER_PROCESS else available_cpus()


def lite_interpreter(model_path, num_threads: int | None = 1):
    """A ``.tflite`` model's interpreter, tensors allocated: LiteRT (``ai_edge_litert``, which keeps
    TensorFlow out of ``predict``) when installed, else TensorFlow's own; LiteRT's XNNPACK notice
    on file descriptor 2 is silenced."""
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import_keras()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings(), quiet_fd2():
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(model_path), num_threads=num_threads)
        it.allocate_tensors()
    return it


def import_keras():
    """Return the ``keras`` module, importing TensorFlow first with its banner suppressed.

    Keras's scikit-learn wrappers (``keras.wrappers``) and plotting helpers
    (``keras.visualization``) are loaded in their "not installed" form unless scikit-learn
    or matplotlib was imported before: emo uses neither, and this saves over a second of
    start-up. Everything else in scikit-learn and matplotlib imports normally afterwards.
    """
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_fd2(), stand_in_modules(dict.fromkeys(_KERAS_OPTIONAL)):
        importlib.import_module("tensorflow")  # TensorFlow first, inside the quiet block
        import keras
    return keras
