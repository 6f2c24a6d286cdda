"""Training runs in this process on a tiny data set: fast and slow runs, the evaluation set, the pool's scores."""

import numpy as np
import pytest

from annotation.models import AnnotationLabel, Document, Label
from annotation.selectors import suggestion_for
from learning import services
from learning.ml.strategies import get_strategy, labelled_counts
from learning.models import (
    DESCRIPTIONS_VERSION,
    EmbeddingShard,
    EvaluationReservation,
    LearningState,
    QueuePriority,
    TrainingRun,
)
from learning.selectors import order_by_priority
from tests.learning.conftest import KEYS, LABELLED, build_labelled_project, label_document, make_document

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def train(project, kind="fast", **options) -> TrainingRun:
    run = services.training_run_request(project=project, kind=kind, trigger=TrainingRun.Trigger.LABELS, **options)
    return services.training_run_execute(run_id=run.pk)


def queued(project):
    return Document.objects.filter(project=project, status=Document.Status.QUEUED)


def test_fast_run_trains_activates_and_scores_every_queued_document(artifact_dir):
    project, _ = build_labelled_project()
    run = train(project)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert (version.number, version.status, version.kind) == (1, "active", "fast")
    assert version.label_keys == list(KEYS)
    assert [label["key"] for label in version.labels] == list(KEYS)
    assert version.train_label_count == 18
    assert version.artifact_dir.is_dir() and str(version.artifact_dir).startswith(str(artifact_dir))
    rows = QueuePriority.objects.filter(document__in=queued(project))
    assert rows.count() == queued(project).count() == 12
    for row in rows:
        assert row.model_version == 1
        assert list(row.label_probabilities()) == list(KEYS)
        assert sum(row.label_probabilities().values()) == pytest.approx(1.0, abs=1e-3)
    assert set(run.timings) >= {"read_labels", "embed_labeled", "fit_head", "save", "score_pool", "switch"}


@pytest.mark.parametrize(
    "strategy", ["diverse", "diverse_rare_uncertainty", "rare_margin", "entropy", "batch", "random"]
)
def test_every_project_strategy_orders_the_whole_queue(artifact_dir, strategy):
    project, _ = build_labelled_project(query_strategy=strategy)
    run = train(project)
    assert run.status == "succeeded", run.error
    ordered = list(order_by_priority(queued(project)).values_list("pk", flat=True))
    assert sorted(ordered) == sorted(queued(project).values_list("pk", flat=True))
    assert QueuePriority.objects.filter(document__in=queued(project), model_version=1).count() == 12


def test_rare_label_queue_is_the_simulations_order_for_the_same_labels(artifact_dir):
    # Six labelled examples of two labels, two of the third: the strategy that favours the least-labelled
    # labels must weigh by these counts, as the simulation does, not by what the model predicts in the pool.
    project, reviewer = build_labelled_project(
        per_label=2, query_strategy="diverse_rare_uncertainty", fast_retrain_every=1
    )
    for key in ("first_party", "third_party"):
        for text in LABELLED[key][2:]:
            label_document(make_document(project, text), [key], reviewer)
    run = train(project)
    assert run.status == "succeeded", run.error
    assert run.model_version.train_label_counts == {"first_party": 6, "third_party": 6, "data_security": 2}
    strategy = get_strategy("diverse_rare_uncertainty")
    examples = labelled_counts(np.array([0] * 6 + [1] * 6 + [2] * 2), len(KEYS), multi_label=False)

    def live_order_scores():
        ordered = list(order_by_priority(queued(project)).select_related("queue_priority"))
        probabilities = np.array([[d.queue_priority.label_probabilities()[k] for k in KEYS] for d in ordered])
        return strategy.scores(probabilities, examples_per_label=examples), strategy.scores(probabilities)

    # A batch of one is the strategy's top document, so the whole queue is in the simulation's order.
    simulated, by_prevalence = live_order_scores()
    assert np.all(np.diff(simulated) <= 2e-3)  # probabilities are stored to 4 decimals
    assert not np.all(np.diff(by_prevalence) <= 2e-3)  # the counts change the order here
    services.pool_rescore(project_id=project.pk)  # a rescore later (an import, a switch) reads the same counts
    simulated, _ = live_order_scores()
    assert np.all(np.diff(simulated) <= 2e-3)


def test_saved_version_loads_in_plain_setfit_and_predicts_the_taxonomy_labels(artifact_dir):
    from setfit import SetFitModel

    project, _ = build_labelled_project()
    version = train(project).model_version
    model = SetFitModel.from_pretrained(str(version.artifact_dir), local_files_only=True)
    predictions = model.predict(["We encrypt every backup with AES-256.", "We sell your data to advertisers."])
    assert list(predictions) == ["data_security", "third_party"]


def test_queue_order_follows_the_models_uncertainty(artifact_dir):
    project, _ = build_labelled_project(query_strategy="margin")
    train(project)
    ordered = list(order_by_priority(queued(project)).select_related("queue_priority"))
    probabilities = np.array([[d.queue_priority.label_probabilities()[k] for k in KEYS] for d in ordered])
    uncertainty = get_strategy("margin").scores(probabilities)
    # Most uncertain first (probabilities are stored to 4 decimals, hence the tolerance).
    assert np.all(np.diff(uncertainty) <= 2e-3)


