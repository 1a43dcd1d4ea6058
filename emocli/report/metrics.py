"""Classification metrics emo reports: accuracy, UAR, macro-F1, recall, confusion matrix.

Training (face held-out parts, the voice model's speaker folds, held-out speakers), ``emo
evaluate`` and the scripts all score predictions here, so a figure means the same everywhere.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str], *,
                          absent: float | None = 0.0) -> dict[str, Any]:
    """Metrics for integer class indices into ``labels``.

    ``confusion`` has rows = true class, columns = predicted class, in ``labels`` order
    (scikit-learn's ``confusion_matrix``). UAR (unweighted average recall, scikit-learn's
    ``balanced_accuracy_score``) and macro-F1 average over the classes present in ``y_true``;
    ``absent`` is the recall given to a class with no true items (``None``: JSON null, as
    ``emo evaluate`` and the voice model's validation report it). With no items at all,
    accuracy, UAR and macro-F1 are 0.
    """
    n = len(labels)
    y_true, y_pred = np.asarray(y_true, int).ravel(), np.asarray(y_pred, int).ravel()
    # numpy, not scikit-learn's metrics: the same figures (tests/runners/test_evaluate.py compares them),
    # without their argument checks, which cost 25 ms a call and train-head's grid makes hundreds
    in_t, in_p = (y_true >= 0) & (y_true < n), (y_pred >= 0) & (y_pred < n)  # indices into ``labels``
    known = in_t & in_p
    cm = np.bincount(y_true[known] * n + y_pred[known], minlength=n * n).reshape(n, n)
    support = cm.sum(1)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    total = int(cm.sum())
    if total:
        # over every item (a prediction outside ``labels`` is a miss), as scikit-learn counts them
        true_n = np.bincount(y_true[in_t], minlength=n)
        present = true_n > 0
        hits = np.bincount(y_true[in_t & (y_true == y_pred)], minlength=n)[present]
        uar = float(np.mean(hits / true_n[present]))  # mean recall over the classes y_true holds
        f1_denom = (true_n + np.bincount(y_pred[in_p], minlength=n))[present]  # 2 tp + fp + fn
        macro_f1 = float(np.mean(2 * hits / f1_denom))
    else:
        uar = macro_f1 = 0.0
    return {
        "n": total,
        "labels": list(labels),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "uar": uar,
        "macro_f1": macro_f1,
        "recall": {lab: (float(r) if s else absent) for lab, r, s in zip(labels, recall, support)},
        "support": {lab: int(s) for lab, s in zip(labels, support)},
        "confusion": cm.tolist(),
    }


# A modality whose predictions put more than this share of the items in one emotion, and at least
# twice that emotion's share of the truth, has a sink (issue 30: the voice model on corpora unlike its
# training ones called 76-85% of RAVDESS's clips anger).
SINK_SHARE = 0.35
# predict has no truth: a run of at least RUN_SINK_MIN voiced clips of which more than RUN_SINK_SHARE
# get one voice emotion gets a note (natural speech is often mostly neutral, so the bar is higher)
RUN_SINK_MIN, RUN_SINK_SHARE = 20, 0.5


def largest_prediction(report: dict[str, Any]) -> dict[str, Any] | None:
    """The emotion a :func:`classification_report` predicts most: its label, its share of the
    predictions and its share of the truth (None without predictions)."""
    cm = np.asarray(report["confusion"])
    if not cm.sum():
        return None
    k = int(cm.sum(0).argmax())
    return {"label": report["labels"][k], "share": float(cm[:, k].sum() / cm.sum()),
            "true_share": float(cm[k].sum() / cm.sum())}


def is_sink(largest: dict[str, Any] | None) -> bool:
    """Whether :func:`largest_prediction`'s emotion is a sink (see :data:`SINK_SHARE`)."""
    return largest is not None and largest["share"] > max(SINK_SHARE, 2 * largest["true_share"])


def run_sink(voice_labels: Sequence[str]) -> tuple[str, int, int] | None:
    """(emotion, clips, of) when a run's voice labels crowd into one emotion (see :data:`RUN_SINK_SHARE`)."""
    if len(voice_labels) < RUN_SINK_MIN:
        return None
    labels, counts = np.unique(np.asarray(voice_labels, dtype=str), return_counts=True)
    k = int(counts.argmax())
    return (str(labels[k]), int(counts[k]), len(voice_labels)) if counts[k] > RUN_SINK_SHARE * len(voice_labels) else None
