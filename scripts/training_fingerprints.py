"""Record what the shipped bundle's parts were trained and calibrated on, as fingerprints.

A record, rebuilt from what the bundle's own files say and the split rules of the scripts that
trained its face parts; nothing is trained here. For every part it lists the files of
``../shared/data`` that trained or calibrated it and writes their 64-bit fingerprints into the
bundle's ``training_items.npz`` (:mod:`emocli.fingerprints`), then rewrites the manifest:

- ``face.emo-cnn``: fer2013/train without the held-out 10 % that face.json records (share, seed,
  size; :func:`emocli.train.face.heldout_part` rebuilds it and checks the size);
- ``face.emo-cnn-holdout``: that FER2013 held-out part (it picked the epoch, the views and the
  prior adjustment);
- ``face.calibration``: the calib halves of AffectNet, SFEW and RAF-DB (the experts' temperatures,
  the head's choices), as ``scripts/face_experts.py`` and ``scripts/face_head.py`` split them;
- ``face.head``: the training parts of AffectNet, SFEW and RAF-DB (those scripts' ``-train`` sets);
- ``face.rafdb-expert``: all of rafdb/train (the MobileFaceNet's authors trained on RAF-DB's
  train split, of which ../shared holds a copy);
- ``voice.svm``: the clips of the speakers voice.json lists under ``trained_on`` (the count must
  equal its ``n_clips``); the speaker-adapted model is trained on the same clips.

    python scripts/training_fingerprints.py ../shared/data            # report the counts
    python scripts/training_fingerprints.py ../shared/data --write    # ... and store them in models/default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from emocli import fingerprints as fp
from emocli.bundle import DEFAULT_BUNDLE, read_manifest_unchecked, write_manifest
from emocli.corpus.layouts import load_corpus
from emocli.train.data import heldout_part


def face_parts(data: Path, bundle: Path) -> dict[str, list[Path]]:
    from emocli.train.calibration import face_sets, rafdb_halves

    meta = json.loads((bundle / "face.json").read_text())
    items, _, ho = heldout_part(data / "fer2013" / "train", meta)
    held = set(int(i) for i in ho)
    sets = face_sets(data)
    rafdb_halves(sets, {"rafdb-heldout": {}})
    experts = json.loads((bundle / "experts.json").read_text())
    head_sets = ["affectnet-train", "sfew-train"] + (["rafdb-train"] if "rafdb-train" in json.dumps(experts) else [])
    return {
        "face.emo-cnn": [it.path for i, it in enumerate(items) if i not in held],
        "face.emo-cnn-holdout": [items[i].path for i in sorted(held)],
        "face.calibration": [p for name in ("affectnet-calib", "sfew-calib", "rafdb-calib") for p in sets[name][0]],
        "face.head": [p for name in head_sets for p in sets[name][0]],
        "face.rafdb-expert": [it.path for it in load_corpus(data / "rafdb" / "train")],
    }


def voice_parts(data: Path, bundle: Path) -> dict[str, list[Path]]:
    meta = json.loads((bundle / "voice.json").read_text())
    trained = meta["trained_on"]
    speakers = set(trained["speakers"])
    clips = []
    for folder, layout in trained["corpora"].items():
        root = data / Path(folder).name
        clips += [it.path for it in load_corpus(root, layout) if it.speaker in speakers]
    if len(clips) != int(trained["n_clips"]):
        raise SystemExit(f"rebuilt {len(clips)} training clips, voice.json says {trained['n_clips']}: "
                         "another copy of the corpora?")
    return {"voice.svm": clips}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="../shared/data")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    parts = {**face_parts(args.data, args.bundle), **voice_parts(args.data, args.bundle)}
    for name, paths in parts.items():
        print(f"{name}: {len(paths)} files ({fp.PARTS[name]})")
    if not args.write:
        return
    counts = fp.write(args.bundle, parts, replace=("face", "voice"))
    manifest = read_manifest_unchecked(args.bundle)
    write_manifest(args.bundle, labels=manifest["labels"])
    size = (args.bundle / fp.FINGERPRINTS_FILE).stat().st_size
    print(f"wrote {args.bundle / fp.FINGERPRINTS_FILE} ({size / 1e6:.2f} MB): {counts}; manifest rewritten")


if __name__ == "__main__":
    main()
