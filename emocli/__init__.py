"""emo: audio-visual emotion recognition from the command line, and from Python.

    import emocli
    result = emocli.predict("clip.avi")        # a Result: label, scores, face_scores, voice_scores ...
    model = emocli.load(window=2.0)            # load once, score many

``import emocli`` itself loads nothing heavy (the command line starts from it): the names below
are imported on first use.
"""

__version__ = "0.1.0"

_API = {"load": "emocli.api", "predict": "emocli.api", "Analyzer": "emocli.api",
        "Options": "emocli.pipeline.options", "Result": "emocli.pipeline.options"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'emocli' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
