"""Writing the queue's priorities: every row as scored, in one transaction, whatever else the table holds."""

import threading
import time

import numpy as np
import pytest
from django.db import connection, transaction

from annotation.models import Document
from learning.models import DESCRIPTIONS_VERSION, PriorityLabelKeys, QueueExit, QueuePriority, probabilities_by_label
from learning.selectors import order_by_priority, predictions_for, with_predicted_probability
from learning.services.pool import PoolScores, _priorities_write
from tests.factories import DocumentFactory, project_with_labels

pytestmark = pytest.mark.django_db

KEYS = ["first_party", "third-party", "data_security"]
LOWERED = float("-inf")  # the score of a document no longer queued, once a write has seen it leave


def pool_of(documents, *, version=7, evaluation=(), probabilities=None, scores=None) -> PoolScores:
    ids = np.array(sorted(d.pk for d in documents), dtype=np.int64)
    learner = ~np.isin(ids, [d.pk for d in evaluation])
    rng = np.random.default_rng(0)
    if probabilities is None:
        probabilities = rng.dirichlet(np.ones(len(KEYS)), size=int(learner.sum()))
    return PoolScores(
        document_ids=ids,
        scores=rng.random(len(ids)) if scores is None else scores,
        model_version=version,
        probabilities=probabilities,
        label_keys=list(KEYS),
        learner_mask=learner,
    )


def stored(project) -> dict[int, tuple]:
    """(score, model version, label key -> probability) per document, as readers see them."""
    keys = dict(PriorityLabelKeys.objects.filter(project=project).values_list("model_version", "label_keys"))
    rows = QueuePriority.objects.filter(project=project).values_list(
        "document_id", "score", "model_version", "probabilities"
    )
    return {
        pk: (score, version, probabilities_by_label(keys.get(version), values)) for pk, score, version, values in rows
    }


def test_every_row_is_stored_as_scored_evaluation_documents_without_suggestion():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(6, project=project)
    evaluation = documents[1:3]
    probabilities = np.array([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.12344, 0.87656, 0.0], [1e-9, 0.33335, 0.66665]])
    scores = np.array([0.9, 1 / 3, 2 / 3, 1e-7, 0.123456789012345678, 0.5])
    pool = pool_of(documents, evaluation=evaluation, probabilities=probabilities, scores=scores)

    with transaction.atomic():
        assert _priorities_write(project.pk, pool) == 6

    rows = stored(project)
    assert [rows[pk][0] for pk in pool.document_ids.tolist()] == scores.tolist()  # exactly, not rounded
    learner_ids = pool.document_ids[pool.learner_mask].tolist()
    for pk, expected in zip(learner_ids, probabilities, strict=True):
        score, version, written = rows[pk]
        assert version == 7
        assert list(written) == KEYS
        np.testing.assert_allclose([written[k] for k in KEYS], expected, atol=6e-5)
    for document in evaluation:
        assert rows[document.pk][1:] == (None, {})


def test_a_pool_without_a_model_stores_scores_only():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    pool = pool_of(documents, version=None)
    pool.probabilities = None

    with transaction.atomic():
        _priorities_write(project.pk, pool)

    assert [row[1:] for row in stored(project).values()] == [(None, {})] * 3


def test_a_rewrite_replaces_the_pools_rows_and_leaves_other_documents_rows():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(4, project=project)
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, version=1))
    labeled = documents[0]
    Document.objects.filter(pk=labeled.pk).update(status=Document.Status.LABELED)
    before = stored(project)

    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents[1:], version=2, scores=np.array([0.3, 0.2, 0.1])))

    after = stored(project)
    assert after[labeled.pk] == (LOWERED, *before[labeled.pk][1:])  # its prediction stays, out of the queue's way
    assert [after[d.pk][:2] for d in documents[1:]] == [(0.3, 2), (0.2, 2), (0.1, 2)]


def test_a_document_deleted_while_the_pool_was_scored_does_not_stop_the_write():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    pool = pool_of(documents)
    documents[1].delete()

    with transaction.atomic():
        _priorities_write(project.pk, pool)

    scored = Document.objects.filter(project=project, queue_priority__isnull=False)
    assert set(scored.values_list("pk", flat=True)) == {documents[0].pk, documents[2].pk}


def test_priorities_go_with_their_document_and_their_project():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents))

    documents[0].delete()
    assert set(stored(project)) == {documents[1].pk, documents[2].pk}
    project.delete()
    assert not QueuePriority.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_readers_see_the_previous_priorities_whole_until_the_rewrite_commits():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(4, project=project)
    ids = [d.pk for d in sorted(documents, key=lambda d: d.pk)]
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, version=1, scores=np.array([0.4, 0.3, 0.2, 0.1])))
    seen = {}

    def reader() -> None:
        try:
            seen["versions"] = {row[1] for row in stored(project).values()}
            seen["order"] = list(
                order_by_priority(Document.objects.filter(project=project)).values_list("pk", flat=True)
            )
        finally:
            connection.close()

    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, version=2, scores=np.array([0.1, 0.2, 0.3, 0.4])))
        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=30)

    assert seen == {"versions": {1}, "order": ids}
    assert {row[1] for row in stored(project).values()} == {2}
    assert list(order_by_priority(Document.objects.filter(project=project)).values_list("pk", flat=True)) == ids[::-1]


