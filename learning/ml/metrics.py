"""Evaluation of a classifier on held-out labels, as a JSON-serialisable dict a training run can store.

Macro-F1 averages over the labels that occur in the evaluation set (or are predicted there): a label
with no held-out example has no F1 to speak of, and counting it as 0 would punish the model for the
size of the holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix, precision_recall_fscore_support

from learning.ml.targets import encode_targets


def evaluate(y_true: Any, y_pred: Any, labels: Sequence[str], multi_label: bool) -> dict[str, Any]:
    """Macro/micro F1, per-label precision/recall/F1/support and the confusion matrix.

    `y_true`/`y_pred` are label names (lists of names for multi-label) or index arrays / indicator
    matrices. Single-label: an n x n confusion matrix (rows true, columns predicted). Multi-label: a 2x2
    table per label.
    """
    labels = list(labels)
    true = encode_targets(y_true, labels, multi_label)
    pred = encode_targets(y_pred, labels, multi_label)
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true targets but {len(pred)} predictions")
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=indices, average=None, zero_division=0
    )
    if multi_label:
        predicted_count = pred.sum(axis=0)
    else:
        predicted_count = np.bincount(pred, minlength=len(labels))
    scored = (support > 0) | (predicted_count > 0)
    _, _, micro_f1, _ = precision_recall_fscore_support(true, pred, labels=indices, average="micro", zero_division=0)
    result: dict[str, Any] = {
        "n_documents": int(len(true)),
        "multi_label": multi_label,
        "macro_f1": float(f1[scored].mean()) if scored.any() else 0.0,
        "micro_f1": float(micro_f1),
        "accuracy": float(np.mean(np.all(true == pred, axis=1)) if multi_label else np.mean(true == pred)),
        "per_label": {
            label: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
            }
            for j, label in enumerate(labels)
        },
    }
    if multi_label:
        tables = multilabel_confusion_matrix(true, pred, labels=indices)
        result["confusion"] = {
            label: {
                "tn": int(table[0, 0]),
                "fp": int(table[0, 1]),
                "fn": int(table[1, 0]),
                "tp": int(table[1, 1]),
            }
            for label, table in zip(labels, tables, strict=True)
        }
    else:
        result["confusion"] = {
            "labels": labels,
            "matrix": confusion_matrix(true, pred, labels=indices).astype(int).tolist(),
        }
    return result


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, multi_label: bool) -> tuple[float, float]:
    """(macro, micro) F1 on encoded targets, the cheap form the simulation calls hundreds of times."""
    indices = list(range(n_labels))
    _, _, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=indices, average=None, zero_division=0)
    predicted_count = y_pred.sum(axis=0) if multi_label else np.bincount(y_pred, minlength=n_labels)
    scored = (support > 0) | (predicted_count > 0)
    _, _, micro, _ = precision_recall_fscore_support(y_true, y_pred, labels=indices, average="micro", zero_division=0)
    return (float(f1[scored].mean()) if scored.any() else 0.0), float(micro)
