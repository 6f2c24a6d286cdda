"""Agreement statistics equal values computed by hand on small fixtures (no database)."""

import numpy as np
import pytest

from quality import agreement
from quality.agreement import (
    against_consensus,
    alpha_statistic,
    binary_units,
    cohen_kappa,
    estimate,
    kappa_statistic,
    krippendorff_alpha,
    mean_statistic,
    observed_agreement,
    pairwise_kappa,
)


def classic_kappa_fixture():
    # 50 documents, two reviewers: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_cohen_kappa_matches_the_hand_computed_value():
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20) / 50^2 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    first, second = classic_kappa_fixture()
    assert cohen_kappa(first, second) == pytest.approx(0.4)


def test_kappa_is_one_for_identical_and_zero_for_chance_level_answers():
    assert cohen_kappa(list("abcab"), list("abcab")) == pytest.approx(1.0)
    assert cohen_kappa(list("aabb"), list("abab")) == pytest.approx(0.0)


def test_krippendorff_alpha_matches_the_hand_computed_value():
    # Units (a,a) (a,b) (b,b) (b,b): coincidences o_aa=2, o_ab=o_ba=1, o_bb=4; n_a=3, n_b=5, n=8.
    # D_o = 2/8 = 0.25; D_e = 2*3*5 / (8*7) = 30/56; alpha = 1 - 0.25 / (30/56) = 1 - 7/15 = 8/15.
    units = [{"r1": "a", "r2": "a"}, {"r1": "a", "r2": "b"}, {"r1": "b", "r2": "b"}, {"r1": "b", "r2": "b"}]
    assert krippendorff_alpha(units) == pytest.approx(8 / 15)


def test_krippendorff_alpha_handles_three_reviewers_with_missing_values():
    # Same coincidences as above, plus a unit with one value only (not pairable, ignored), reviewers differ.
    units = [
        {"r1": "a", "r2": "a"},
        {"r2": "a", "r3": "b"},
        {"r1": "b", "r3": "b"},
        {"r2": "b", "r3": "b"},
        {"r1": "a"},
    ]
    assert krippendorff_alpha(units) == pytest.approx(8 / 15)


def test_observed_agreement_weights_each_document_equally():
    units = [{"a": 1, "b": 1, "c": 0}, {"a": 0, "b": 0}]
    # first document: pairs (1,1) (1,0) (1,0) -> 1/3 agree; second: 1 -> mean 2/3
    assert observed_agreement(units) == pytest.approx(2 / 3)


def test_figures_are_withheld_below_the_minimum_and_say_why():
    result = estimate(mean_statistic([1.0, 1.0, 1.0]), min_units=10)
    assert not result.enough
    assert result.note == "needs at least 10 overlapped documents, has 3"


def test_estimate_has_an_interval_around_the_value():
    first, second = classic_kappa_fixture()
    units = [{"r1": a, "r2": b} for a, b in zip(first, second, strict=True)]
    ((key, kappa),) = pairwise_kappa(units).items()
    assert key == ("r1", "r2")
    assert kappa.value == pytest.approx(0.4)
    assert kappa.low < 0.4 < kappa.high
    assert kappa.n_units == 50


def test_each_reviewer_against_consensus():
    units = [{"r1": "a", "r2": "a"}] * 8 + [{"r1": "a", "r2": "b"}] * 2
    consensus = ["a"] * 10
    result = against_consensus(units, consensus)
    assert result["r1"].value == pytest.approx(1.0)
    assert result["r2"].value == pytest.approx(0.8)


def test_multi_label_units_become_one_binary_variable_per_label():
    units = [{"r1": frozenset({"x", "y"}), "r2": frozenset({"x"})}]
    assert binary_units(units, "x") == [{"r1": 1, "r2": 1}]
    assert binary_units(units, "y") == [{"r1": 1, "r2": 0}]


def random_units(seed: int, n: int = 200, coders: int = 4, values: str = "abc") -> list[dict]:
    rng = np.random.default_rng(seed)
    units = []
    for _ in range(n):
        chosen = rng.choice(coders, size=rng.integers(1, coders + 1), replace=False)
        # Reviewers agree more often than chance, as real ones do.
        truth = values[rng.integers(len(values))]
        units.append({f"r{c}": truth if rng.random() < 0.7 else values[rng.integers(len(values))] for c in chosen})
    return units


@pytest.mark.parametrize("seed", range(5))
def test_alpha_from_sums_equals_the_krippendorff_package(seed):
    units = random_units(seed)
    assert alpha_statistic(units).value() == pytest.approx(krippendorff_alpha(units))


def test_alpha_from_sums_on_the_hand_computed_fixture_and_a_single_value():
    units = [{"r1": "a", "r2": "a"}, {"r1": "a", "r2": "b"}, {"r1": "b", "r2": "b"}, {"r1": "b", "r2": "b"}]
    assert alpha_statistic(units).value() == pytest.approx(8 / 15)
    assert alpha_statistic([{"r1": "a", "r2": "a"}] * 3).value() == krippendorff_alpha([{"r1": "a", "r2": "a"}])


@pytest.mark.parametrize("seed", range(5))
def test_kappa_from_sums_equals_cohen_kappa(seed):
    rng = np.random.default_rng(seed)
    first = list(rng.choice(list("xyz"), 80))
    second = [a if rng.random() < 0.6 else rng.choice(list("xyz")) for a in first]
    assert kappa_statistic(first, second).value() == pytest.approx(cohen_kappa(first, second))
    assert kappa_statistic(list("aaa"), list("aaa")).value() == cohen_kappa(list("aaa"), list("aaa"))


def test_interval_is_reproducible_and_independent_of_the_block_size(monkeypatch):
    statistic = alpha_statistic(random_units(7, n=300))
    whole = statistic.interval(seed=3)
    assert whole == statistic.interval(seed=3)
    low, high = whole
    assert low < statistic.value() < high
    # Drawing resamples a few at a time (as for a project with very many documents) changes nothing but memory.
    monkeypatch.setattr(agreement, "BLOCK_CELLS", 300 * 7)
    agreement._resample_counts.cache_clear()
    assert len(agreement._resample_counts(300, 500, 3)) == 72  # blocks of 7 resamples
    assert statistic.interval(seed=3) == pytest.approx(whole)
    agreement._resample_counts.cache_clear()


def test_interval_narrows_with_more_documents():
    small = alpha_statistic(random_units(1, n=40)).interval()
    large = alpha_statistic(random_units(1, n=2000)).interval()
    assert (large[1] - large[0]) < (small[1] - small[0]) / 3


def test_mean_interval_matches_the_textbook_bootstrap_of_a_proportion():
    # 0.8 agreement over 400 documents: the normal approximation gives 0.8 +- 1.96 * sqrt(0.8 * 0.2 / 400).
    low, high = mean_statistic([1.0] * 320 + [0.0] * 80).interval(resamples=2000)
    assert low == pytest.approx(0.8 - 0.0392, abs=0.01)
    assert high == pytest.approx(0.8 + 0.0392, abs=0.01)


def test_no_overlapped_documents_withholds_every_figure():
    for statistic in (alpha_statistic([]), kappa_statistic([], []), mean_statistic([])):
        result = estimate(statistic)
        assert not result.enough
        assert result.n_units == 0


@pytest.mark.parametrize("seed", range(3))
def test_pair_shares_average_to_observed_agreement(seed):
    units = random_units(seed)
    assert float(np.mean(agreement.pair_shares(units))) == pytest.approx(observed_agreement(units))
