"""Train / held-out splits: whole speakers (or clips) on one side, classes held out in proportion.

Every split emo makes is written here once. ``speaker_folds`` chooses the voice model's C and
gamma; scikit-learn's ``GroupKFold`` would give other folds (it deals the largest speakers
first, without a shuffle), which would change the shipped voice model's selection, so emo
keeps its own. Likewise ``grouped_holdout`` and ``stratified_holdout`` keep the held-out parts
that bundles already record by their seed (``heldout_part`` rebuilds them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocli.errors import DatasetError, ModelError


def speaker_folds(groups: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split sample indices into folds of whole speakers, speakers shuffled by ``rng``.

    Speakers are dealt in random order, each to the fold with the fewest samples so far, so
    folds hold similar numbers of clips and every shuffle gives other folds.

    Returns
    -------
    list of (train indices, validation indices), one pair per fold (at most one fold per speaker)

    Raises
    ------
    ModelError
        With fewer than two speakers.
    """
    speakers, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(speakers) < 2:
        raise ModelError(f"speaker-grouped validation needs at least 2 speakers, got {len(speakers)}; "
                         "add recordings of more speakers")
    n_folds = min(n_folds, len(speakers))
    order = rng.permutation(len(speakers))
    fold_of = np.empty(len(speakers), int)
    sizes = np.zeros(n_folds, int)
    for s in order:
        f = int(np.argmin(sizes))
        fold_of[s] = f
        sizes[f] += counts[s]
    sample_fold = fold_of[inverse]
    idx = np.arange(len(groups))
    return [(idx[sample_fold != f], idx[sample_fold == f]) for f in range(n_folds)]


def group_folds(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One fold per group (e.g. per corpus: leave one corpus out), in order of first appearance:
    (train indices, validation indices) pairs."""
    groups = np.asarray(groups)
    idx = np.arange(len(groups))
    return [(idx[groups != g], idx[groups == g]) for g in dict.fromkeys(groups.tolist())]


def grouped_holdout(groups: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out): ``share`` of the groups (clips or speakers), chosen with ``seed``,
    held out whole; at least one group when there are two or more."""
    rng = np.random.default_rng(seed)
    uniq = rng.permutation(np.unique(groups))
    k = max(1, int(round(share * len(uniq)))) if len(uniq) > 1 else 0
    hold = np.isin(groups, uniq[:k])
    return np.flatnonzero(~hold), np.flatnonzero(hold)


def stratified_holdout(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) with ``share`` of every class held out (at least one item of a class
    that has two or more)."""
    rng = np.random.default_rng(seed)
    train_idx, hold_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(share * len(idx)))) if len(idx) > 1 else 0
        hold_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(hold_idx))


def split_of(item) -> str | None:
    """The split of a corpus Item or of an extracted item (a dict)."""
    return item.get("split") if isinstance(item, dict) else item.split


def items_of_split(items: list, split: str | None, *, where: Path | str = "") -> list:
    """The items of one split (case-insensitive); all of them when ``split`` is None. The one split
    picker of ``emo evaluate``, ``emo extract`` and the training commands.

    Raises
    ------
    DatasetError
        No item is in ``split`` (the message lists the splits there are).
    """
    if split is None:
        return list(items)
    keep = [it for it in items if (split_of(it) or "").lower() == split.lower()]
    if not keep:
        have = sorted({sp for sp in (split_of(it) for it in items) if sp})
        raise DatasetError(f"{str(where) + ': ' if str(where) else ''}no items in split {split!r}; the corpus has "
                           f"splits: {', '.join(have) or '(none)'}")
    return keep
