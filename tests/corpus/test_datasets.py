"""Corpus readers, from generated files that follow each corpus's documented naming.

Datasets only read names, so every file here is empty (or a few bytes): no media decoding.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from emocli.corpus.layouts import (
    LAYOUTS,
    Item,
    afew,
    cremad,
    detect_layout,
    emodb,
    image_folder,
    load_corpus,
    manifest,
    parse_name,
    ravdess,
    savee,
    tess,
)
from emocli.errors import DatasetError, EmoError
from emocli.labels import LABELS
from emocli.media.ffmpeg import IMAGE_EXTS
from conftest import REPO

SHARED_DATA = REPO.parent / "shared" / "data"


def touch(root: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        paths.append(p)
    return paths


def labels_of(items: list[Item]) -> dict[str, str]:
    return {it.path.name: it.label for it in items}


def assert_sorted(items: list[Item]) -> None:
    assert [it.path for it in items] == sorted(it.path for it in items)


# ------------------------------------------------------------------------------------------------
# The public API the training code relies on


def test_item_is_a_frozen_dataclass_with_optional_speaker_and_split():
    it = Item(Path("a.jpg"), "happy")
    assert (it.speaker, it.split) == (None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        it.label = "sad"  # type: ignore[misc]
    assert ".jpg" in IMAGE_EXTS and ".png" in IMAGE_EXTS


# ------------------------------------------------------------------------------------------------
# Folder-per-class images


def test_image_folder_class_folders_jaffe_style(tmp_path):
    touch(tmp_path, "happy/b.png", "happy/a.jpg", "Angry/x.tiff", "sadness/s.jpg", "contempt/c.jpg",
          "happy/notes.txt", "happy/.DS_Store", "happy/._a.jpg", ".ipynb_checkpoints/happy.jpg", "README.md")
    items = image_folder(tmp_path)
    assert labels_of(items) == {"a.jpg": "happy", "b.png": "happy", "x.tiff": "anger", "s.jpg": "sad"}
    assert all(it.split is None and it.speaker is None for it in items)
    assert_sorted(items)
    assert detect_layout(tmp_path) == "images"


def test_image_folder_with_split_folders_fer2013_and_sfew(tmp_path):
    fer = tmp_path / "fer"
    touch(fer, "train/angry/1.jpg", "train/surprise/2.jpg", "val/angry/3.jpg", "val/neutral/4.jpg")
    items = image_folder(fer)
    assert [(it.path.name, it.label, it.split) for it in items] == [
        ("1.jpg", "anger", "train"), ("2.jpg", "surprise", "train"),
        ("3.jpg", "anger", "val"), ("4.jpg", "neutral", "val")]
    assert detect_layout(fer) == "images"
    # SFEW: capitalised splits, and an unlabelled Test folder of bare images that is skipped.
    sfew = tmp_path / "sfew"
    touch(sfew, "Train/Angry/a.png", "Val/Disgust/d.png", "Test/t1.png", "Test/t2.png")
    items = image_folder(sfew)
    assert {(it.label, it.split) for it in items} == {("anger", "Train"), ("disgust", "Val")}
    assert detect_layout(sfew) == "images"


def test_image_folder_bad_class_folder_names_it(tmp_path):
    touch(tmp_path, "happy/a.jpg", "Angry2/b.jpg")
    with pytest.raises(DatasetError, match="Angry2"):
        image_folder(tmp_path)
    with pytest.raises(DatasetError, match="Angry2"):
        load_corpus(tmp_path)


def test_image_folder_stray_folder_next_to_splits_is_an_error(tmp_path):
    touch(tmp_path, "train/happy/a.jpg", "extras/happy/b.jpg")
    with pytest.raises(DatasetError, match="extras"):
        image_folder(tmp_path)


def test_image_folder_without_images_or_not_a_folder(tmp_path):
    (tmp_path / "happy").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        image_folder(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        image_folder(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------
# AFEW / EmotiW

AFEW_CLASSES = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happy", "Neutral": "neutral",
                "Sad": "sad", "Surprise": "surprise"}


def make_afew(root: Path, train: str = "Train", val: str = "Val") -> None:
    for i, folder in enumerate(AFEW_CLASSES):
        touch(root, f"{train}/{folder}/{i:06d}.avi", f"{val}/{folder}/{i + 100:06d}.avi")
    touch(root, "Test/000001.avi", "Test/000002.avi", "Train/Angry/info.txt", "Val/list.csv")


@pytest.mark.parametrize("train,val", [("Train", "Val"), ("train", "VAL"), ("TRAIN", "validation")])
def test_afew_labels_and_case_insensitive_splits(tmp_path, train, val):
    make_afew(tmp_path, train, val)
    items = afew(tmp_path)
    assert len(items) == 14
    assert Counter(it.split for it in items) == {"Train": 7, "Val": 7}
    assert Counter(it.label for it in items) == {label: 2 for label in LABELS}
    for it in items:
        assert it.label == AFEW_CLASSES[it.path.parent.name] and it.speaker is None
    assert_sorted(items)
    assert detect_layout(tmp_path) == "afew"
    assert load_corpus(tmp_path) == items


def test_afew_single_split_folder(tmp_path):
    make_afew(tmp_path)
    items = afew(tmp_path / "Train")
    assert len(items) == 7 and {it.split for it in items} == {None}
    assert detect_layout(tmp_path / "Train") == "afew"


def test_afew_bad_emotion_folder_names_it(tmp_path):
    make_afew(tmp_path)
    touch(tmp_path, "Train/Angry2/000999.avi")
    assert detect_layout(tmp_path) == "afew"
    with pytest.raises(DatasetError, match="Angry2"):
        afew(tmp_path)


def test_afew_drops_contempt_and_rejects_unknown_top_folders(tmp_path):
    make_afew(tmp_path)
    touch(tmp_path, "Train/Contempt/x.avi")
    assert len(afew(tmp_path)) == 14
    touch(tmp_path, "Extra/Angry/y.avi")
    with pytest.raises(DatasetError, match="Extra"):
        afew(tmp_path)


# ------------------------------------------------------------------------------------------------
# RAVDESS

RAVDESS_EXPECTED = {"01": "neutral", "02": None, "03": "happy", "04": "sad", "05": "anger", "06": "fear",
                    "07": "disgust", "08": "surprise"}


def test_ravdess_labels_speakers_and_calm_dropped(tmp_path):
    names = [f"Actor_{a:02d}/03-01-{e}-01-01-01-{a:02d}.flac" for a in (1, 2) for e in RAVDESS_EXPECTED]
    touch(tmp_path, *names, "Actor_01/notes.txt", "Actor_01/._03-01-05-01-01-01-01.flac")
    items = ravdess(tmp_path)
    assert len(items) == 14  # 2 actors x 7 emotions, calm dropped
    for it in items:
        assert it.label == RAVDESS_EXPECTED[it.path.stem.split("-")[2]]
        assert it.speaker == f"ravdess_{it.path.stem[-2:]}"
    assert {it.speaker for it in items} == {"ravdess_01", "ravdess_02"}
    assert_sorted(items)
    assert detect_layout(tmp_path) == "ravdess"


def test_corpora_and_predict_folders_know_the_same_media_files(tmp_path):
    """One extension table (media/ffmpeg.py): .opus, .aiff, .wmv and .ts are corpus files too, and a folder walk
    finds the same files whether a corpus reader or `emo predict FOLDER` walks it."""
    from emocli.media.inputs import expand_inputs

    touch(tmp_path, "Actor_01/03-01-05-01-01-01-01.opus", "Actor_01/03-01-03-01-01-01-01.aiff",
          "Actor_02/01-01-04-01-01-01-02.wmv", "Actor_02/01-01-06-01-01-01-02.ts", "Actor_02/notes.txt",
          "Actor_02/._01-01-06-01-01-01-02.ts", "__MACOSX/Actor_02/01-01-04-01-01-01-02.wmv")
    items = ravdess(tmp_path)
    assert labels_of(items) == {"03-01-05-01-01-01-01.opus": "anger", "03-01-03-01-01-01-01.aiff": "happy",
                                "01-01-04-01-01-01-02.wmv": "sad", "01-01-06-01-01-01-02.ts": "fear"}
    assert [p for _, p, _ in expand_inputs([str(tmp_path)])] == [it.path for it in items]


def test_ravdess_modalities_pick_one_file_per_take(tmp_path):
    touch(tmp_path, "Actor_02/01-01-05-01-01-01-02.mp4", "Actor_02/02-01-05-01-01-01-02.mp4",
          "Actor_02/03-01-05-01-01-01-02.wav",  # one take in three modalities
          "Actor_04/01-02-03-02-02-02-04.mp4",  # a song take only in full AV
          "Actor_04/03-01-04-01-01-01-04.wav")  # an audio-only take
    assert len(ravdess(tmp_path)) == 5
    audio = ravdess(tmp_path, modality="audio")
    assert [p.path.name for p in audio] == ["03-01-05-01-01-01-02.wav", "01-02-03-02-02-02-04.mp4",
                                           "03-01-04-01-01-01-04.wav"]
    video = ravdess(tmp_path, modality="video")
    assert [p.path.name for p in video] == ["02-01-05-01-01-01-02.mp4", "01-02-03-02-02-02-04.mp4"]
    av = ravdess(tmp_path, modality="av")
    assert [p.path.name for p in av] == ["01-01-05-01-01-01-02.mp4", "01-02-03-02-02-02-04.mp4"]
    assert load_corpus(tmp_path, modality="audio") == audio
    with pytest.raises(DatasetError, match="modality"):
        ravdess(tmp_path, modality="smell")


@pytest.mark.parametrize("name,match", [
    ("03-01-09-01-01-01-02.wav", "emotion code '09'"),
    ("03-01-00-01-01-01-02.wav", "emotion code '00'"),
    ("04-01-05-01-01-01-02.wav", "modality '04'"),
    ("03-03-05-01-01-01-02.wav", "vocal channel '03'"),
    ("03-01-05-01-01-01.wav", "not a RAVDESS file name"),
])
def test_ravdess_bad_codes_name_the_file(tmp_path, name, match):
    touch(tmp_path, "Actor_02/03-01-05-01-01-01-02.wav", "Actor_02/03-01-04-01-01-01-02.wav", f"Actor_02/{name}")
    assert detect_layout(tmp_path) == "ravdess"
    with pytest.raises(DatasetError, match=match) as err:
        ravdess(tmp_path)
    assert name in str(err.value)


def test_ravdess_only_calm_is_an_error_not_an_empty_list(tmp_path):
    touch(tmp_path, "03-01-02-01-01-01-02.wav")
    with pytest.raises(DatasetError, match="calm"):
        ravdess(tmp_path)


# ------------------------------------------------------------------------------------------------
# CREMA-D

CREMAD_EXPECTED = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def test_cremad_folders_labels_and_speakers(tmp_path):
    names = []
    for code in CREMAD_EXPECTED:
        names += [f"VideoFlash/1001_DFA_{code}_XX.flv", f"AudioWAV/1001_DFA_{code}_XX.wav",
                  f"AudioMP3/1001_DFA_{code}_XX.mp3", f"1091_IEO_{code}_HI.wav"]
    touch(tmp_path, *names, "processedResults/summaryTable.csv", "SentenceFilenames.csv")
    items = cremad(tmp_path)
    assert len(items) == 24
    for it in items:
        assert it.label == CREMAD_EXPECTED[it.path.stem.split("_")[2]]
        assert it.speaker == "cremad_" + it.path.stem[:4]
    assert_sorted(items)
    assert detect_layout(tmp_path) == "cremad"
    audio = cremad(tmp_path, modality="audio")  # one file per clip, WAV preferred over MP3 and the FLV
    assert len(audio) == 12 and {it.path.suffix for it in audio} == {".wav"}
    video = load_corpus(tmp_path, modality="video")
    assert len(video) == 6 and {it.path.suffix for it in video} == {".flv"}


def test_cremad_bad_code_names_the_file(tmp_path):
    touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1001_DFA_SAD_XX.wav", "AudioWAV/1001_DFA_XYZ_XX.wav")
    assert detect_layout(tmp_path) == "cremad"
    with pytest.raises(DatasetError, match="1001_DFA_XYZ_XX.wav") as err:
        cremad(tmp_path)
    assert "'XYZ'" in str(err.value)


@pytest.mark.skipif(not (SHARED_DATA / "cremad").is_dir(), reason="shared data not present")
def test_real_corpora_names_when_present():
    items = load_corpus(SHARED_DATA / "cremad")
    assert len(items) == 12 and {it.speaker for it in items} == {"cremad_1001", "cremad_1002"}
    if (SHARED_DATA / "emodb").is_dir():
        assert detect_layout(SHARED_DATA / "emodb") == "emodb"


# ------------------------------------------------------------------------------------------------
# TESS

TESS_EXPECTED = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
                 "sad": "sad", "ps": "surprise"}


def test_tess_labels_from_last_name_part_and_speakers(tmp_path):
    folders = {"angry": "angry", "disgust": "disgust", "fear": "Fear", "happy": "happy", "neutral": "neutral",
               "sad": "Sad", "ps": "pleasant_surprise"}
    names = [f"{spk}_{folders[e]}/{spk}_{word}_{e}.wav" for spk in ("OAF", "YAF") for e in TESS_EXPECTED
             for word in ("back", "youth")]
    names.append("OAF_neutral/OA_bite_neutral.wav")  # TESS's own quirk: OA_ file in an OAF_ folder
    touch(tmp_path, *names)
    items = tess(tmp_path)
    assert len(items) == 29
    for it in items:
        assert it.label == TESS_EXPECTED[it.path.stem.split("_")[-1]]
        assert it.speaker == "tess_" + it.path.parent.name.split("_")[0]
    assert Counter(it.speaker for it in items) == {"tess_OAF": 15, "tess_YAF": 14}
    assert detect_layout(tmp_path) == "tess"


def test_tess_bad_label_names_the_file(tmp_path):
    touch(tmp_path, "OAF_angry/OAF_back_angry.wav", "OAF_angry/OAF_bite_angry.wav", "OAF_joy/OAF_back_joyful.wav")
    assert detect_layout(tmp_path) == "tess"
    with pytest.raises(DatasetError, match="OAF_back_joyful.wav"):
        tess(tmp_path)


# ------------------------------------------------------------------------------------------------
# SAVEE

SAVEE_EXPECTED = {"a": "anger", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
                  "su": "surprise"}


def test_savee_speaker_folders_and_flat_prefixes(tmp_path):
    folder = [f"AudioData/{spk}/{c}{n:02d}.wav" for spk in ("DC", "JE") for c in SAVEE_EXPECTED for n in (1, 15)]
    flat = [f"ALL/{spk}_{c}{n:02d}.wav" for spk in ("JK", "KL") for c in SAVEE_EXPECTED for n in (3,)]
    touch(tmp_path, *folder, *flat, "AudioData/DC/DC.txt")
    items = savee(tmp_path)
    assert len(items) == 28 + 14
    for it in items:
        stem = it.path.stem.split("_")[-1].rstrip("0123456789")
        assert it.label == SAVEE_EXPECTED[stem]
    assert Counter(it.speaker for it in items) == {"savee_DC": 14, "savee_JE": 14, "savee_JK": 7, "savee_KL": 7}
    assert detect_layout(tmp_path) == "savee"


def test_savee_audio_and_video_of_one_take(tmp_path):
    touch(tmp_path, "AudioData/DC/a01.wav", "AudioVisualClip/DC/a1.avi", "AudioVisualClip/DC/su2.avi")
    assert len(savee(tmp_path)) == 3
    assert [it.path.name for it in savee(tmp_path, modality="audio")] == ["a01.wav", "su2.avi"]


def test_savee_bad_code_names_the_file(tmp_path):
    touch(tmp_path, "DC/a01.wav", "DC/sa02.wav", "DC/x03.wav")
    assert detect_layout(tmp_path) == "savee"
    with pytest.raises(DatasetError, match="x03.wav"):
        savee(tmp_path)


# ------------------------------------------------------------------------------------------------
# EmoDB

EMODB_EXPECTED = {"W": "anger", "L": None, "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}


def test_emodb_labels_speakers_and_boredom_dropped(tmp_path):
    names = [f"wav/{spk}{text}{e}{v}.{ext}" for spk, text, v, ext in (("03", "a01", "a", "wav"), ("16", "b10", "c", "flac"))
             for e in EMODB_EXPECTED]
    touch(tmp_path, *names, "lablaut/03a01Fa.lab", "silb/03a01Fa.silb")
    items = emodb(tmp_path)
    assert len(items) == 12
    for it in items:
        assert it.label == EMODB_EXPECTED[it.path.stem[5]]
        assert it.speaker == "emodb_" + it.path.stem[:2]
    assert "boredom" not in {it.label for it in items}
    assert detect_layout(tmp_path) == "emodb"


def test_emodb_bad_letter_names_the_file(tmp_path):
    touch(tmp_path, "03a01Fa.wav", "03a01Wa.wav", "03a01Xa.wav")
    assert detect_layout(tmp_path) == "emodb"
    with pytest.raises(DatasetError, match="03a01Xa.wav"):
        emodb(tmp_path)


# ------------------------------------------------------------------------------------------------
# Manifests


def test_manifest_paths_labels_splits_speakers(tmp_path):
    touch(tmp_path, "clips/a.wav", "clips/b.custom", "clips/c.mp4")
    absolute = tmp_path / "clips" / "c.mp4"
    (tmp_path / "m.csv").write_text(
        "Path, Label ,split,speaker,notes\n"
        "clips/b.custom,Happiness,train,s1,x\n"
        "clips/a.wav,angry,,,\n"
        "\n"
        f"{absolute},calm,test,s2,dropped\n", encoding="utf-8")
    items = manifest(tmp_path / "m.csv")
    assert items == [Item(tmp_path / "clips" / "a.wav", "anger"),
                     Item(tmp_path / "clips" / "b.custom", "happy", "s1", "train")]
    assert detect_layout(tmp_path / "m.csv") == "manifest"
    assert detect_layout(tmp_path) == "manifest"  # arbitrary names + one manifest CSV
    assert load_corpus(tmp_path) == items == load_corpus(tmp_path, layout="csv")


def test_manifest_unknown_label_names_the_row(tmp_path):
    touch(tmp_path, "a.wav", "b.wav")
    (tmp_path / "m.csv").write_text("path,label\na.wav,happy\nb.wav,joyful\n")
    with pytest.raises(DatasetError, match="joyful") as err:
        manifest(tmp_path / "m.csv")
    assert "line 3" in str(err.value) and "b.wav" in str(err.value)


def test_manifest_missing_file_names_the_row(tmp_path):
    touch(tmp_path, "a.wav")
    (tmp_path / "m.csv").write_text("path,label\na.wav,happy\nmissing.wav,sad\n")
    with pytest.raises(DatasetError, match=r"line 3: file missing.wav not found"):
        manifest(tmp_path / "m.csv")


@pytest.mark.parametrize("text", ["a.wav,happy\n", "file,emotion\na.wav,happy\n", ""])
def test_manifest_needs_a_header(tmp_path, text):
    touch(tmp_path, "a.wav")
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetError, match="header"):
        manifest(tmp_path / "m.csv")


# ------------------------------------------------------------------------------------------------
# Layout detection and overrides


def test_nothing_matches_lists_layouts_and_says_how_to_choose(tmp_path):
    touch(tmp_path, "clips/hello.wav", "clips/world.mp4", "notes.txt")
    with pytest.raises(DatasetError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    assert "--layout" in message and all(name in message for name in LAYOUTS)
    with pytest.raises(DatasetError, match="--layout"):
        load_corpus(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        detect_layout(tmp_path / "missing")


def test_explicit_layout_overrides_detection_and_accepts_aliases(tmp_path):
    touch(tmp_path, "1001_DFA_ANG_XX.wav", "1001_DFA_SAD_XX.wav")
    assert len(load_corpus(tmp_path, layout="crema-d")) == 2
    assert len(load_corpus(tmp_path, "CREMAD")) == 2
    with pytest.raises(DatasetError, match="not a RAVDESS file name"):
        load_corpus(tmp_path, layout="ravdess")
    with pytest.raises(DatasetError, match="unknown layout 'nope'.*afew"):
        load_corpus(tmp_path, layout="nope")


def test_modality_without_matching_files_is_an_error(tmp_path):
    touch(tmp_path, "happy/a.jpg")
    assert len(load_corpus(tmp_path, modality="video")) == 1  # a face image is visual
    with pytest.raises(DatasetError, match="audio"):
        load_corpus(tmp_path, modality="audio")


def test_parse_name_reads_only_the_name():
    item = parse_name(Path("nowhere/Actor_07/01-01-06-02-01-02-07.mp4"), "ravdess")
    assert item == Item(Path("nowhere/Actor_07/01-01-06-02-01-02-07.mp4"), "fear", "ravdess_07")
    assert parse_name(Path("03a05Lb.wav"), "emodb") is None
    with pytest.raises(DatasetError, match="does not label files by name"):
        parse_name(Path("a.jpg"), "images")


def test_dataset_errors_are_emo_errors_and_value_errors():
    assert issubclass(DatasetError, EmoError) and issubclass(DatasetError, ValueError)


def test_layout_choices_are_written_once():
    """--layout's choice list (emocli.choices, read by the command line without numpy) is the corpus module's."""
    from emocli.choices import LAYOUTS as CHOICES
    from emocli.corpus.layouts import LAYOUTS

    assert tuple(LAYOUTS) == CHOICES
