"""Agreement statistics equal values computed by hand on small fixtures (no database)."""

import pytest

from annotation.agreement import (
    against_consensus,
    binary_units,
    cohen_kappa,
    estimate,
    krippendorff_alpha,
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
    result = estimate(lambda items: 1.0, [1, 2, 3], min_units=10)
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
