"""Classification metrics emo reports: accuracy, UAR, macro-F1, recall, confusion matrix."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Metrics for integer class indices into ``labels``.

    ``confusion`` has rows = true class, columns = predicted class, in ``labels`` order.
    UAR (unweighted average recall) and macro-F1 average over the classes present in ``y_true``.
    """
    n = len(labels)
    cm = np.zeros((n, n), np.int64)
    if len(y_true):
        np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0
    total = int(cm.sum())
    return {
        "n": total,
        "labels": list(labels),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "recall": {lab: float(r) for lab, r in zip(labels, recall)},
        "support": {lab: int(s) for lab, s in zip(labels, support)},
        "confusion": cm.tolist(),
    }
