"""Inter-reviewer agreement: observed agreement, Cohen's kappa, Krippendorff's alpha, with bootstrap intervals.

Plain Python and numpy, no Django: the dashboard feeds it units read from the database, the tests feed it
hand-computed fixtures. A *unit* is one document that several reviewers labeled: a mapping reviewer ->
value. Values are label keys for single-label projects; for multi-label projects each label is measured
on its own as a binary variable (1 = the reviewer gave the label).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import combinations

import krippendorff
import numpy as np
from scipy import sparse

Unit = dict[Hashable, Hashable]
"""One document: reviewer -> value."""

MIN_UNITS = 10
"""Fewer overlapped documents than this give intervals too wide to act on; figures are withheld."""


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap interval and the number of documents it rests on."""

    value: float | None
    low: float | None
    high: float | None
    n_units: int
    note: str = ""

    @property
    def enough(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict:
        return asdict(self)


def _pairable(units: Sequence[Unit]) -> list[Unit]:
    return [u for u in units if len(u) >= 2]


def observed_agreement(units: Sequence[Unit]) -> float:
    """Share of agreeing reviewer pairs within documents, every document weighted equally."""
    per_unit = []
    for unit in _pairable(units):
        values = list(unit.values())
        pairs = list(combinations(values, 2))
        per_unit.append(sum(a == b for a, b in pairs) / len(pairs))
    if not per_unit:
        raise ValueError("no document has two or more reviewers")
    return float(np.mean(per_unit))


def pair_shares(units: Sequence[Unit]) -> np.ndarray:
    """Each pairable document's share of agreeing reviewer pairs (what `observed_agreement` averages),
    from value counts: sum of n_c(n_c - 1) over m(m - 1) for a document with m values, n_c of them c."""
    totals = _value_counts(_pairable(units))
    m = totals.sum(axis=1)
    return (totals * (totals - 1)).sum(axis=1) / np.maximum(m * (m - 1), 1)


def _value_counts(units: Sequence[Unit]) -> np.ndarray:
    """documents x values: how many reviewers gave each value to each document."""
    index = {v: i for i, v in enumerate(sorted({v for u in units for v in u.values()}, key=str))}
    totals = np.zeros((len(units), len(index)))
    for row, unit in enumerate(units):
        for value in unit.values():
            totals[row, index[value]] += 1
    return totals


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two reviewers over the same documents (nominal values)."""
    if len(first) != len(second) or not first:
        raise ValueError("kappa needs two equally long, non-empty sequences")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[v] * count_b[v] for v in set(count_a) | set(count_b)) / (n * n)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Sequence[Unit]) -> float:
    """Krippendorff's alpha (nominal) over documents with any number of reviewers, missing values allowed."""
    units = _pairable(units)
    if not units:
        raise ValueError("no document has two or more reviewers")
    coders = sorted({c for u in units for c in u}, key=str)
    values = sorted({v for u in units for v in u.values()}, key=str)
    if len(values) == 1:
        return 1.0  # everyone always gave the same value: perfect, though uninformative, agreement
    index = {v: i for i, v in enumerate(values)}
    data = np.full((len(coders), len(units)), np.nan)
    for j, unit in enumerate(units):
        for i, coder in enumerate(coders):
            if coder in unit:
                data[i, j] = index[unit[coder]]
    return float(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=list(range(len(values))))
    )


RESAMPLES = 500
BLOCK_CELLS = 2_000_000
"""Resample counts are drawn in blocks of at most this many cells (resamples x documents), bounding memory."""


@dataclass(frozen=True)
class Additive:
    """A statistic computed from sums over documents, which is what makes its bootstrap cheap.

    `columns` holds one row per document (sparse, documents x d); `combine` turns column sums (r x d, one row
    per resample) into the statistic (r values, NaN where it is undefined). A bootstrap resample is then one
    sparse-dense product of the documents' columns with how often each document was drawn: 500 resamples of
    thousands of documents take milliseconds, where recomputing the statistic per resample took seconds.
    """

    columns: sparse.csr_matrix
    combine: Callable[[np.ndarray], np.ndarray]

    @property
    def n_units(self) -> int:
        return self.columns.shape[0]

    def value(self) -> float:
        return float(self.combine(np.asarray(self.columns.sum(axis=0)))[0])

    def interval(
        self, *, resamples: int = RESAMPLES, confidence: float = 0.95, seed: int = 0
    ) -> tuple[float | None, float | None]:
        """Percentile interval over documents resampled with replacement; undefined resamples are skipped."""
        values = [
            self.combine(np.asarray((self.columns.T @ counts.T).T))
            for counts in _resample_counts(self.n_units, resamples, seed)
        ]
        results = np.concatenate(values)
        results = results[~np.isnan(results)]
        if not results.size:
            return None, None
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(results, [tail, 100 - tail])
        return float(low), float(high)