def test_a_new_cold_start_with_other_labels_leaves_earlier_rows_reading_right():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    first = np.array([[0.5, 0.3, 0.2]] * 3)
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, version=DESCRIPTIONS_VERSION, probabilities=first))
    labeled = documents[0]
    Document.objects.filter(pk=labeled.pk).update(status=Document.Status.LABELED)
    # A label retired and one added since: the queue is scored again from the labels' words, in a new order.
    rescored = PoolScores(
        document_ids=np.array(sorted(d.pk for d in documents[1:]), dtype=np.int64),
        scores=np.array([0.2, 0.1]),
        model_version=DESCRIPTIONS_VERSION,
        probabilities=np.array([[0.6, 0.1, 0.3]] * 2),
        label_keys=["data_security", "user_choice", "first_party"],
        learner_mask=np.ones(2, dtype=bool),
    )
    with transaction.atomic():
        _priorities_write(project.pk, rescored)

    rows = stored(project)
    assert rows[labeled.pk][2] == {"first_party": 0.5, "third-party": 0.3, "data_security": 0.2}
    for document in documents[1:]:
        assert rows[document.pk][2] == {"data_security": 0.6, "user_choice": 0.1, "first_party": 0.3}
    assert predictions_for([labeled.pk])[labeled.pk]["probabilities"] == rows[labeled.pk][2]


def test_a_labels_probability_is_found_in_each_versions_own_order():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(4, project=project)
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents[:2], version=1, probabilities=np.array([[0.9, 0.1, 0.0]] * 2)))
    reordered = pool_of(documents[2:], version=2, probabilities=np.array([[0.05, 0.15, 0.8]] * 2))
    reordered.label_keys = ["data_security", "third-party", "first_party"]
    with transaction.atomic():
        _priorities_write(project.pk, reordered)

    documents_of = Document.objects.filter(project=project)
    likely = with_predicted_probability(project, documents_of, label_key="first_party", low=0.5, high=1.0)
    unlikely = with_predicted_probability(project, documents_of, label_key="first_party", low=0.0, high=0.5)
    sure = with_predicted_probability(project, documents_of, label_key=None, low=0.85, high=1.0)
    assert set(likely.values_list("pk", flat=True)) == {d.pk for d in documents[:2]} | {d.pk for d in documents[2:]}
    assert not unlikely.exists()
    assert set(sure.values_list("pk", flat=True)) == {d.pk for d in documents[:2]}


def test_documents_that_left_the_queue_keep_their_prediction_with_their_score_lowered_at_the_next_write():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, scores=np.array([0.9, 0.5, 0.1])))
    shown = stored(project)[documents[0].pk]

    Document.objects.filter(pk=documents[0].pk).update(status=Document.Status.LABELED)
    assert QueueExit.objects.filter(project_id=project.pk).count() == 1  # recorded by the database
    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents[1:], scores=np.array([0.6, 0.2])))

    rows = stored(project)
    assert rows[documents[0].pk] == (LOWERED, shown[1], shown[2])
    assert [rows[d.pk][0] for d in documents[1:]] == [0.6, 0.2]
    assert not QueueExit.objects.filter(project_id=project.pk).exists()
    walk = QueuePriority.objects.filter(project=project).order_by("-score").values_list("document_id", flat=True)
    assert list(walk) == [documents[1].pk, documents[2].pk, documents[0].pk]


def test_a_document_labeled_after_its_pool_was_read_is_written_lowered():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    pool = pool_of(documents, scores=np.array([0.7, 0.8, 0.9]))  # read while all three were queued
    Document.objects.filter(pk=documents[2].pk).update(status=Document.Status.LABELED)

    with transaction.atomic():
        _priorities_write(project.pk, pool)

    assert [stored(project)[d.pk][0] for d in documents] == [0.7, 0.8, LOWERED]


def test_a_document_queued_again_keeps_its_new_score():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(2, project=project)
    Document.objects.filter(pk=documents[0].pk).update(status=Document.Status.FLAGGED)
    Document.objects.filter(pk=documents[0].pk).update(status=Document.Status.QUEUED)

    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents, scores=np.array([0.6, 0.4])))

    assert [stored(project)[d.pk][0] for d in documents] == [0.6, 0.4]
    assert not QueueExit.objects.filter(project_id=project.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_submission_never_waits_for_a_rescore_and_its_exit_is_applied_by_the_next_one():
    project = project_with_labels(KEYS)
    documents = DocumentFactory.create_batch(3, project=project)
    written, release = threading.Event(), threading.Event()

    def rescore():
        try:
            with transaction.atomic():
                _priorities_write(project.pk, pool_of(documents, scores=np.array([0.7, 0.8, 0.9])))
                written.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=rescore)
    thread.start()
    try:
        assert written.wait(10)
        started = time.monotonic()
        Document.objects.filter(pk=documents[2].pk).update(status=Document.Status.LABELED)  # while it holds the rows
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join(20)
    assert stored(project)[documents[2].pk][0] == 0.9  # written before the label committed

    with transaction.atomic():
        _priorities_write(project.pk, pool_of(documents[:2], scores=np.array([0.3, 0.4])))

    assert [stored(project)[d.pk][0] for d in documents] == [0.3, 0.4, LOWERED]
