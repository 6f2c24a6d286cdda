"""The SetFit adapter: the fast head on embeddings, a real (tiny) body fine-tune, and SetFit's own format."""

import json

import numpy as np
import pytest

from learning.ml.classifier import Classifier, TrainingArgs, base_body_id
from learning.ml.exceptions import ModelNotTrained, NotEnoughLabels, UnknownLabel
from tests.learning.ml.frozen import frozen_body

LABELS = ["collection", "sharing", "retention"]

TEXTS = [
    "We collect your email address when you register.",
    "We record your IP address and browser type.",
    "Information you give us, such as your name, is stored.",
    "We gather location data from your device.",
    "We share your data with advertising partners.",
    "Your information may be sold to third parties.",
    "We disclose personal data to our affiliates.",
    "Partners receive your purchase history.",
    "We keep your records for seven years.",
    "Data is deleted after thirty days.",
    "Logs are retained for twelve months.",
    "We store backups for one year before erasing them.",
]
SINGLE = ["collection"] * 4 + ["sharing"] * 4 + ["retention"] * 4


def clustered_embeddings(n_per_label: int = 10, dim: int = 16, seed: int = 0):
    """Three well-separated groups of points, one per label."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, dim))
    y = np.repeat(np.arange(3), n_per_label)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


@pytest.fixture(scope="module")
def frozen_classifier():
    """The fast-path tests only refit heads, so they share one body load."""
    return frozen_body().on_same_body(LABELS, multi_label=False)


@pytest.fixture(scope="module")
def frozen_multi_label_classifier(frozen_classifier):
    return frozen_classifier.on_same_body(LABELS, multi_label=True)


def test_fast_path_head_learns_separable_embeddings(frozen_classifier):
    embeddings, y = clustered_embeddings()
    names = [LABELS[i] for i in y]
    frozen_classifier.fit_head(embeddings, names)
    probabilities = frozen_classifier.predict_proba_embeddings(embeddings)
    assert probabilities.shape == (30, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert frozen_classifier.predict_embeddings(embeddings) == names


def test_single_label_columns_follow_label_order_even_with_a_label_never_seen(frozen_classifier):
    embeddings, y = clustered_embeddings()
    keep = y != 1  # no "sharing" example at all
    frozen_classifier.fit_head(embeddings[keep], y[keep])
    probabilities = frozen_classifier.predict_proba_embeddings(embeddings)
    assert probabilities.shape == (30, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[:, 1].max() < 1e-6
    assert probabilities[y == 2, 2].min() > 0.5


def test_multi_label_probabilities_are_independent_per_label(frozen_multi_label_classifier):
    embeddings, y = clustered_embeddings()
    targets = np.zeros((30, 3), dtype=int)
    targets[np.arange(30), y] = 1
    targets[y == 0, 2] = 1  # every "collection" document is also about retention
    frozen_multi_label_classifier.fit_head(embeddings, targets)
    probabilities = frozen_multi_label_classifier.predict_proba_embeddings(embeddings)
    assert probabilities.shape == (30, 3)
    assert not np.allclose(probabilities.sum(axis=1), 1.0)
    predicted = frozen_multi_label_classifier.predict_embeddings(embeddings)
    assert predicted[0] == ["collection", "retention"]
    assert predicted[-1] == ["retention"]


def test_cv_thresholds_are_folded_into_the_head(frozen_multi_label_classifier):
    embeddings, y = clustered_embeddings(n_per_label=12)
    targets = np.zeros((36, 3), dtype=int)
    targets[np.arange(36), y] = 1
    classifier = frozen_multi_label_classifier
    classifier.args = TrainingArgs(seed=3, threshold_rule="cv")
    try:
        classifier.fit_head(embeddings, targets)
    finally:
        classifier.args = TrainingArgs(seed=3)
    assert len(classifier.thresholds) == 3
    assert all(0.1 <= t <= 0.9 for t in classifier.thresholds)
    # The decision is probability >= 0.5 whatever the thresholds, because they live in the intercepts.
    predicted = classifier.predict_embeddings(embeddings)
    assert [labels for labels in predicted] == [[LABELS[i]] for i in y]


def test_auto_thresholds_stay_at_one_half_while_labels_are_few(frozen_multi_label_classifier):
    embeddings, y = clustered_embeddings(n_per_label=12)
    targets = np.zeros((36, 3), dtype=int)
    targets[np.arange(36), y] = 1
    frozen_multi_label_classifier.fit_head(embeddings, targets)
    assert frozen_multi_label_classifier.args.threshold_rule == "auto"
    assert frozen_multi_label_classifier.thresholds == [0.5, 0.5, 0.5]


def test_one_class_only_is_refused_with_a_human_message(frozen_classifier):
    embeddings, _ = clustered_embeddings()
    with pytest.raises(NotEnoughLabels, match="same label 'sharing'"):
        frozen_classifier.fit_head(embeddings[:6], ["sharing"] * 6)


def test_too_few_labelled_documents_are_refused(frozen_classifier):
    embeddings, _ = clustered_embeddings()
    with pytest.raises(NotEnoughLabels, match="at least"):
        frozen_classifier.fit_head(embeddings[:2], ["sharing", "retention"])


def test_multi_label_needs_some_label_that_varies(frozen_multi_label_classifier):
    embeddings, _ = clustered_embeddings()
    with pytest.raises(NotEnoughLabels, match="all labelled documents or on none"):
        frozen_multi_label_classifier.fit_head(embeddings[:6], [["sharing"]] * 6)


def test_unknown_label_names_are_refused(frozen_classifier):
    embeddings, _ = clustered_embeddings()
    with pytest.raises(UnknownLabel, match="'selling'"):
        frozen_classifier.fit_head(embeddings[:4], ["sharing", "selling", "retention", "sharing"])


def test_taxonomy_of_one_label_is_refused():
    with pytest.raises(NotEnoughLabels, match="at least two labels"):
        Classifier.create(["only"])


def test_untrained_classifier_cannot_predict(frozen_classifier):
    untrained = frozen_classifier.on_same_body(["yes", "no"], multi_label=False)
    with pytest.raises(ModelNotTrained):
        untrained.predict_proba_embeddings(np.zeros((1, 16)))


def test_a_classifier_on_the_same_body_shares_the_body_id(frozen_classifier):
    other = frozen_classifier.on_same_body(["a", "b", "c", "d"], multi_label=True)
    assert other.body_id == frozen_classifier.body_id
    assert other.setfit_model.model_body is frozen_classifier.setfit_model.model_body
    assert other.labels == ["a", "b", "c", "d"] and other.multi_label


def test_training_args_round_trip_through_a_dict():
    args = TrainingArgs(max_steps=7, seed=11, head_c=2.0, class_weight=None)
    assert TrainingArgs.from_dict(args.to_dict() | {"from_a_future_version": 1}) == args


def test_body_id_depends_on_the_base_model_only():
    assert base_body_id("/models/a") == base_body_id("/models/a")
    assert base_body_id("/models/a") != base_body_id("/models/b")


def test_fine_tuned_model_reloads_in_plain_setfit_and_predicts_the_same(tmp_path):
    """One real SetFit run: 3 body steps, save, load with SetFitModel alone, same probabilities."""
    from setfit import SetFitModel

    classifier = Classifier.create(LABELS, args=TrainingArgs(max_steps=3, num_iterations=2, batch_size=8, seed=5))
    frozen_id = classifier.body_id
    progress = []
    classifier.fit(TEXTS, SINGLE, progress_callback=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (3, 3)
    assert classifier.body_id != frozen_id  # the cache must not serve frozen-body embeddings any more
    before = classifier.predict_proba(TEXTS)
    assert np.allclose(before.sum(axis=1), 1.0)

    classifier.save(tmp_path / "model")
    outside = SetFitModel.from_pretrained(str(tmp_path / "model"))
    assert np.allclose(outside.predict_proba(TEXTS, as_numpy=True), before)
    assert list(outside.predict(TEXTS)) == classifier.predict(TEXTS)

    metadata = json.loads((tmp_path / "model" / "docket.json").read_text())
    assert metadata["labels"] == LABELS
    assert metadata["training_args"]["max_steps"] == 3
    assert metadata["fine_tunes"][0]["steps"] == 3

    reloaded = Classifier.load(tmp_path / "model")
    assert reloaded.body_id == classifier.body_id
    assert np.allclose(reloaded.predict_proba(TEXTS), before)
