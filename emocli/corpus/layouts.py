"""Labelled corpora: find items and their labels from each corpus's own naming.

Nothing here decodes media: every reader only walks folders and parses names, so a corpus of
empty files that follows the real naming reads exactly like the real corpus.

Labels are mapped by *name*: each corpus's code (RAVDESS ``05``, CREMA-D ``ANG``, EmoDB ``W``,
SAVEE ``sa``) is first turned into the English word its documentation gives, then passed to
:func:`emocli.labels.normalise_label`. Classes that are not one of the seven (calm, boredom) are
dropped on purpose; an unknown label is a :class:`~emocli.errors.DatasetError` naming the file.

Speaker ids are prefixed with the corpus name (``ravdess_02``, ``cremad_1001``, ``emodb_03``,
``savee_DC``, ``tess_OAF``) so corpora can be combined and still be split by speaker.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from emocli.errors import DatasetError
from emocli.labels import normalise_label
from emocli.media.ffmpeg import AUDIO_EXTS, IMAGE_EXTS, MEDIA_EXTS, VIDEO_EXTS, is_hidden, media_files

# Layout names accepted by load_corpus / ``--layout`` (emocli.choices.LAYOUTS), with the naming each one expects.
LAYOUTS: dict[str, str] = {
    "afew": "AFEW/EmotiW videos: <root>/{Train,Val}/<Emotion>/*.avi",
    "images": "folder-per-class images (FER2013, SFEW, JAFFE-style): <root>/[<split>/]<emotion>/*.jpg",
    "ravdess": "RAVDESS: MM-VC-EE-II-SS-RR-AA.ext anywhere under <root> (e.g. Actor_02/03-01-05-01-01-01-02.wav)",
    "cremad": "CREMA-D: ActorID_Sentence_EMO_Level.ext (e.g. VideoFlash/1001_DFA_ANG_XX.flv)",
    "tess": "TESS: OAF_angry/OAF_back_angry.wav, YAF_pleasant_surprise/YAF_youth_ps.wav",
    "savee": "SAVEE: DC/a01.wav or KL_sa03.wav",
    "emodb": "Berlin EmoDB: SSTTTEV.wav (e.g. 03a01Wa.wav)",
    "manifest": "CSV manifest with a header: path,label[,split][,speaker]",
}
_LAYOUT_ALIASES = {
    "emotiw": "afew", "image_folder": "images", "image": "images", "sfew": "images", "fer2013": "images",
    "fer": "images", "jaffe": "images", "crema_d": "cremad", "crema": "cremad", "emo_db": "emodb",
    "berlin": "emodb", "csv": "manifest",
}

MODALITIES = ("all", "audio", "video", "av")
_AUDIO = frozenset({"audio"})
_VIDEO = frozenset({"video"})
_AV = frozenset({"audio", "video"})
_LOSSY = frozenset({".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma"})

# Folder names that hold a split rather than a class; AFEW maps them to its own spelling.
_SPLITS = {
    "train": "Train", "training": "Train", "train_afew": "Train",
    "val": "Val", "valid": "Val", "validation": "Val", "val_afew": "Val",
    "test": "Test", "testing": "Test", "test_afew": "Test",
    "dev": "Val", "publictest": "Val", "privatetest": "Test",
}
_AFEW_SPLITS = {"train": "Train", "training": "Train", "train_afew": "Train",
                "val": "Val", "valid": "Val", "validation": "Val", "val_afew": "Val"}

# Each corpus's documented codes, turned into the words its documentation uses.
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
_RAVDESS_CHANNELS = {"01": _AV, "02": _VIDEO, "03": _AUDIO}  # full AV, video-only, audio-only
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SAVEE_EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
                  "su": "surprise"}
EMODB_EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad",
                  "N": "neutral"}  # German initials: Wut, Langeweile, Ekel, Angst, Freude, Trauer, Neutral

_RAVDESS_RE = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_CREMAD_RE = re.compile(r"(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)")
_EMODB_RE = re.compile(r"(\d\d)([A-Za-z]\d\d)([A-Za-z])([A-Za-z]?)")
_SAVEE_RE = re.compile(r"(?:([A-Za-z]{2})_)?([A-Za-z]{1,2})(\d{1,3})")
_TESS_SPEAKER_RE = re.compile(r"(OAF|YAF|OA|YA)_.+", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One labelled file of a corpus."""

    path: Path
    label: str
    speaker: str | None = None
    split: str | None = None