def test_evaluation_documents_are_held_out_and_interleaved_without_suggestions(artifact_dir):
    project, _ = build_labelled_project(eval_fraction=0.3)
    # The draw is random; two queued documents are set aside by hand so the queue surely holds some.
    for document in queued(project)[:2]:
        EvaluationReservation.objects.create(document=document, project=project)
    run = train(project)
    version = run.model_version
    reserved = set(EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True))
    labeled = Document.objects.filter(project=project, status=Document.Status.LABELED)
    assert version.eval_label_count == labeled.filter(pk__in=reserved).count() > 0
    assert version.train_label_count + version.eval_label_count == labeled.count()
    assert version.metrics["n_documents"] == version.eval_label_count
    assert version.macro_f1 is not None
    order = list(order_by_priority(queued(project)).values_list("pk", "queue_priority__model_version"))
    positions = [i for i, (pk, _) in enumerate(order) if pk in reserved]
    assert positions, "some queued documents are reserved"
    assert all(order[i][1] is None for i in positions)  # no suggestion on evaluation documents
    assert positions[0] > 0  # the learner's most informative document comes first


def test_second_fast_run_reads_cached_embeddings_and_links_the_unchanged_body(artifact_dir):
    project, _ = build_labelled_project()
    first = train(project).model_version
    shards = EmbeddingShard.objects.filter(project=project).count()
    second = train(project).model_version
    assert EmbeddingShard.objects.filter(project=project).count() == shards
    first.refresh_from_db()
    assert (first.status, second.status) == ("retired", "active")
    weights = second.artifact_dir / "model.safetensors"
    assert weights.stat().st_nlink == 2  # shared with v1 on disk, not a second 90 MB copy


def test_a_second_fast_run_does_not_encode_the_label_texts_again(artifact_dir, monkeypatch):
    from learning.services import training

    project, _ = build_labelled_project()
    assert train(project).status == "succeeded"
    encoded = []
    real = training.encode_label_texts
    monkeypatch.setattr(training, "encode_label_texts", lambda *args, **kw: encoded.append(1) or real(*args, **kw))
    assert train(project).status == "succeeded"
    assert encoded == []
    Label.objects.filter(taxonomy__project=project, key="data_security").update(description="How data is kept safe.")
    assert train(project).status == "succeeded"
    assert encoded == [1]  # a changed text is encoded again


def test_the_next_fast_run_starts_from_the_held_model_the_last_one_saved(artifact_dir, monkeypatch):
    from learning.ml.classifier import Classifier
    from learning.services import classifiers

    project, _ = build_labelled_project()
    first = train(project).model_version
    real_load = Classifier.load.__func__
    loads = []
    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, path: loads.append(path) or real_load(cls, path)))
    held = classifiers._held_classifier(first, project)
    assert train(project).status == "succeeded"
    assert loads == []  # v1 was held since its run saved it, not read again from disk
    saved = real_load(Classifier, first.artifact_dir)
    embeddings = np.random.default_rng(0).standard_normal((5, 384)).astype(np.float32)
    assert np.array_equal(held.predict_proba_embeddings(embeddings), saved.predict_proba_embeddings(embeddings))
    assert held.metadata() == saved.metadata()


def test_a_model_that_fails_to_save_is_not_switched_to_and_the_queue_keeps_its_priorities(artifact_dir, monkeypatch):
    from learning.services import training

    project, _ = build_labelled_project()
    first = train(project).model_version
    before = dict(QueuePriority.objects.filter(project=project).values_list("document_id", "model_version"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, "_artifact_save", full_disk)
    with pytest.raises(OSError):
        train(project)
    first.refresh_from_db()
    assert first.status == "active"
    assert dict(QueuePriority.objects.filter(project=project).values_list("document_id", "model_version")) == before
    assert not TrainingRun.objects.filter(project=project, status="succeeded").exclude(model_version=first).exists()


def test_slow_run_fine_tunes_a_new_body_with_capped_steps_and_embeds_the_pool(artifact_dir):
    project, _ = build_labelled_project()
    run = train(project, kind="slow", max_steps=2)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.kind == "slow" and version.body_id.startswith("ft-")
    assert version.training_args["max_steps"] == 2
    assert run.timings["fine_tune"] > 0 and run.timings["embed"] > 0
    cached = services.cached_embeddings(project_id=project.pk, body_id=version.body_id)[0]
    assert set(queued(project).values_list("pk", flat=True)) <= set(cached.tolist())


def test_cold_start_orders_the_queue_by_diverse_picks_before_any_model(artifact_dir):
    project, _ = build_labelled_project(per_label=0, eval_fraction=0.25)
    written = services.pool_rescore(project_id=project.pk)
    assert written == queued(project).count() == 12
    rows = QueuePriority.objects.filter(project=project)
    assert len(set(rows.values_list("score", flat=True))) == 12
    reserved = set(EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True))
    assert len(reserved) == 3
    for row in rows:
        if row.document_id in reserved:  # evaluation documents are labelled without any suggestion
            assert row.model_version is None and row.label_probabilities() == {}
        else:  # the others carry suggestions from the labels' own words, "version 0"
            assert row.model_version == DESCRIPTIONS_VERSION == 0
            assert list(row.label_probabilities()) == list(KEYS)


