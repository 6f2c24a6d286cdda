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
from itertools import combinations

import krippendorff
import numpy as np

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


def bootstrap(
    statistic: Callable[[Sequence], float],
    items: Sequence,
    *,
    resamples: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile interval of `statistic` over documents resampled with replacement.

    Resamples on which the statistic is undefined (e.g. only one value present) are skipped.
    """
    rng = np.random.default_rng(seed)
    n = len(items)
    results = []
    for _ in range(resamples):
        sample = [items[i] for i in rng.integers(0, n, n)]
        try:
            value = statistic(sample)
        except (ValueError, ZeroDivisionError):
            continue
        if not np.isnan(value):
            results.append(value)
    if not results:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(results, [tail, 100 - tail])
    return float(low), float(high)


def estimate(
    statistic: Callable[[Sequence], float], items: Sequence, *, min_units: int = MIN_UNITS, seed: int = 0
) -> Estimate:
    """The statistic with its interval, or a note saying why it is withheld."""
    n = len(items)
    if n < min_units:
        return Estimate(None, None, None, n, f"needs at least {min_units} overlapped documents, has {n}")
    value = statistic(items)
    low, high = bootstrap(statistic, items, seed=seed)
    return Estimate(value, low, high, n)


def pairwise_kappa(units: Sequence[Unit], *, min_units: int = MIN_UNITS) -> dict[tuple, Estimate]:
    """Cohen's kappa for every pair of reviewers, over the documents both labeled."""
    coders = sorted({c for u in units for c in u}, key=str)
    result = {}
    for a, b in combinations(coders, 2):
        shared = [(u[a], u[b]) for u in units if a in u and b in u]

        def kappa(pairs: Sequence[tuple]) -> float:
            return cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs])

        result[(a, b)] = estimate(kappa, shared, min_units=min_units)
    return result


def against_consensus(
    units: Sequence[Unit], consensus: Sequence[Hashable], *, min_units: int = MIN_UNITS
) -> dict[Hashable, Estimate]:
    """Each reviewer's agreement (share equal) with the documents' final labels."""
    coders = sorted({c for u in units for c in u}, key=str)
    result = {}
    for coder in coders:
        pairs = [(u[coder], final) for u, final in zip(units, consensus, strict=True) if coder in u]

        def accuracy(sample: Sequence[tuple]) -> float:
            return sum(a == b for a, b in sample) / len(sample)

        result[coder] = estimate(accuracy, pairs, min_units=min_units)
    return result


def binary_units(units: Sequence[dict[Hashable, frozenset]], label: Hashable) -> list[Unit]:
    """Multi-label units (reviewer -> set of labels) as a binary variable for one label."""
    return [{coder: int(label in labels) for coder, labels in unit.items()} for unit in units]
