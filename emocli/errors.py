"""One small exception tree. Messages say what failed, on which file, and how to fix it.

Only :mod:`emocli.cli.app` turns these into exit codes (1 for any :class:`EmoError`).
"""


class EmoError(Exception):
    """Root of every expected, user-facing failure."""


class ParameterError(EmoError, ValueError):
    """A function was given an argument it cannot use: a shape, sample rate, name or range out of
    bounds (librosa's ``ParameterError``). A ValueError, so callers that catch one keep working."""


class MediaError(EmoError, OSError):
    """A file could not be read or decoded (missing, empty, corrupt, unsupported)."""


class NoFaceError(EmoError, ValueError):
    """No usable face was found in an image or video."""


class NoAudioError(EmoError, ValueError):
    """An input has no audio track, or too little audio to analyse."""


class OutputError(EmoError, OSError):
    """An output path cannot be written, or writing there would destroy an input or another output."""


class ModelError(EmoError, ValueError):
    """A model bundle is missing, tampered with, or incompatible."""


class DatasetError(EmoError, ValueError):
    """A corpus layout or label could not be understood."""


class NotFittedError(EmoError, ValueError, AttributeError):
    """A model was used before ``fit``."""


class EmoWarning(UserWarning):
    """Something works but deserves a look; the command line shows it as one yellow line on stderr."""


class VersionWarning(EmoWarning):
    """A model bundle was written by other versions of the libraries its files depend on."""
