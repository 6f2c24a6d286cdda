"""Turns labels as people write them (names, lists of names) into the arrays the models train on.

One place for this keeps the classifier, the metrics and the simulation agreeing on label order.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from learning.ml.exceptions import UnknownLabel

SingleTargets = Sequence[str] | np.ndarray
MultiTargets = Sequence[Sequence[str]] | np.ndarray


def to_indices(y: SingleTargets, labels: Sequence[str]) -> np.ndarray:
    """Single-label targets as int indices into `labels`; accepts names or an int array already."""
    if isinstance(y, np.ndarray) and y.dtype.kind in "iu":
        _check_range(y, len(labels))
        return y.astype(np.int64, copy=False)
    position = {label: i for i, label in enumerate(labels)}
    out = np.empty(len(y), dtype=np.int64)
    for row, name in enumerate(y):
        if name not in position:
            raise UnknownLabel(f"'{name}' is not a label of this taxonomy ({', '.join(labels)})")
        out[row] = position[name]
    return out


def to_indicator(y: MultiTargets, labels: Sequence[str]) -> np.ndarray:
    """Multi-label targets as an (n, n_labels) 0/1 matrix; accepts lists of names or a matrix already."""
    if isinstance(y, np.ndarray) and y.ndim == 2:
        if y.shape[1] != len(labels):
            raise UnknownLabel(f"targets have {y.shape[1]} columns but the taxonomy has {len(labels)} labels")
        return (y > 0).astype(np.int64)
    position = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(y), len(labels)), dtype=np.int64)
    for row, names in enumerate(y):
        if isinstance(names, str):
            names = [names]
        for name in names:
            if name not in position:
                raise UnknownLabel(f"'{name}' is not a label of this taxonomy ({', '.join(labels)})")
            out[row, position[name]] = 1
    return out


def encode_targets(y: Any, labels: Sequence[str], multi_label: bool) -> np.ndarray:
    """Targets for either kind of task: indices (single-label) or an indicator matrix (multi-label)."""
    return to_indicator(y, labels) if multi_label else to_indices(y, labels)


def _check_range(y: np.ndarray, n_labels: int) -> None:
    if y.size and (y.min() < 0 or y.max() >= n_labels):
        raise UnknownLabel(f"label indices must lie in 0..{n_labels - 1}")
