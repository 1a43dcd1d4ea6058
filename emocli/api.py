"""emo from Python: :func:`load` a bundle once, then :meth:`Analyzer.predict` files, images or arrays.

    >>> import emocli
    >>> result = emocli.predict("examples/1001_DFA_HAP_XX.avi")
    >>> result.label, round(result.scores["happy"], 2)
    ('happy', 0.59)
    >>> model = emocli.load(window=1.0)           # models loaded once, for many calls
    >>> [s["label"] for s in model.predict("examples/1001_DFA_HAP_XX.avi").segments]
    ['disgust', 'fear', 'happy']

A result is the :class:`~emocli.pipeline.options.Result` the command line prints (``to_json()``
gives the same dictionary as ``emo predict --json``); ``frames_table()`` lists each scored face
frame (a pandas DataFrame with ``to_pandas()``). A failure raises the :mod:`emocli.errors`
exception the command line would report in one line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from emocli import errors
from emocli.media.ffmpeg import SAMPLE_RATE
from emocli.pipeline.core import Pipeline
from emocli.pipeline.options import Options, Result


class Analyzer:
    """A loaded bundle and its options: call :meth:`predict` as often as needed.

    ``bundle``: a bundle folder (None: the shipped one). ``options``: any field of
    :class:`~emocli.pipeline.options.Options` (``fps``, ``window``, ``faces="all"``, ``detector`` ...);
    ``frames`` defaults to True here, so that :meth:`Result.frames_table` has rows.
    """

    def __init__(self, bundle: str | Path | None = None, **options: Any):
        options.setdefault("frames", True)
        try:
            self.options = Options(**options)
        except TypeError as exc:
            raise errors.ParameterError(f"{exc}; the options are the fields of emocli.Options") from None
        self.pipeline = Pipeline(None if bundle is None else Path(bundle), self.options)

    def predict(self, source: str | Path | np.ndarray, *, sr: int | None = None, name: str | None = None) -> Result:
        """Score one input.

        Parameters
        ----------
        source : a path (video, image or audio file), an image array uint8 (H, W, 3) RGB or (H, W)
            grey, or an audio array float (n,) in [-1, 1] sampled at ``sr`` Hz.
        sr : the sample rate of an audio array.
        name : what the result's ``file`` says (default: the path, or "<array>").

        Raises
        ------
        EmoError
            The kind the command line reports (``MediaError``, ``NoFaceError`` ...) when the input
            cannot be scored.
        """
        if isinstance(source, np.ndarray):
            with tempfile.TemporaryDirectory(prefix="emo-array-") as tmp:
                path = _array_file(source, Path(tmp), sr=sr)
                res = self.pipeline.run(path, display_name=name or "<array>")
        else:
            res = self.pipeline.run(Path(source), display_name=name)
        if res.status != "ok":
            raise getattr(errors, res.error_type or "", errors.EmoError)(res.error)
        return res


def load(bundle: str | Path | None = None, **options: Any) -> Analyzer:
    """Load a bundle (None: the shipped one) with ``options`` (see :class:`Analyzer`)."""
    return Analyzer(bundle, **options)


def predict(source: str | Path | np.ndarray, *, bundle: str | Path | None = None, sr: int | None = None,
            **options: Any) -> Result:
    """Score one input with a bundle loaded for this call (for many inputs, :func:`load` once)."""
    return Analyzer(bundle, **options).predict(source, sr=sr)


def _array_file(x: np.ndarray, folder: Path, *, sr: int | None) -> Path:
    """An image or audio array written losslessly to a file the pipeline reads (PNG, 32-bit float WAV)."""
    import cv2

    if x.ndim == 1:
        if sr is None:
            raise errors.ParameterError("an audio array needs its sample rate: predict(audio, sr=16000)")
        from scipy.io import wavfile

        path = folder / "audio.wav"
        wavfile.write(path, int(sr), np.asarray(x, np.float32))  # 32-bit float WAV: read back without loss
        return path
    if x.ndim in (2, 3) and (x.ndim == 2 or x.shape[2] in (1, 3)) and x.dtype == np.uint8:
        path = folder / "image.png"
        img = x if x.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2BGR) if x.shape[2] == 3 else x
        if not cv2.imwrite(str(path), img):
            raise errors.ParameterError(f"cannot encode an image of shape {x.shape}")
        return path
    raise errors.ParameterError(f"an array input is an image uint8 (H, W, 3) RGB or (H, W), or audio float (n,); "
                                f"got {x.dtype} {x.shape}")


__all__ = ["Analyzer", "load", "predict", "SAMPLE_RATE"]
