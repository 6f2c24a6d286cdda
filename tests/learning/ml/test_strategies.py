"""Query strategies pick what their definition says, agree with modAL, and keep batches diverse."""

import numpy as np
import pytest
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)
from sklearn.linear_model import LogisticRegression

from learning.ml.exceptions import UnknownStrategy
from learning.ml.strategies import STRATEGIES, get_strategy, top_k

REQUIRED = ["least_confident", "margin", "entropy", "batch", "random"]


@pytest.fixture
def fitted_model_and_pool():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.argmax(X[:, :3], axis=1)
    model = LogisticRegression().fit(X[:30], y[:30])
    return model, X[30:]


def test_registry_holds_the_required_names():
    assert set(REQUIRED) <= set(STRATEGIES)
    for name in STRATEGIES:
        assert get_strategy(name).name == name


def test_unknown_strategy_name_is_a_domain_error():
    with pytest.raises(UnknownStrategy, match="choose one of"):
        get_strategy("clairvoyant")


def test_margin_picks_the_even_split_over_the_confident_row():
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    assert get_strategy("margin").select(probabilities, 1, rng=0).tolist() == [1]


def test_least_confident_picks_the_lowest_top_probability():
    probabilities = np.array([[0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1]])
    assert get_strategy("least_confident").select(probabilities, 1, rng=0).tolist() == [1]


def test_entropy_picks_the_flattest_distribution():
    probabilities = np.array([[0.5, 0.5, 0.0], [0.34, 0.33, 0.33], [0.98, 0.01, 0.01]])
    assert get_strategy("entropy").select(probabilities, 1, rng=0).tolist() == [1]


@pytest.mark.parametrize(
    ("name", "modal_measure", "to_score"),
    [
        ("least_confident", classifier_uncertainty, lambda measure: measure),
        ("margin", classifier_margin, lambda measure: 1 - measure),
        ("entropy", classifier_entropy, lambda measure: measure),
    ],
)
def test_single_label_scores_agree_with_modal(fitted_model_and_pool, name, modal_measure, to_score):
    model, pool = fitted_model_and_pool
    ours = get_strategy(name).scores(model.predict_proba(pool))
    assert np.allclose(ours, to_score(modal_measure(model, pool)))


@pytest.mark.parametrize(
    ("name", "modal_query"),
    [("least_confident", uncertainty_sampling), ("margin", margin_sampling), ("entropy", entropy_sampling)],
)
def test_single_label_selection_agrees_with_modal(fitted_model_and_pool, name, modal_query):
    model, pool = fitted_model_and_pool
    ours = get_strategy(name).select(model.predict_proba(pool), 5, rng=0)
    theirs, _ = modal_query(model, pool, n_instances=5)  # modAL returns (indices, utilities)
    assert set(ours.tolist()) == set(theirs.tolist())


def test_multi_label_least_confident_follows_the_label_nearest_one_half():
    probabilities = np.array([[0.95, 0.05, 0.52], [0.7, 0.3, 0.2], [0.99, 0.01, 0.0]])
    assert get_strategy("least_confident", multi_label=True).select(probabilities, 1, rng=0).tolist() == [0]


def test_multi_label_margin_and_entropy_prefer_rows_uncertain_on_many_labels():
    # Row 0 is unsure about one label only; row 1 is fairly unsure about all three.
    probabilities = np.array([[0.5, 0.0, 1.0], [0.35, 0.65, 0.4]])
    for name in ("margin", "entropy"):
        assert get_strategy(name, multi_label=True).select(probabilities, 1, rng=0).tolist() == [1]


def test_rare_margin_prefers_uncertainty_about_a_label_the_model_seldom_predicts():
    common = np.tile([0.9, 0.1], (8, 1))  # label 0 predicted for most of the pool, label 1 for none
    probabilities = np.vstack([common, [[0.5, 0.1], [0.9, 0.5]]])
    scores = get_strategy("rare_margin", multi_label=True).scores(probabilities)
    assert scores[9] > scores[8]  # unsure about the rare label beats unsure about the common one
    assert get_strategy("margin", multi_label=True).scores(probabilities)[8] == pytest.approx(
        get_strategy("margin", multi_label=True).scores(probabilities)[9]
    )


def test_scores_cover_the_whole_pool_in_one_pass():
    probabilities = np.random.default_rng(1).dirichlet(np.ones(4), size=1000)
    for name in STRATEGIES:
        scores = get_strategy(name).scores(probabilities, rng=0)
        assert scores.shape == (1000,)
        assert np.all(np.isfinite(scores))


def test_selection_returns_distinct_indices_and_caps_at_the_pool_size():
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(3), size=8)
    embeddings = rng.normal(size=(8, 5))
    for name in STRATEGIES:
        picked = get_strategy(name).select(probabilities, 20, embeddings=embeddings, rng=0)
        assert sorted(picked.tolist()) == list(range(8))


def test_random_is_reproducible_with_a_seed():
    probabilities = np.full((50, 2), 0.5)
    strategy = get_strategy("random")
    assert strategy.select(probabilities, 5, rng=7).tolist() == strategy.select(probabilities, 5, rng=7).tolist()


def test_ties_are_broken_at_random_not_by_position():
    scores = np.ones(100)
    firsts = {int(top_k(scores, 1, rng=seed)[0]) for seed in range(20)}
    assert len(firsts) > 5