@lru_cache(maxsize=2)
def _resample_counts(n: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """How often each of n documents is drawn in each resample, in blocks of at most BLOCK_CELLS cells.

    Every statistic over the same documents (overall, each label, each reviewer) resamples them the same way,
    so the draws are made once per page and shared.
    """
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_CELLS // max(n, 1))
    blocks = []
    for first in range(0, resamples, block):
        size = min(block, resamples - first)
        drawn = rng.integers(0, n, (size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float32)
        counts.flags.writeable = False
        blocks.append(counts)
    return tuple(blocks)


def _columns(*blocks: np.ndarray) -> sparse.csr_matrix:
    return sparse.csr_matrix(np.column_stack([b if b.ndim == 2 else b[:, None] for b in blocks]).astype(np.float64))


def _one_hot(values: Sequence[Hashable], index: dict[Hashable, int]) -> np.ndarray:
    matrix = np.zeros((len(values), len(index)))
    matrix[np.arange(len(values)), [index[v] for v in values]] = 1.0
    return matrix


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def mean_statistic(values: Sequence[float]) -> Additive:
    """The mean of one number per document (a share of agreeing pairs, a hit or miss)."""
    values = np.asarray(values, dtype=np.float64)
    return Additive(_columns(values, np.ones(len(values))), lambda s: _divide(s[:, 0], s[:, 1]))


def kappa_statistic(first: Sequence[Hashable], second: Sequence[Hashable]) -> Additive:
    """Cohen's kappa from sums: agreeing documents, each reviewer's value counts and the number of documents."""
    index = {v: i for i, v in enumerate(sorted(set(first) | set(second), key=str))}
    k = len(index)
    equal = np.array([a == b for a, b in zip(first, second, strict=True)], dtype=np.float64)
    columns = _columns(equal, _one_hot(first, index), _one_hot(second, index), np.ones(len(equal)))

    def combine(s: np.ndarray) -> np.ndarray:
        n = s[:, -1]
        observed = _divide(s[:, 0], n)
        expected = _divide((s[:, 1 : 1 + k] * s[:, 1 + k : 1 + 2 * k]).sum(axis=1), n * n)
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = (observed - expected) / (1 - expected)
        return np.where(expected >= 1.0, np.where(observed >= 1.0, 1.0, 0.0), kappa)

    return Additive(columns, combine)


def alpha_statistic(units: Sequence[Unit]) -> Additive:
    """Krippendorff's alpha (nominal) from each document's coincidences: the same figure as
    `krippendorff_alpha`, written as sums over documents so that it resamples as a matrix product.

    For a document with m values, n_c of them value c: it adds n_c(n_c - 1)/(m - 1) agreeing coincidences of
    value c, and n_c to the value's total. Alpha = 1 - (n - 1)(n - agreeing) / (n^2 - sum of totals squared).
    """
    totals = _value_counts(_pairable(units))
    m = totals.sum(axis=1, keepdims=True)
    agreeing = totals * (totals - 1) / np.maximum(m - 1, 1)
    k = totals.shape[1]

    def combine(s: np.ndarray) -> np.ndarray:
        agree, per_value = s[:, :k].sum(axis=1), s[:, k:]
        n = per_value.sum(axis=1)
        denominator = n * n - (per_value**2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1 - (n - 1) * (n - agree) / denominator
        # One value only (everyone always agreed): perfect, though uninformative, agreement, as krippendorff_alpha.
        return np.where(n < 2, np.nan, np.where(denominator > 0, alpha, 1.0))

    return Additive(_columns(agreeing, totals), combine)


def estimate(
    statistic: Additive,
    *,
    exact: Callable[[], float] | None = None,
    min_units: int = MIN_UNITS,
    seed: int = 0,
) -> Estimate:
    """The statistic with its interval, or a note saying why it is withheld. `exact` computes the value
    another way (the krippendorff package for alpha); the interval always comes from the sums."""
    n = statistic.n_units
    if n < min_units:
        return Estimate(None, None, None, n, f"needs at least {min_units} overlapped documents, has {n}")
    low, high = statistic.interval(seed=seed)
    return Estimate(statistic.value() if exact is None else exact(), low, high, n)


def pairwise_kappa(units: Sequence[Unit], *, min_units: int = MIN_UNITS) -> dict[tuple, Estimate]:
    """Cohen's kappa for every pair of reviewers, over the documents both labeled."""
    coders = sorted({c for u in units for c in u}, key=str)
    result = {}
    for a, b in combinations(coders, 2):
        shared = [(u[a], u[b]) for u in units if a in u and b in u]
        result[(a, b)] = estimate(kappa_statistic([p[0] for p in shared], [p[1] for p in shared]), min_units=min_units)
    return result


def against_consensus(
    units: Sequence[Unit], consensus: Sequence[Hashable], *, min_units: int = MIN_UNITS
) -> dict[Hashable, Estimate]:
    """Each reviewer's agreement (share equal) with the documents' final labels."""
    coders = sorted({c for u in units for c in u}, key=str)
    return {
        coder: estimate(
            mean_statistic([u[coder] == final for u, final in zip(units, consensus, strict=True) if coder in u]),
            min_units=min_units,
        )
        for coder in coders
    }


def binary_units(units: Sequence[dict[Hashable, frozenset]], label: Hashable) -> list[Unit]:
    """Multi-label units (reviewer -> set of labels) as a binary variable for one label."""
    return [{coder: int(label in labels) for coder, labels in unit.items()} for unit in units]
