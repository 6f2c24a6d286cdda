"""Likely label errors: out-of-fold probabilities ranked by cleanlab find injected flips far better than chance."""

import numpy as np
import pytest

from learning.ml.label_errors import out_of_fold_probabilities, precision_recall_at_k, rank_label_issues


def blobs(n_per_class=120, n_classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(n_classes, dim))
    x = np.concatenate([centers[c] + rng.normal(0, 1.5, size=(n_per_class, dim)) for c in range(n_classes)])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x, y, rng


def flip(y, n_classes, rate, rng):
    noisy = y.copy()
    flipped = rng.choice(len(y), size=round(rate * len(y)), replace=False)
    for i in flipped:
        noisy[i] = rng.choice([c for c in range(n_classes) if c != y[i]])
    return noisy, {int(i) for i in flipped}


def test_ranking_finds_injected_flips_far_better_than_random():
    x, y, rng = blobs()
    noisy, flipped = flip(y, 4, 0.10, rng)
    probabilities = out_of_fold_probabilities(x, noisy, 4)
    ranked = [issue.index for issue in rank_label_issues(noisy, probabilities)]
    k = len(flipped)
    precision, recall = precision_recall_at_k(ranked, flipped, k)
    random_precision, _ = precision_recall_at_k(list(rng.permutation(len(y))), flipped, k)
    assert precision >= 0.7
    assert recall >= 0.7
    assert precision > 3 * max(random_precision, 0.1)


def test_out_of_fold_probabilities_never_come_from_a_head_that_saw_the_row():
    x, y, rng = blobs(n_per_class=40, n_classes=2)
    noisy = y.copy()
    noisy[0] = 1 - y[0]  # one wrong label: an in-sample head might learn it, an out-of-fold one cannot
    probabilities = out_of_fold_probabilities(x, noisy, 2)
    assert probabilities.shape == (80, 2)
    assert probabilities[0, y[0]] > 0.5
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_multi_label_flips_are_ranked_first():
    x, y, rng = blobs(n_per_class=100, n_classes=3)
    targets = np.eye(3, dtype=np.int64)[y]
    noisy = targets.copy()
    flipped = rng.choice(len(y), size=30, replace=False)
    for i in flipped:
        noisy[i] = np.roll(noisy[i], 1)
    probabilities = out_of_fold_probabilities(x, noisy, 3, multi_label=True)
    ranked = [issue.index for issue in rank_label_issues(noisy, probabilities, multi_label=True)]
    precision, _ = precision_recall_at_k(ranked, {int(i) for i in flipped}, 30)
    assert precision >= 0.6


@pytest.mark.parametrize("k, expected", [(2, (0.5, 0.5)), (4, (0.5, 1.0))])
def test_precision_and_recall_at_k(k, expected):
    assert precision_recall_at_k([3, 9, 4, 1], {3, 1}, k) == expected
