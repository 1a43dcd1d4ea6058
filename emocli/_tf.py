"""Import TensorFlow/Keras once, quietly.

TensorFlow's C++ runtime writes start-up lines ("All log messages before
absl::InitializeLog()...", the oneDNN notice) straight to file descriptor 2 before any
logging setting applies, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them. emo's stderr is for
people, so the descriptor points at /dev/null for the duration of the import only.
"""

from __future__ import annotations

import contextlib
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


def import_keras():
    """Return the ``keras`` module, importing TensorFlow first with its banner suppressed."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_fd2():
        import tensorflow  # noqa: F401
        import keras
    return keras
