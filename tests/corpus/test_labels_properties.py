"""Property tests: every corpus naming maps to the right label, by name, whatever the other fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emocli.corpus.layouts import Item, parse_name
from emocli.media.ffmpeg import AUDIO_EXTS, VIDEO_EXTS
from emocli.errors import DatasetError
from emocli.labels import _SYNONYMS, DROPPED, LABELS, normalise_label

# Local settings, not a global profile: other test modules keep their own.
SETTINGS = settings(max_examples=150, deadline=None)

AUDIO = sorted(AUDIO_EXTS)
MEDIA = sorted(AUDIO_EXTS | VIDEO_EXTS)


def two_digits(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


def random_case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(text, flips)))


# ------------------------------------------------------------------------------------------------
# Each naming scheme

RAVDESS = {"01": "neutral", "02": None, "03": "happy", "04": "sad", "05": "anger", "06": "fear", "07": "disgust",
           "08": "surprise"}


@SETTINGS
@given(modality=st.sampled_from(["01", "02", "03"]), vocal=st.sampled_from(["01", "02"]),
       emotion=st.sampled_from(sorted(RAVDESS)), intensity=two_digits(1, 2), statement=two_digits(1, 2),
       repetition=two_digits(1, 2), actor=two_digits(1, 24), ext=st.sampled_from(MEDIA))
def test_ravdess_codes_round_trip(modality, vocal, emotion, intensity, statement, repetition, actor, ext):
    path = Path(f"Actor_{actor}/{modality}-{vocal}-{emotion}-{intensity}-{statement}-{repetition}-{actor}{ext}")
    item = parse_name(path, "ravdess")
    if RAVDESS[emotion] is None:
        assert item is None
    else:
        assert item == Item(path, RAVDESS[emotion], f"ravdess_{actor}")


@SETTINGS
@given(emotion=st.integers(0, 99).filter(lambda n: not 1 <= n <= 8).map(lambda n: f"{n:02d}"),
       actor=two_digits(1, 24))
def test_ravdess_unknown_emotion_codes_name_the_file(emotion, actor):
    name = f"03-01-{emotion}-01-01-01-{actor}.wav"
    with pytest.raises(DatasetError, match=name):
        parse_name(Path(name), "ravdess")


CREMAD = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMAD_SENTENCES = ["IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"]


@SETTINGS
@given(actor=st.integers(1001, 1091), sentence=st.sampled_from(CREMAD_SENTENCES),
       emotion=st.sampled_from(sorted(CREMAD)), level=st.sampled_from(["LO", "MD", "HI", "XX"]),
       folder=st.sampled_from(["VideoFlash", "AudioWAV", "AudioMP3", "."]), ext=st.sampled_from(MEDIA))
def test_cremad_codes_round_trip(actor, sentence, emotion, level, folder, ext):
    path = Path(folder) / f"{actor}_{sentence}_{emotion}_{level}{ext}"
    assert parse_name(path, "cremad") == Item(path, CREMAD[emotion], f"cremad_{actor}")


@SETTINGS
@given(code=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=4).filter(lambda c: c not in CREMAD))
def test_cremad_unknown_codes_name_the_file(code):
    name = f"1001_DFA_{code}_XX.flv"
    with pytest.raises(DatasetError, match=name):
        parse_name(Path(name), "cremad")


TESS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
        "sad": "sad", "ps": "surprise", "pleasant_surprise": "surprise"}
WORDS = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@SETTINGS
@given(speaker=st.sampled_from(["OAF", "YAF"]), word=WORDS, emotion=st.sampled_from(sorted(TESS)),
       in_folder=st.booleans(), ext=st.sampled_from(AUDIO))
def test_tess_names_round_trip(speaker, word, emotion, in_folder, ext):
    name = f"{speaker}_{word}_{emotion}{ext}"
    path = Path(f"{speaker}_{emotion}") / name if in_folder else Path(name)
    assert parse_name(path, "tess") == Item(path, TESS[emotion], f"tess_{speaker}")


SAVEE = {"a": "anger", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}


@SETTINGS
@given(speaker=st.sampled_from(["DC", "JE", "JK", "KL"]), code=st.sampled_from(sorted(SAVEE)),
       number=st.integers(1, 30), flat=st.booleans(), ext=st.sampled_from([".wav", ".avi"]))
def test_savee_codes_round_trip(speaker, code, number, flat, ext):
    path = Path(f"ALL/{speaker}_{code}{number:02d}{ext}") if flat else Path(f"{speaker}/{code}{number:02d}{ext}")
    assert parse_name(path, "savee") == Item(path, SAVEE[code], f"savee_{speaker}")


EMODB = {"W": "anger", "L": None, "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}


@SETTINGS
@given(speaker=st.sampled_from(["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]),
       text=st.sampled_from(["a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"]),
       emotion=st.sampled_from(sorted(EMODB)), version=st.sampled_from("abcdef"),
       ext=st.sampled_from([".wav", ".flac"]))
def test_emodb_letters_round_trip(speaker, text, emotion, version, ext):
    path = Path(f"{speaker}{text}{emotion}{version}{ext}")
    item = parse_name(path, "emodb")
    if EMODB[emotion] is None:
        assert item is None
    else:
        assert item == Item(path, EMODB[emotion], f"emodb_{speaker}")


# AFEW, SFEW, FER2013 and JAFFE-style folders are labelled by folder name through normalise_label.
FOLDER_NAMES = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happy", "Neutral": "neutral",
                "Sad": "sad", "Surprise": "surprise", "angry": "anger", "surprised": "surprise", "fearful": "fear",
                "happiness": "happy", "sadness": "sad", "pleasant surprise": "surprise"}


@SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(FOLDER_NAMES)))
def test_folder_names_round_trip_in_any_case(data, name):
    assert normalise_label(data.draw(random_case(name)), source="f") == FOLDER_NAMES[name]


# ------------------------------------------------------------------------------------------------
# normalise_label itself


@SETTINGS
@given(data=st.data(), key=st.sampled_from(sorted(_SYNONYMS) + sorted(DROPPED)))
def test_normalise_label_is_case_insensitive(data, key):
    variant = data.draw(random_case(key))
    padded = data.draw(st.sampled_from(["", " ", "\t"])) + variant + data.draw(st.sampled_from(["", " ", "\n"]))
    assert normalise_label(padded) == normalise_label(key)


@pytest.mark.parametrize("label", LABELS)
def test_normalise_label_is_identity_on_labels(label):
    assert normalise_label(label) == label
    assert normalise_label(normalise_label(label.upper())) == label


@SETTINGS
@given(key=st.sampled_from(sorted(_SYNONYMS)))
def test_normalise_label_is_idempotent(key):
    once = normalise_label(key)
    assert once in LABELS and normalise_label(once) == once


@settings(max_examples=300, deadline=None)
@given(junk=st.text(max_size=20) | st.sampled_from(sorted(_SYNONYMS)).map(lambda s: s + "x"))
def test_junk_maps_to_a_label_none_or_a_dataset_error(junk):
    try:
        result = normalise_label(junk, source="junk.csv")
    except DatasetError as err:
        assert "junk.csv" in str(err)
    else:
        assert result is None or result in LABELS


@settings(max_examples=200, deadline=None)
@given(stem=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\\\x00"), min_size=1,
                    max_size=24), layout=st.sampled_from(["ravdess", "cremad", "tess", "savee", "emodb"]),
       ext=st.sampled_from(MEDIA))
def test_junk_file_names_give_an_item_none_or_a_dataset_error(stem, layout, ext):
    path = Path("corpus") / f"{stem}{ext}"
    try:
        item = parse_name(path, layout)
    except DatasetError:
        return
    assert item is None or (item.label in LABELS and item.path == path)
