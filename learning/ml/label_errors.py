"""Likely label errors: out-of-fold probabilities from the fast head, ranked by cleanlab's find_label_issues.

Plain Python, no Django. Each labeled document is scored by a head that never saw its label (k-fold on the
cached embeddings), so a confident disagreement with the given label is evidence against the label, not
the model remembering it. cleanlab (confident learning) then picks and orders the likely errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

FOLDS = 5


def _default_head() -> LogisticRegression:
    # The same kind of head as Classifier.fit_head: a logistic regression on frozen sentence embeddings.
    return LogisticRegression(max_iter=1000, C=1.0)


def out_of_fold_probabilities(
    embeddings: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    *,
    multi_label: bool = False,
    folds: int = FOLDS,
    seed: int = 0,
    make_head: Callable[[], LogisticRegression] = _default_head,
) -> np.ndarray:
    """(n, n_classes) probabilities, each row from a head trained on the other folds.

    `targets` are class indices (single-label) or an (n, n_classes) 0/1 matrix (multi-label: one binary
    head per label). A class missing from a fold's training part gets probability 0 there.
    """
    n = len(embeddings)
    out = np.zeros((n, n_classes), dtype=np.float64)
    if multi_label:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed).split(embeddings)
    else:
        counts = np.bincount(targets, minlength=n_classes)
        stratify = counts[counts > 0].min() >= folds
        kind = StratifiedKFold if stratify else KFold
        splitter = kind(n_splits=folds, shuffle=True, random_state=seed).split(embeddings, targets)
    for train, test in splitter:
        if multi_label:
            for j in range(n_classes):
                column = targets[train, j]
                if column.min() == column.max():
                    out[test, j] = float(column[0])
                    continue
                head = make_head().fit(embeddings[train], column)
                out[test, j] = head.predict_proba(embeddings[test])[:, 1]
        else:
            present = np.unique(targets[train])
            if len(present) == 1:
                out[test, present[0]] = 1.0
                continue
            head = make_head().fit(embeddings[train], targets[train])
            out[np.ix_(test, head.classes_)] = head.predict_proba(embeddings[test])
    return out


@dataclass(frozen=True)
class LabelIssue:
    index: int  # row in the input
    given: list[int]  # the label(s) as given
    suggested: list[int]  # what the out-of-fold model believes
    self_confidence: float  # the model's probability of the given label(s): lower is more suspicious


# n_jobs=1 everywhere: cleanlab otherwise forks a process pool, which deadlocks in a process that has
# already started torch's threads (a web process, a worker, the test run).
def rank_label_issues(
    targets: np.ndarray | list[list[int]], probabilities: np.ndarray, *, multi_label: bool = False
) -> list[LabelIssue]:
    """Likely label errors, most likely first (cleanlab's find_label_issues ranked by self-confidence).

    n_jobs=1: cleanlab's default process pool forks, and a fork of a process that runs threads (a web server,
    a Celery worker, pytest with a database) can hang forever; one process is fast enough at this size.
    """
    if multi_label:
        given_lists = [list(np.flatnonzero(row)) for row in np.asarray(targets)]
        indices = find_label_issues(
            labels=given_lists,
            pred_probs=probabilities,
            multi_label=True,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        )
        issues = []
        for i in indices:
            given = given_lists[i]
            suggested = [int(j) for j in np.flatnonzero(probabilities[i] >= 0.5)] or [int(np.argmax(probabilities[i]))]
            confidence = float(np.mean([probabilities[i][j] for j in given])) if given else 0.0
            issues.append(LabelIssue(int(i), [int(g) for g in given], suggested, confidence))
        return issues
    targets = np.asarray(targets)
    indices = find_label_issues(
        labels=targets, pred_probs=probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    return [
        LabelIssue(int(i), [int(targets[i])], [int(np.argmax(probabilities[i]))], float(probabilities[i][targets[i]]))
        for i in indices
    ]


def precision_recall_at_k(ranked: list[int], flipped: set[int], k: int) -> tuple[float, float]:
    """Share of the top k that are truly flipped, and share of the flipped found in the top k."""
    top = ranked[:k]
    hits = sum(1 for i in top if i in flipped)
    return hits / max(len(top), 1), hits / max(len(flipped), 1)
