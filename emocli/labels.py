"""The seven emotion classes and the names corpora use for them.

Labels are always mapped by *name*, never by position: every saved model stores its
own label list and score columns are aligned by name before they are combined.
"""

from __future__ import annotations

from emocli.errors import DatasetError

LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# One fixed colour per emotion, used by every picture emo draws (the --plot timeline, the --annotate
# panel, the confusion plots, the live view), so that a colour means the same emotion everywhere.
EMOTION_COLOURS: dict[str, str] = {"anger": "#d62728", "disgust": "#6b8e23", "fear": "#9467bd", "happy": "#ffbf00",
                                   "neutral": "#8c8c8c", "sad": "#1f77b4", "surprise": "#17becf"}


def emotion_rgb(label: str) -> tuple[int, int, int]:
    """An emotion's colour (:data:`EMOTION_COLOURS`) as 0-255 RGB; grey for a label outside the seven."""
    h = EMOTION_COLOURS.get(label, "#b0b0b0").lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)

# Synonyms and abbreviations used by AFEW, FER2013, RAVDESS, CREMA-D, TESS, SAVEE, EmoDB, JAFFE.
_SYNONYMS: dict[str, str] = {
    "anger": "anger", "angry": "anger", "ang": "anger", "an": "anger", "a": "anger",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust", "di": "disgust", "d": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "hap": "happy", "ha": "happy", "h": "happy", "joy": "happy",
    "neutral": "neutral", "neu": "neutral", "ne": "neutral", "n": "neutral",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise", "su": "surprise",
    "pleasant surprise": "surprise", "pleasant_surprise": "surprise", "ps": "surprise",
    "pleasant_surprised": "surprise",
}

# Labels some corpora have that are not one of the seven: callers drop these on purpose.
DROPPED: frozenset[str] = frozenset({"calm", "boredom", "bored", "contempt", "none", "other"})


def normalise_label(name: str, *, source: str = "") -> str | None:
    """Map a corpus label to one of :data:`LABELS`.

    Returns ``None`` for labels that are deliberately dropped (calm, boredom, ...).

    Raises
    ------
    DatasetError
        For a label that is neither one of the seven nor a known dropped class.
    """
    key = name.strip().lower().replace("-", " ")
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    if key.replace(" ", "_") in _SYNONYMS:
        return _SYNONYMS[key.replace(" ", "_")]
    if key in DROPPED:
        return None
    where = f" in {source}" if source else ""
    raise DatasetError(
        f"unknown emotion label {name!r}{where}; use one of {', '.join(LABELS)} "
        "(or a known synonym such as angry, fearful, happiness, sadness, surprised)"
    )
