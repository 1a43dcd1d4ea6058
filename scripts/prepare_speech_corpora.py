"""Prepare the public emotional-speech corpora that the voice model also trains on (issue 30).

    git clone https://github.com/amu-cai/nEMO            src/nemo        # commit 66de9999
    git clone https://github.com/Ethio2021/ASED_V1       src/ased        # commit 30fee034
    git clone https://github.com/Xeonen/TurEV-DB         src/turev_db    # commit be9873ec
    git clone https://github.com/siddiquelatif/URDU-Dataset src/urdu     # commit 4b546d4e
    python scripts/prepare_speech_corpora.py src/nemo src/ased src/turev_db src/urdu --out corpora

Each corpus becomes ``OUT/<name>/audio/...`` (16 kHz mono 16-bit FLAC) and ``OUT/<name>/manifest.csv``
(``path,label,speaker,corpus,language``; paths relative to the manifest), which ``emo train-audio``,
``emo evaluate`` and ``scripts/voice_corpora.py`` read. ``--sample N`` also writes
``manifest_sub.csv``: about N clips, the same share of every (speaker, emotion) cell, seeded (the
shipped voice model trains on nEMO 900, ASED 1000, TurEV-DB 600 and all of URDU).

Labels follow DATA.md's rules: a class is kept only when it means one of the seven emotions
(nEMO's six; ASED's five; TurEV-DB's anger, happy and sad, not "calm"; URDU's four). Speaker ids
carry the corpus's prefix. Byte-identical files of one corpus are kept once. Licences (README's
model card repeats them): nEMO CC BY-NC-SA 4.0; ASED "freely available", cite Retta et al. 2022;
TurEV-DB CC BY-NC-ND 4.0 (the README; its LICENSE file says GPL-3.0); URDU research use only.
None of them is redistributed by emo: the prepared files stay on your machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NEMO = {"anger": "anger", "fear": "fear", "happiness": "happy", "neutral": "neutral", "sadness": "sad",
        "surprised": "surprise"}
ASED = {"01Neutral": "neutral", "02Fearful": "fear", "03Happy": "happy", "04Sad": "sad", "05Angry": "anger"}
TUREV = {"Angry": "anger", "Happy": "happy", "Sad": "sad"}  # Calm is not neutral: dropped
URDU = {"Angry": "anger", "Happy": "happy", "Neutral": "neutral", "Sad": "sad"}


def nemo(src: Path):
    """nEMO (Polish, 9 actors): samples/*.wav, labels and speakers from data.tsv."""
    with open(src / "data.tsv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["emotion"] in NEMO:
                yield src / "samples" / row["file_id"], NEMO[row["emotion"]], "NEMO_" + row["speaker_id"].strip()


def ased(src: Path):
    """ASED v1 (Amharic, 65 speakers): <nn><Emotion>/<code>-<sentence>-<repetition>-<gender>-<speaker>.wav."""
    for folder, label in ASED.items():
        for f in sorted((src / folder).glob("*.wav")):
            yield f, label, "ASED_" + f.stem.split("-")[-1]


def turev(src: Path):
    """TurEV-DB (Turkish, 6 actors, single words): Sound Source/<Emotion>/<speaker>_<word>.wav."""
    for folder, label in TUREV.items():
        for f in sorted((src / "Sound Source" / folder).glob("*.wav")):
            yield f, label, "TUREV_" + f.stem.split("_")[0]


def urdu(src: Path):
    """URDU (talk-show speech, 29 speaker ids): <Emotion>/<speaker>_<file>_<code>.wav."""
    for folder, label in URDU.items():
        for f in sorted((src / folder).glob("*.wav")):
            yield f, label, "URDU_" + f.stem.split("_")[0]


CORPORA = {"nemo": (nemo, "pl"), "ased": (ased, "am"), "turev_db": (turev, "tr"), "urdu": (urdu, "ur")}


def convert(ffmpeg: str, src: Path, dst: Path) -> str | None:
    """src as 16 kHz mono 16-bit FLAC at dst; an error message, or None."""
    if src.read_bytes()[:24].startswith(b"version https://git-lfs"):
        return "a git-LFS pointer, not audio: fetch the LFS objects"
    dst.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "16000",
                        "-sample_fmt", "s16", str(dst)], capture_output=True, text=True)
    return None if p.returncode == 0 and dst.is_file() else (p.stderr.strip()[-200:] or "ffmpeg failed")


def prepare(name: str, src: Path, out: Path, ffmpeg: str, sample: int | None) -> None:
    read, language = CORPORA[name]
    rows, seen = [], set()
    for path, label, speaker in read(src):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:  # a repetition that is the same file: once
            continue
        seen.add(digest)
        rows.append((path, Path("audio") / path.parent.name / (path.stem + ".flac"), label, speaker))
    with ThreadPoolExecutor(8) as pool:
        errors = list(pool.map(lambda r: convert(ffmpeg, r[0], out / name / r[1]), rows))
    kept = [r for r, e in zip(rows, errors) if e is None]
    for r, e in zip(rows, errors):
        if e is not None:
            print(f"{r[0]}: {e}")
    _write(out / name / "manifest.csv", kept, name, language)
    if sample:
        _write(out / name / "manifest_sub.csv", _sample(kept, sample), name, language)
    print(f"{name}: {len(kept)} clips of {len({r[3] for r in kept})} speakers ({len(rows) - len(kept)} failed)")


def _sample(rows: list, n: int) -> list:
    """About n rows: the same share of every (speaker, label) cell (at least one), seeded."""
    cells = defaultdict(list)
    for r in rows:
        cells[(r[3], r[2])].append(r)
    rng, share, keep = random.Random(0), n / len(rows), []
    for key in sorted(cells):
        group = sorted(cells[key], key=lambda r: str(r[1]))
        rng.shuffle(group)
        keep += group[:max(1, round(len(group) * share))]
    return sorted(keep, key=lambda r: str(r[1]))


def _write(path: Path, rows: list, name: str, language: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker", "corpus", "language"])
        for _, rel, label, speaker in rows:
            w.writerow([rel.as_posix(), label, speaker, name, language])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path, help="cloned corpus folders, each named after its corpus "
                    f"({', '.join(CORPORA)}) or given as NAME=FOLDER")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sample", nargs="*", default=["nemo=900", "ased=1000", "turev_db=600"],
                    help="NAME=N: also write manifest_sub.csv with about N clips")
    args = ap.parse_args(argv)
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    samples = {k: int(v) for k, v in (s.split("=") for s in args.sample)}
    for src in args.sources:
        name, _, folder = str(src).partition("=") if "=" in str(src) else (src.name, "", str(src))
        if name not in CORPORA:
            raise SystemExit(f"{src}: which corpus is it? name the folder {', '.join(CORPORA)} or pass NAME=FOLDER")
        prepare(name, Path(folder), args.out, ffmpeg, samples.get(name))


if __name__ == "__main__":
    main()
