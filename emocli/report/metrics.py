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
    import warnings

    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    n = len(labels)
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    idx = np.arange(n)
    cm = confusion_matrix(y_true, y_pred, labels=idx) if len(y_true) else np.zeros((n, n), np.int64)
    support = cm.sum(1)
    tp = np.diag(cm).astype(float)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    total = int(cm.sum())
    if total:
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": they are left out, as meant
            warnings.simplefilter("ignore", UserWarning)
            uar = float(balanced_accuracy_score(y_true, y_pred))
        macro_f1 = float(f1_score(y_true, y_pred, labels=idx[support > 0], average="macro", zero_division=0))
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
