"""What the training commands read: the training and held-out parts of a corpus, the split names,
and face scores of stored or listed images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocli.choices import BALANCES
from emocli.corpus.layouts import image_folder, read_csv_rows
from emocli.corpus.splits import items_of_split, split_of, stratified_holdout
from emocli.errors import DatasetError, ModelError
from emocli.face.model import finish_inputs, prepare_faces
from emocli.files import sha256_file
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.runners.extract import SETTINGS, read_json_object


def holdout_seed_of(meta: dict) -> int:
    """The seed of a face bundle's held-out split, as recorded in its face.json."""
    seed = meta.get("holdout_seed")
    return int(meta.get("seed", 0) if seed is None else seed)


TRAIN_SPLITS = ("train", "training", "train_afew")  # split names a training command uses by default
# split names kept for measuring: training on them needs --allow-eval-split
EVAL_SPLITS = ("val", "valid", "validation", "val_afew", "dev", "test", "publictest", "privatetest")


def training_split(items: list, split: str | None, *, allow_eval_split: bool = False,
                   where: Path | str = "") -> tuple[list, str | None]:
    """The items a training command may use, and the split they come from.

    ``split`` None: the corpus's training split (``Train``/``training``) when its items have
    splits, every item when none has one. A split named like an evaluation split (Val, Test,
    PublicTest, ...) is refused unless ``allow_eval_split``: a model that saw the clips it is
    measured on reports nothing.

    Raises
    ------
    DatasetError
        No item in ``split``; splits but none named train (and no ``split``); an evaluation split
        without ``allow_eval_split``.
    """
    have = sorted({it_split for it_split in (split_of(it) for it in items) if it_split})
    if split is None:
        if not have:
            return items, None
        train = [sp for sp in have if sp.lower() in TRAIN_SPLITS]
        if not train:
            raise DatasetError(f"{where}: items come from splits {', '.join(have)}, none named Train; pass "
                               "--split NAME to choose the one to train on")
        split = train[0]
    if split.lower() in EVAL_SPLITS and not allow_eval_split:
        raise DatasetError(f"{where}: refusing to train on split {split!r}, which is for measuring (a model "
                           "evaluated on clips it was trained on reports nothing); pass --allow-eval-split "
                           "if that is what you want")
    return items_of_split(items, split, where=where), split


def training_images(data: Path) -> tuple[list, str | None]:
    """The images of ``data`` that ``emo train-video`` trains on, and a note saying which.

    All of them, or, when ``data`` holds split folders (train/val[/test]), those of its
    train (or training) split only; the note names the split used, None when there are none.
    """
    items = image_folder(data)
    splits = {it.split for it in items if it.split}
    if not splits:
        return items, None
    train_names = {sp for sp in splits if sp.lower() in TRAIN_SPLITS}
    if not train_names:
        raise DatasetError(f"{data}: holds split folders {sorted(splits)} but none named train; "
                           "pass the training folder itself")
    items = [it for it in items if it.split in train_names]
    return items, f"using split {', '.join(sorted(train_names))} only (of {', '.join(sorted(splits))})"


def read_exclude(path: Path) -> tuple[set[Path], str]:
    """The images an exclude file lists (resolved paths) and the file's sha256.

    One path per line, or a CSV whose first column is the path (a header row ``path,...`` and
    blank lines are skipped). Relative paths are resolved against the file's folder, as in a
    manifest.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, not UTF-8 text, or lists no path.
    """
    path = Path(path)
    fix = "pass a file listing image paths, one per line or as the first column of a CSV"
    rows = read_csv_rows(path, what="exclude list", fix=fix)
    cells = [row[0].strip() for row in rows if row and row[0].strip()]
    if cells and cells[0].lower() == "path":
        cells = cells[1:]
    if not cells:
        raise DatasetError(f"{path}: the exclude list names no file; {fix}")
    listed = set()
    for cell in cells:
        file = Path(cell).expanduser()
        listed.add((file if file.is_absolute() else path.parent / file).resolve())
    return listed, sha256_file(path)


def heldout_part(data: Path, meta: dict) -> tuple[list, np.ndarray, np.ndarray]:
    """Rebuild the images ``emo train-video`` held out of ``data`` for a face bundle.

    ``meta`` is the bundle's face.json (its held-out share and seed). Returns the training
    items, their integer labels and the held-out indices; a DatasetError when the rebuilt
    part does not have the size face.json records (another folder, or a --limit run).
    """
    items, _ = training_images(data)
    y = np.array([LABELS.index(it.label) for it in items])
    _, ho = stratified_holdout(y, float(meta.get("holdout", 0.1)), holdout_seed_of(meta))
    if len(ho) != int(meta.get("n_holdout", len(ho))):
        raise DatasetError(f"{data}: rebuilt {len(ho)} held-out images but face.json says {meta['n_holdout']}; "
                           "pass the folder the bundle was trained on")
    return items, y, ho


def stored_batches(x: np.ndarray, pre, size: int):
    """Network input, ``size`` faces at a time, of faces stored by :func:`~emocli.face.model.store_faces`."""
    for i in range(0, len(x), size):
        yield np.asarray(finish_inputs(x[i:i + size], pre))


def score_stored(model, x: np.ndarray, pre, *, chunk: int = 256, batch_size: int = 64,
                  views: str = "bundle") -> np.ndarray:
    """``model``'s scores of stored faces, turned into network input ``chunk`` faces at a time."""
    return np.concatenate([model.score_inputs(b, batch_size=batch_size, views=views)
                           for b in stored_batches(x, pre, chunk)])


def heldout_inputs(data: Path, meta: dict, pre, part=None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and network input (``pre`` without test-time views) of the images a face bundle
    held out of ``data`` (see :func:`heldout_part`; ``part``: its result, when already at hand)."""
    from dataclasses import replace

    items, y, ho = heldout_part(data, meta) if part is None else part
    x = prepare_faces([read_image(items[i].path) for i in ho], replace(pre, flip_tta=False, tta_zoom=0.0,
                                                                        tta_shift=0.0))
    return y[ho], x


def face_probabilities(model, paths, *, chunk: int = 512) -> np.ndarray:
    """``model``'s probabilities (n, 7) of face image files, read ``chunk`` at a time (memory stays flat)."""
    return np.concatenate([model.predict_proba([read_image(p) for p in paths[k:k + chunk]], batch_size=128)
                           for k in range(0, len(paths), chunk)])




def balance_weights(groups: np.ndarray, how: str = "none") -> np.ndarray:
    """Per-sample weights that even out ``groups`` (e.g. corpus x class), mean 1.

    ``none``: all 1. ``full``: 1 / size of the sample's group (every group weighs the same).
    ``sqrt``: 1 / sqrt(size), half-way: a rare class or a small corpus counts more without
    its few images being repeated as often as full balance would (less over-fitting).
    """
    if how not in BALANCES:
        raise ModelError(f"unknown balance {how!r}; use one of {', '.join(BALANCES)}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    power = {"none": 0.0, "sqrt": 0.5, "full": 1.0}[how]
    w = counts[inverse].astype(np.float64) ** -power
    return (w / w.mean()).astype(np.float32)


def trained_items(features: Path, split: str | None, items: list[dict]) -> dict:
    """What a bundle records of the extracted items it was trained on: ``evaluate`` warns when it
    scores one of them (ids are :func:`emocli.runners.extract.item_id`: the path below the corpus root)."""

    dataset = read_json_object(Path(features) / SETTINGS).get("dataset")
    return {"trained_split": split, "trained_dataset": dataset, "trained_items": sorted(d["id"] for d in items)}