def test_before_any_label_the_first_document_is_suggested_from_the_label_descriptions(artifact_dir):
    project, _ = build_labelled_project(per_label=0)
    descriptions = {
        "first_party": ("What we collect about you", "Example: *We collect your email address.*"),
        "third_party": ("Sharing with advertisers and partners", "Example: *We sell your data to marketers.*"),
        "data_security": ("Encryption and protection of data", "Example: *Data is encrypted with TLS.*"),
    }
    for key, (description, guideline) in descriptions.items():
        Label.objects.filter(taxonomy__project=project, key=key).update(description=description, guideline=guideline)
    services.pool_rescore(project_id=project.pk)
    encrypted = Document.objects.get(project=project, text__startswith="Backups are encrypted")
    sold = Document.objects.get(project=project, text__startswith="We sell aggregated data")
    keys = list(KEYS)
    for document, expected in ((encrypted, "data_security"), (sold, "third_party")):
        suggestion = suggestion_for(project, document, keys)
        assert suggestion["from_label_descriptions"] and suggestion["model_version"] == 0
        assert suggestion["labels"] == [expected]


def test_embeddings_are_cached_per_body_and_read_back_without_encoding(artifact_dir):
    project, _ = build_labelled_project(per_label=0)
    services.pool_rescore(project_id=project.pk)
    (body_id,) = set(EmbeddingShard.objects.filter(project=project).values_list("body_id", flat=True))
    ids = np.array(sorted(queued(project).values_list("pk", flat=True)))
    vectors = services.embeddings_for(project_id=project.pk, body_id=body_id, document_ids=ids, encode=None)
    assert vectors.shape == (12, 384) and vectors.dtype == np.float32


def reserve_two_per_label(project) -> None:
    """A fixed evaluation set, two labeled documents of each label, instead of a random draw: a draw of one
    or two documents can leave both versions at the same score, and then neither is worse."""
    documents = []
    for key in KEYS:
        documents += list(Document.objects.filter(project=project, annotations__labels__key=key).order_by("pk")[:2])
    EvaluationReservation.objects.bulk_create(
        [EvaluationReservation(document=document, project=project) for document in documents]
    )
    last = Document.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True).first()
    LearningState.objects.update_or_create(project=project, defaults={"reserved_through_document_id": last})


def test_a_worse_version_stays_ready_and_the_active_one_keeps_serving(artifact_dir):
    project, _ = build_labelled_project(eval_fraction=0.3, promotion_policy="not_worse")
    reserve_two_per_label(project)
    first = train(project).model_version
    assert first.status == "active" and first.eval_label_count == 6
    # The next version learns from training labels rotated to the wrong label, so it does worse on the same
    # (unchanged) evaluation documents than the active version does.
    reserved = EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True)
    labels = {label.key: label for label in Label.objects.filter(taxonomy__project=project)}
    rotate = dict(zip(KEYS, KEYS[1:] + KEYS[:1], strict=True))
    for link in AnnotationLabel.objects.filter(annotation__document__project=project).exclude(
        annotation__document_id__in=reserved
    ):
        link.label = labels[rotate[link.label.key]]
        link.save(update_fields=["label"])
    before = dict(QueuePriority.objects.filter(project=project).values_list("document_id", "model_version"))

    second = train(project).model_version

    first.refresh_from_db()
    assert (first.status, second.status) == ("active", "ready")
    comparison = second.metrics["comparison"]
    assert comparison["comparable"] and not comparison["promoted"]
    assert comparison["new_macro_f1"] < comparison["active_macro_f1"]
    assert "worse" in comparison["reason"]
    assert dict(QueuePriority.objects.filter(project=project).values_list("document_id", "model_version")) == before


def test_a_label_nobody_has_labelled_yet_is_learnt_from_its_description(artifact_dir):
    project, reviewer = build_labelled_project(per_label=0)
    for key in ("first_party", "third_party"):
        for text in LABELLED[key]:
            label_document(make_document(project, text), [key], reviewer)
    Label.objects.filter(taxonomy__project=project, key="data_security").update(
        name="Data security",
        description="How data is protected: encryption, access control, safeguards against breaches.",
        guideline="Example: *All data is encrypted in transit and at rest.*",
    )
    run = train(project)
    assert run.status == "succeeded", run.error
    assert run.model_version.training_args["anchor_copies"] >= 1
    security = QueuePriority.objects.filter(project=project).select_related("document")
    by_text = {row.document.text: row.label_probabilities()["data_security"] for row in security}
    # Without the label's text the head has no such class at all (probability ~0 everywhere); with it, the
    # queue's most likely security document is a security document, and a clear one gets a real share.
    assert max(by_text, key=by_text.get).startswith(("Backups are encrypted", "Two-factor", "Keys are rotated"))
    assert by_text["Backups are encrypted and stored in a separate region."] > 0.2