# One found file before modality selection: the item, the channels it carries, and the take it records
# (files of one take in several modalities share a take key, so a modality can pick one of them).
@dataclass(frozen=True)
class _Found:
    item: Item
    channels: frozenset[str]
    take: Hashable


# --------------------------------------------------------------------------------------------------
# Walking folders


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def _files_in(folder: Path, exts: frozenset[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not is_hidden(p.name) and p.suffix.lower() in exts)


def _channels(path: Path) -> frozenset[str]:
    """What a file can give by its extension: video containers usually carry the soundtrack too."""
    ext = path.suffix.lower()
    if ext in VIDEO_EXTS:
        return _AV
    if ext in AUDIO_EXTS:
        return _AUDIO
    if ext in IMAGE_EXTS:
        return _VIDEO
    return frozenset()


def _require_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass the root folder of the {what}")
    return root


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise DatasetError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    return modality


def _finish(found: list[_Found], *, modality: str, root: Path, layout: str, dropped: int = 0) -> list[Item]:
    """Keep the files that carry ``modality`` (one per take, preferring the single-modality file),
    sort by path, and refuse an empty result with a message that says why."""
    _check_modality(modality)
    if not found:
        if dropped:
            raise DatasetError(f"{root}: all {dropped} {layout} files are of classes that are not one of the "
                               "seven emotions (e.g. calm, boredom); nothing left to use")
        raise DatasetError(f"{root}: no media files found for layout {layout!r} ({LAYOUTS[layout]})")
    if modality == "all":
        return sorted((f.item for f in found), key=lambda it: it.path)
    keep = [f for f in found if (f.channels == _AV if modality == "av" else modality in f.channels)]

    def rank(f: _Found) -> tuple:
        # Within a take: the single-modality file first (audio-only beats a video's soundtrack),
        # then lossless before lossy audio, then by path so the choice is stable.
        return len(f.channels), f.item.path.suffix.lower() in _LOSSY, str(f.item.path)

    if not keep:
        raise DatasetError(f"{root}: none of the {len(found)} {layout} files carries {modality}; "
                           f"choose another modality ({', '.join(MODALITIES)})")
    best: dict[Hashable, _Found] = {}
    for f in sorted(keep, key=rank):
        best.setdefault(f.take, f)
    return sorted((f.item for f in best.values()), key=lambda it: it.path)


# --------------------------------------------------------------------------------------------------
# Folder-per-class layouts


def _class_folders(root: Path, exts: frozenset[str], split: str | None) -> tuple[list[_Found], int]:
    found: list[_Found] = []
    dropped = 0
    for sub in _subdirs(root):
        label = normalise_label(sub.name, source=str(sub))
        files = _files_in(sub, exts)
        if label is None:
            dropped += len(files)
            continue
        found.extend(_Found(Item(p, label, None, split), _channels(p), p) for p in files)
    return found, dropped


def _has_split_folders(root: Path) -> bool:
    return any(p.name.lower() in _SPLITS for p in _subdirs(root))


def image_folder(root: Path, *, modality: str = "all") -> list[Item]:
    """Folder-per-class images (FER2013, SFEW, JAFFE-style).

    Either ``root/<emotion>/*.jpg`` (``split`` is None) or ``root/<split>/<emotion>/*.jpg`` where
    ``<split>`` is a folder such as ``train``, ``val``, ``Test`` (``split`` is the folder name as
    written). A split folder that holds images but no class folders (SFEW ``Test``) is unlabelled and
    skipped. Images count as the ``video`` (visual) modality.

    Returns
    -------
    list of Item
        Sorted by path.

    Raises
    ------
    DatasetError
        If ``root`` has no class folders, or a folder name is not an emotion (the message names it).
    """
    root = _require_dir(root, "image corpus")
    if _has_split_folders(root):
        found, dropped = [], 0
        for sub in _subdirs(root):
            if sub.name.lower() not in _SPLITS:
                raise DatasetError(f"{sub}: {root} holds split folders (train, val, test), but {sub.name!r} is "
                                   "not one; move it out or rename it")
            f, d = _class_folders(sub, IMAGE_EXTS, sub.name)
            found += f
            dropped += d
    else:
        found, dropped = _class_folders(root, IMAGE_EXTS, None)
    if not found and not dropped:
        raise DatasetError(f"{root}: no images found in class folders (expected {root}/<emotion>/*.jpg "
                           f"or {root}/<split>/<emotion>/*.jpg)")
    return _finish(found, modality=modality, root=root, layout="images", dropped=dropped)


def afew(root: Path, *, modality: str = "all") -> list[Item]:
    """AFEW / EmotiW videos: ``root/{Train,Val}/{Angry,...,Surprise}/*.avi``.

    Split folder names are case-insensitive (``train``, ``Val``, ``Validation``) and ``split`` is
    ``"Train"`` or ``"Val"``. ``root/Test`` (unlabelled) is skipped. ``root`` may also
    be a single split folder (``root/Angry/*.avi``); then ``split`` is None.

    Raises
    ------
    DatasetError
        If no labelled videos are found, a class folder is not an emotion, or a top-level folder is
        neither a split nor ``Test``.
    """
    root = _require_dir(root, "AFEW corpus")
    if _has_split_folders(root):
        found, dropped = [], 0
        for sub in _subdirs(root):
            key = sub.name.lower()
            if _SPLITS.get(key) == "Test" and key not in _AFEW_SPLITS:
                continue
            if key not in _AFEW_SPLITS:
                raise DatasetError(f"{sub}: expected only Train, Val and Test folders in {root}; "
                                   "move it out or rename it")
            f, d = _class_folders(sub, VIDEO_EXTS, _AFEW_SPLITS[key])
            found += f
            dropped += d
    else:
        found, dropped = _class_folders(root, VIDEO_EXTS, None)
    if not found and not dropped:
        raise DatasetError(f"{root}: no videos found (expected {root}/Train/<Emotion>/*.avi and {root}/Val/...)")
    return _finish(found, modality=modality, root=root, layout="afew", dropped=dropped)


# --------------------------------------------------------------------------------------------------
# Corpora labelled by file name


def _label(name: str, path: Path) -> str | None:
    return normalise_label(name, source=str(path))


def _ravdess(path: Path) -> _Found | None:
    m = _RAVDESS_RE.fullmatch(path.stem)
    if m is None:
        raise DatasetError(f"{path}: not a RAVDESS file name (expected MM-VC-EE-II-SS-RR-AA, "
                           "e.g. 03-01-05-01-01-01-02.wav)")
    modality, vocal, emotion, intensity, statement, repetition, actor = m.groups()
    if emotion not in RAVDESS_EMOTIONS:
        raise DatasetError(f"{path}: unknown RAVDESS emotion code {emotion!r}; codes are 01 neutral, 02 calm, "
                           "03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised")
    if modality not in _RAVDESS_CHANNELS:
        raise DatasetError(f"{path}: unknown RAVDESS modality {modality!r}; use 01 (audio-video), "
                           "02 (video-only) or 03 (audio-only)")
    if vocal not in ("01", "02"):
        raise DatasetError(f"{path}: unknown RAVDESS vocal channel {vocal!r}; use 01 (speech) or 02 (song)")
    label = _label(RAVDESS_EMOTIONS[emotion], path)
    if label is None:
        return None
    # A .wav cut from a full-AV 01 file keeps the 01 name: trust the extension as well as the code.
    channels = _RAVDESS_CHANNELS[modality] & _channels(path)
    take = ("ravdess", vocal, emotion, intensity, statement, repetition, actor)
    return _Found(Item(path, label, f"ravdess_{actor}"), channels, take)


def _cremad(path: Path) -> _Found | None:
    m = _CREMAD_RE.fullmatch(path.stem)
    if m is None:
        raise DatasetError(f"{path}: not a CREMA-D file name (expected ActorID_Sentence_EMO_Level, "
                           "e.g. 1001_DFA_ANG_XX.flv)")
    actor, sentence, emotion, level = m.groups()
    code = emotion.upper()
    if code not in CREMAD_EMOTIONS:
        raise DatasetError(f"{path}: unknown CREMA-D emotion code {emotion!r}; "
                           f"codes are {', '.join(CREMAD_EMOTIONS)}")
    label = _label(CREMAD_EMOTIONS[code], path)
    if label is None:
        return None
    take = ("cremad", actor, sentence.upper(), code, level.upper())
    return _Found(Item(path, label, f"cremad_{actor}"), _channels(path), take)


def _tess(path: Path) -> _Found | None:
    parts = path.stem.split("_")
    if len(parts) < 2 or not parts[-1]:
        raise DatasetError(f"{path}: not a TESS file name (expected SPEAKER_word_emotion, e.g. OAF_back_angry.wav)")
    # The folder names the speaker more reliably than the file (TESS has a few OA_*.wav in OAF_* folders).
    folder = _TESS_SPEAKER_RE.fullmatch(path.parent.name)
    speaker = (folder.group(1) if folder else parts[0]).upper()
    label = _label(parts[-1], path)
    if label is None:
        return None
    return _Found(Item(path, label, f"tess_{speaker}"), _channels(path), path)


def _savee(path: Path) -> _Found | None:
    m = _SAVEE_RE.fullmatch(path.stem)
    if m is None:
        raise DatasetError(f"{path}: not a SAVEE file name (expected SPEAKER/a01.wav or SPEAKER_sa03.wav)")
    prefix, code, number = m.groups()
    if code.lower() not in SAVEE_EMOTIONS:
        raise DatasetError(f"{path}: unknown SAVEE emotion code {code!r}; codes are a anger, d disgust, f fear, "
                           "h happy, n neutral, sa sad, su surprise")
    speaker = prefix or (path.parent.name if re.fullmatch(r"[A-Za-z]{2}", path.parent.name) else None)
    label = _label(SAVEE_EMOTIONS[code.lower()], path)
    if label is None:
        return None
    speaker = f"savee_{speaker.upper()}" if speaker else None
    # Audio a01.wav and audio-visual a1.avi of one take share speaker, code and number.
    take = ("savee", speaker, code.lower(), int(number)) if speaker else path
    return _Found(Item(path, label, speaker), _channels(path), take)


def _emodb(path: Path) -> _Found | None:
    m = _EMODB_RE.fullmatch(path.stem)
    if m is None:
        raise DatasetError(f"{path}: not an EmoDB file name (expected SSTTTEV, e.g. 03a01Wa.wav)")
    speaker, _text, emotion, _version = m.groups()
    code = emotion.upper()
    if code not in EMODB_EMOTIONS:
        raise DatasetError(f"{path}: unknown EmoDB emotion letter {emotion!r} (6th character); letters are "
                           "W anger, L boredom, E disgust, A fear, F happy, T sad, N neutral")
    label = _label(EMODB_EMOTIONS[code], path)
    if label is None:
        return None
    return _Found(Item(path, label, f"emodb_{speaker}"), _channels(path), path)


_NAME_PARSERS: dict[str, Callable[[Path], _Found | None]] = {
    "ravdess": _ravdess, "cremad": _cremad, "tess": _tess, "savee": _savee, "emodb": _emodb,
}


def parse_name(path: Path, layout: str) -> Item | None:
    """Label (and speaker) of one file from its name under a naming-based layout.

    ``layout`` is one of ``ravdess``, ``cremad``, ``tess``, ``savee``, ``emodb``. Only the name (and,
    for TESS and SAVEE, the parent folder's name) is read; the file need not exist.

    Returns
    -------
    Item or None
        None when the label is a class dropped on purpose (RAVDESS calm, EmoDB boredom).

    Raises
    ------
    DatasetError
        If the name does not follow the layout or carries an unknown emotion code.
    """
    layout = canonical_layout(layout)
    if layout not in _NAME_PARSERS:
        raise DatasetError(f"layout {layout!r} does not label files by name; use one of {', '.join(_NAME_PARSERS)}")
    found = _NAME_PARSERS[layout](Path(path))
    return None if found is None else found.item


def _by_name(root: Path, layout: str, exts: frozenset[str], modality: str) -> list[Item]:
    root = _require_dir(root, f"{layout} corpus")
    _check_modality(modality)
    parse = _NAME_PARSERS[layout]
    found, dropped = [], 0
    for path in media_files(root, exts, follow_links=True):
        f = parse(path)
        if f is None:
            dropped += 1
        else:
            found.append(f)
    return _finish(found, modality=modality, root=root, layout=layout, dropped=dropped)


def ravdess(root: Path, *, modality: str = "all") -> list[Item]:
    """RAVDESS: ``MM-VC-EE-II-SS-RR-AA.ext`` anywhere under ``root``.

    MM is the modality (01 audio-video, 02 video-only, 03 audio-only), VC the vocal channel (01
    speech, 02 song), EE the emotion (02 calm is dropped), AA the actor (odd male, even female;
    speaker ``ravdess_AA``).

    Parameters
    ----------
    modality : {"all", "audio", "video", "av"}
        ``"all"`` keeps every file. ``"audio"`` keeps one file per take that carries sound, preferring
        the audio-only 03 file over the soundtrack of a 01 video; ``"video"`` keeps one per take with
        pictures, preferring 02 over 01; ``"av"`` keeps only full audio-video files.

    Raises
    ------
    DatasetError
        For a media file whose name is not RAVDESS naming or has an unknown code (the message names it).
    """
    return _by_name(root, "ravdess", MEDIA_EXTS, modality)


def cremad(root: Path, *, modality: str = "all") -> list[Item]:
    """CREMA-D: ``ActorID_Sentence_EMO_Level.ext`` under ``VideoFlash/``, ``AudioWAV/``, ``AudioMP3/``
    or flat. Emotions ANG, DIS, FEA, HAP, NEU, SAD; speaker ``cremad_<ActorID>``.

    With ``modality="audio"`` one file per clip is kept (WAV over MP3 over the FLV soundtrack);
    ``"video"`` and ``"av"`` keep the videos.

    Raises
    ------
    DatasetError
        For a media file whose name is not CREMA-D naming or has an unknown emotion code.
    """
    return _by_name(root, "cremad", MEDIA_EXTS, modality)


def tess(root: Path, *, modality: str = "all") -> list[Item]:
    """TESS: ``OAF_angry/OAF_back_angry.wav``; the label is the last ``_`` part of the file name
    (``ps`` is pleasant surprise, i.e. surprise), the speaker OAF or YAF (``tess_OAF``).

    Raises
    ------
    DatasetError
        For an audio file whose last name part is not an emotion.
    """
    return _by_name(root, "tess", AUDIO_EXTS | VIDEO_EXTS, modality)


def savee(root: Path, *, modality: str = "all") -> list[Item]:
    """SAVEE: ``DC/a01.wav`` (speaker folder) or flat ``KL_sa03.wav`` (speaker prefix). Codes: a anger,
    d disgust, f fear, h happy, n neutral, sa sad, su surprise; speaker ``savee_DC``.

    Raises
    ------
    DatasetError
        For a media file whose name is not SAVEE naming or has an unknown code.
    """
    return _by_name(root, "savee", AUDIO_EXTS | VIDEO_EXTS, modality)


def emodb(root: Path, *, modality: str = "all") -> list[Item]:
    """Berlin EmoDB: ``SSTTTEV.wav`` (or .flac): speaker SS (``emodb_SS``), text TTT, emotion E
    (W anger, L boredom -- dropped, E disgust, A fear, F happy, T sad, N neutral), version V.

    Raises
    ------
    DatasetError
        For an audio file whose name is not EmoDB naming or has an unknown emotion letter.
    """
    return _by_name(root, "emodb", AUDIO_EXTS, modality)


# --------------------------------------------------------------------------------------------------
# Manifests


def read_csv_rows(path: Path, *, what: str, fix: str) -> list[list[str]]:
    """Every row of a small UTF-8 CSV file (a BOM is dropped), for the lists emo reads whole
    (speaker tables, exclude lists).

    Raises
    ------
    DatasetError
        "<path>: <what> not found; <fix>", or "<path>: <what> not readable (<why>); <fix>".
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found; {fix}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: {what} not readable ({exc}); {fix}") from None


def _manifest_header(path: Path) -> list[str] | None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None if row is None else [c.strip().lower() for c in row]


def _is_manifest(path: Path) -> bool:
    header = _manifest_header(path)
    return header is not None and "path" in header and "label" in header


def manifest(path: Path, *, modality: str = "all") -> list[Item]:
    """A CSV manifest with a header row ``path,label[,split][,speaker]`` (other columns are ignored).

    Relative paths are resolved against the CSV's folder; any file extension is accepted. Labels go
    through :func:`~emocli.labels.normalise_label`; rows of dropped classes are skipped. Speaker ids
    are kept as written.

    Raises
    ------
    DatasetError
        If the header lacks ``path`` or ``label``, a row has no path or label, names a missing file,
        or has an unknown label; the message names the CSV line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found; pass a CSV file with columns path,label[,split][,speaker]")
    found, dropped = [], 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip().lower() for c in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise DatasetError(f"{path}: the first row must be a header naming the columns path and label "
                                   f"(optionally split, speaker); got {','.join(header) or 'an empty file'}")
            col = {name: header.index(name) for name in ("path", "label", "split", "speaker") if name in header}
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                where = f"{path} line {reader.line_num}"
                cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
                if not cell["path"] or not cell["label"]:
                    raise DatasetError(f"{where}: every row needs a path and a label; got {','.join(row)!r}")
                file = Path(cell["path"]).expanduser()
                if not file.is_absolute():
                    file = path.parent / file
                if not file.is_file():
                    raise DatasetError(f"{where}: file {cell['path']} not found (relative paths are resolved "
                                       f"against {path.parent})")
                label = normalise_label(cell["label"], source=f"{where} ({cell['path']})")
                if label is None:
                    dropped += 1
                    continue
                item = Item(file, label, cell.get("speaker") or None, cell.get("split") or None)
                found.append(_Found(item, _channels(file), file))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: not a readable UTF-8 CSV file ({e})") from e
    return _finish(found, modality=modality, root=path, layout="manifest", dropped=dropped)


# --------------------------------------------------------------------------------------------------
# Choosing a layout

_READERS: dict[str, Callable[..., list[Item]]] = {
    "afew": afew, "images": image_folder, "ravdess": ravdess, "cremad": cremad, "tess": tess,
    "savee": savee, "emodb": emodb, "manifest": manifest,
}

# Loose name patterns: a file that roughly follows a corpus's naming votes for it, so that a corpus
# with one bad code is still recognised and its reader can say which file is wrong.
_NAME_VOTES: dict[str, Callable[[Path], bool]] = {
    "ravdess": lambda p: _RAVDESS_RE.fullmatch(p.stem) is not None,
    "cremad": lambda p: _CREMAD_RE.fullmatch(p.stem) is not None,
    "emodb": lambda p: p.suffix.lower() in AUDIO_EXTS and _EMODB_RE.fullmatch(p.stem) is not None,
    "savee": lambda p: p.suffix.lower() not in IMAGE_EXTS and _SAVEE_RE.fullmatch(p.stem) is not None,
    "tess": lambda p: p.suffix.lower() not in IMAGE_EXTS and "_" in p.stem and (
        _TESS_SPEAKER_RE.fullmatch(p.stem) is not None or _TESS_SPEAKER_RE.fullmatch(p.parent.name) is not None),
}


def canonical_layout(layout: str) -> str:
    """The layout's name in :data:`LAYOUTS` (aliases and case allowed); DatasetError for an unknown one."""
    key = layout.strip().lower().replace("-", "_")
    key = _LAYOUT_ALIASES.get(key, key)
    if key not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return key


def _is_emotion_name(name: str) -> bool:
    try:
        normalise_label(name)
    except DatasetError:
        return False
    return True


def _folder_layout(root: Path) -> str | None:
    """``afew`` or ``images`` when ``root`` (or its split folders) holds emotion-named folders."""
    class_roots = [p for p in _subdirs(root) if p.name.lower() in _SPLITS] or [root]
    videos = images = 0
    for class_root in class_roots:
        for sub in _subdirs(class_root):
            if _is_emotion_name(sub.name):
                videos += len(_files_in(sub, VIDEO_EXTS))
                images += len(_files_in(sub, IMAGE_EXTS))
    if videos == images == 0:
        return None
    return "afew" if videos > images else "images"


def _manifests_in(root: Path) -> list[Path]:
    return [p for p in sorted(root.glob("*.csv")) if not is_hidden(p.name) and _is_manifest(p)]


def _no_layout(root: Path, detail: str) -> DatasetError:
    known = "\n".join(f"  {name}: {desc}" for name, desc in LAYOUTS.items())
    return DatasetError(f"{root}: cannot tell the corpus layout ({detail}). Known layouts:\n{known}\n"
                        "Pass --layout NAME to choose one, or write a manifest CSV (path,label) and pass its path.")


def detect_layout(root: Path) -> str:
    """Pick the layout of a corpus from its folder and file naming.

    Folder-per-class corpora are recognised by emotion-named folders (``afew`` when they hold videos,
    ``images`` when they hold images); the others by the share of media files whose names follow a
    corpus's naming (more than half must); a CSV file, or a folder with one CSV whose header has
    ``path`` and ``label``, is a ``manifest``.

    Returns
    -------
    str
        One of :data:`LAYOUTS`.

    Raises
    ------
    DatasetError
        If nothing matches; the message lists the layouts and says how to pass ``--layout``.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(f"{root}: a file, not a corpus; pass a corpus folder or a manifest CSV")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; pass the root folder of a corpus")
    folder = _folder_layout(root)
    if folder is not None:
        return folder
    files = media_files(root, follow_links=True)
    votes = {name: sum(vote(p) for p in files) for name, vote in _NAME_VOTES.items()}
    best = max(votes, key=lambda name: votes[name])
    if files and votes[best] * 2 > len(files):
        return best
    manifests = _manifests_in(root)
    if len(manifests) == 1:
        return "manifest"
    if len(manifests) > 1:
        raise _no_layout(root, f"{len(manifests)} manifest CSVs ({', '.join(p.name for p in manifests)}); "
                               "pass the one to use instead of the folder")
    if not files:
        detail = "no media files and no manifest CSV with path,label columns"
    else:
        counts = ", ".join(f"{n} {name}" for name, n in votes.items() if n) or "none"
        detail = f"{len(files)} media files, names following a known corpus: {counts}"
    raise _no_layout(root, detail)


def load_corpus(root: Path, layout: str | None = None, *, modality: str = "all") -> list[Item]:
    """Read a labelled corpus, detecting its layout unless ``layout`` is given.

    Parameters
    ----------
    root : Path
        The corpus folder, or a manifest CSV.
    layout : str, optional
        One of :data:`LAYOUTS` (aliases such as ``crema-d``, ``fer2013``, ``csv`` work too).
    modality : {"all", "audio", "video", "av"}
        Keep only files that carry this modality, one per take where a corpus has the same take in
        several files (RAVDESS 01/02/03, CREMA-D WAV/MP3/FLV, SAVEE audio/video).

    Returns
    -------
    list of Item
        Sorted by path; never empty.

    Raises
    ------
    DatasetError
        For an unknown or undetectable layout, a bad label (naming the file), or no usable items.
    """
    root = Path(root)
    _check_modality(modality)
    name = detect_layout(root) if layout is None else canonical_layout(layout)
    if name == "manifest" and root.is_dir():
        manifests = _manifests_in(root)
        if len(manifests) != 1:
            raise DatasetError(f"{root}: found {len(manifests)} manifest CSVs with path,label columns; "
                               "pass the path of the CSV itself")
        root = manifests[0]
    return _READERS[name](root, modality=modality)


def corpus_name(folder: Path) -> str:
    """A short name for a training folder: ``affectnet`` for ``.../affectnet/train``; a CSV manifest is
    named after its folder (``nemo`` for ``.../nemo/manifest.csv``)."""
    folder = Path(os.path.abspath(folder))
    if folder.suffix.lower() == ".csv":
        folder = folder.parent
    return folder.parent.name if folder.name.lower() in ("train", "training") else folder.name


def corpus_names(folders) -> list[str]:
    """:func:`corpus_name` of each training folder; when two would share a name, each gets its index."""
    names = [corpus_name(f) for f in folders]
    return names if len(set(names)) == len(names) else [f"{n}{i}" for i, n in enumerate(names)]
