"""Held-out faces for the benchmarks: faces no shipped network or head trained on or chose by.

- AffectNet, SFEW and RAF-DB: the face head's test halves (``scripts/heldout_lists.py`` writes
  them as ``<corpus>-test.csv``; the calib halves chose the head's settings, so they are left out);
- FER2013: the 2,872 training faces that ``emo train-video`` held out of the shipped emo-cnn's
  training (rebuilt from face.json's share and seed).

Imported by the scripts beside it (``bench/`` is their folder, so ``import heldout_faces`` works
when they run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from emocli.bundle import DEFAULT_BUNDLE
from emocli.labels import LABELS

CORPORA = ("fer2013", "rafdb", "affectnet", "sfew")


def heldout_faces(data: Path, heldout: Path, *, halves: str = "test") -> list[tuple[Path, str, str]]:
    """(path, label, corpus) of every held-out face, in a fixed order.

    ``heldout``: the folder of ``scripts/heldout_lists.py``'s CSVs; ``data``: ../shared/data;
    ``halves``: "test" (for figures) or "calib" (for choices) of RAF-DB, AffectNet and SFEW. FER2013's
    held-out faces have no such halves: they are in both.
    """
    from emocli.train.data import heldout_part

    out: list[tuple[Path, str, str]] = []
    meta = json.loads((DEFAULT_BUNDLE / "face.json").read_text())
    items, y, ho = heldout_part(Path(data) / "fer2013" / "train", meta)
    out += [(Path(items[i].path), LABELS[int(y[i])], "fer2013") for i in ho]
    for corpus in CORPORA[1:]:
        path = Path(heldout) / f"{corpus}-{halves}.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run `python scripts/heldout_lists.py {data} --out {heldout}` first")
        with path.open() as fh:
            out += [(Path(r["path"]), r["label"], corpus) for r in csv.DictReader(fh)]
    return out


def sample(faces: list[tuple[Path, str, str]], per_label: int, *, seed: int = 0,
           corpora: tuple[str, ...] = CORPORA) -> list[tuple[Path, str, str]]:
    """``per_label`` faces of each emotion, spread over ``corpora`` in turn (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for label in LABELS:
        pools = {c: [f for f in faces if f[1] == label and f[2] == c] for c in corpora}
        for c in pools:
            rng.shuffle(pools[c])
        k = 0
        while len([f for f in out if f[1] == label]) < per_label and any(pools.values()):
            c = corpora[k % len(corpora)]
            if pools[c]:
                out.append(pools[c].pop())
            k += 1
    return out