def _duplicates_and_spread(rng):
    """Ten near-identical, most uncertain documents, then ten spread-out ones that are nearly as uncertain."""
    duplicates = np.ones((10, 8)) + rng.normal(scale=1e-3, size=(10, 8))
    spread = rng.normal(scale=3.0, size=(10, 8))
    embeddings = np.vstack([duplicates, spread])
    first = np.concatenate([np.full(10, 0.5), np.full(10, 0.6)])
    return embeddings, first


@pytest.mark.parametrize("name", ["batch", "diverse"])
def test_diverse_batches_avoid_near_duplicates_single_label(name):
    rng = np.random.default_rng(3)
    embeddings, first = _duplicates_and_spread(rng)
    probabilities = np.column_stack([first, 1 - first])
    labelled = rng.normal(scale=3.0, size=(5, 8))
    plain = get_strategy("least_confident").select(probabilities, 5, rng=0)
    assert np.all(plain < 10)  # plain uncertainty takes five copies of the same paragraph
    picked = get_strategy(name).select(probabilities, 5, embeddings=embeddings, labelled_embeddings=labelled, rng=0)
    assert len(set(picked.tolist())) == 5
    assert np.sum(picked < 10) <= 1


@pytest.mark.parametrize("name", ["batch", "diverse", "badge", "diverse_rare_uncertainty"])
def test_diverse_batches_avoid_near_duplicates_multi_label(name):
    rng = np.random.default_rng(4)
    embeddings, first = _duplicates_and_spread(rng)
    probabilities = np.column_stack([first, np.full(20, 0.05), np.full(20, 0.95)])
    picked = get_strategy(name, multi_label=True).select(probabilities, 5, embeddings=embeddings, rng=0)
    assert len(set(picked.tolist())) == 5
    assert np.sum(picked < 10) <= 1


def test_batch_strategy_needs_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        get_strategy("batch").select(np.full((3, 2), 0.5), 2)


def test_rare_labels_asks_for_a_likely_example_of_the_least_labelled_label():
    # Label 0 has ten labelled examples, label 1 only one: the likely label-1 document comes first.
    labelled = np.array([[1, 0]] * 10 + [[0, 1]])
    probabilities = np.array([[0.95, 0.05], [0.1, 0.8], [0.5, 0.5]])
    strategy = get_strategy("rare_labels", multi_label=True)
    assert strategy.select(probabilities, 1, rng=0, examples_per_label=labelled.sum(axis=0)).tolist() == [1]
    # Counted the other way round, the likely label-0 document wins.
    flipped = labelled[:, ::-1]
    assert strategy.select(probabilities, 1, rng=0, examples_per_label=flipped.sum(axis=0)).tolist() == [0]


def test_rare_labels_without_labelled_examples_weighs_by_predicted_prevalence():
    # The pool predicts label 0 almost everywhere, so a likely label-1 document is the rare one.
    probabilities = np.array([[0.9, 0.1]] * 8 + [[0.2, 0.7]])
    assert get_strategy("rare_labels", multi_label=True).select(probabilities, 1, rng=0).tolist() == [8]


def test_diverse_rare_spreads_its_batch_over_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]])
    embeddings = np.vstack([c + rng.normal(scale=0.1, size=(20, 2)) for c in centres])
    probabilities = np.full((60, 2), 0.6)
    picked = get_strategy("diverse_rare", multi_label=True).select(
        probabilities, 3, embeddings=embeddings, rng=0, examples_per_label=np.array([1, 1])
    )
    assert len(set(picked.tolist())) == 3
    assert {int(i) // 20 for i in picked} == {0, 1, 2}


def test_rare_uncertainty_prefers_a_borderline_call_on_the_least_labelled_label():
    # Document 0 is borderline on label 0 (ten examples), document 1 on label 1 (one example).
    labelled = np.array([[1, 0]] * 10 + [[0, 1]])
    probabilities = np.array([[0.5, 0.05], [0.05, 0.55]])
    strategy = get_strategy("rare_uncertainty", multi_label=True)
    assert strategy.select(probabilities, 1, rng=0, examples_per_label=labelled.sum(axis=0)).tolist() == [1]
    assert strategy.select(probabilities, 1, rng=0, examples_per_label=labelled[:, ::-1].sum(axis=0)).tolist() == [0]


def test_badge_starts_with_the_largest_gradient_and_never_repeats_a_document():
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(30, 4))
    probabilities = np.full((30, 3), 0.05)
    probabilities[7] = [0.5, 0.5, 0.5]  # the most uncertain document, and a long embedding
    embeddings[7] *= 10
    picked = get_strategy("badge", multi_label=True).select(probabilities, 6, embeddings=embeddings, rng=0)
    assert picked[0] == 7
    assert len(set(picked.tolist())) == 6


def test_badge_fills_its_batch_when_every_gradient_is_zero():
    probabilities = np.zeros((5, 2))  # a model certain of everything: no gradient anywhere
    picked = get_strategy("badge", multi_label=True).select(probabilities, 3, embeddings=np.ones((5, 4)), rng=0)
    assert sorted(set(picked.tolist())) == sorted(picked.tolist()) and len(picked) == 3
