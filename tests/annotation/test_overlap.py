"""Overlap routing: a designed share of documents goes to exactly `overlap_reviewers` reviewers, never twice to
the same one, never to two at once; everything else goes to one reviewer only."""

import pytest
from django.db.models import Count

from annotation.models import Annotation, Document
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


def _reviewers(project, n):
    users = [UserFactory() for _ in range(n)]
    for user in users:
        MembershipFactory(project=project, user=user)
    return users


def test_overlap_routing_over_1000_documents_and_5_reviewers():
    project = project_with_labels(overlap_rate=0.10, overlap_reviewers=2, gold_rate=0.0)
    Document.objects.bulk_create(
        [
            Document(project=project, text=f"clause {i}", content_hash=f"h{i}", random_key=(i * 0.6180339887) % 1)
            for i in range(1000)
        ]
    )
    reviewers = _reviewers(project, 5)
    designed = Document.objects.filter(project=project, random_key__lt=0.10).count()
    active = list(reviewers)
    rounds = 0
    while active:
        rounds += 1
        # Every reviewer takes a document before anyone answers: what they hold at once is always distinct.
        offers = {}
        for reviewer in list(active):
            offer = next_document_for(reviewer=reviewer, project=project)
            if offer is None:
                active.remove(reviewer)
            else:
                offers[reviewer] = offer.document
        held = [d.pk for d in offers.values()]
        assert len(held) == len(set(held)), "two reviewers were offered the same document at once"
        for index, (reviewer, document) in enumerate(offers.items()):
            annotation_submit(
                reviewer=reviewer, document=document, label_keys=[("first_party", "third_party")[index % 2]]
            )
    assert Document.objects.filter(project=project, status=Document.Status.QUEUED).count() == 0
    per_document = dict(
        Annotation.objects.filter(document__project=project).values_list("document_id").annotate(n=Count("id"))
    )
    assert len(per_document) == 1000
    overlapped = {d for d, n in per_document.items() if n > 1}
    assert max(per_document.values()) == 2
    assert len(overlapped) == designed
    assert 0.07 <= len(overlapped) / 1000 <= 0.13
    # Only the designed overlap set ever got a second reviewer.
    assert overlapped == set(Document.objects.filter(project=project, random_key__lt=0.10).values_list("pk", flat=True))
    # The database forbids one reviewer answering a document twice; the queue never tried.
    pairs = Annotation.objects.values_list("document_id", "reviewer_id")
    assert len(pairs) == len(set(pairs))


def test_an_overlapped_document_is_not_offered_again_to_its_first_reviewer():
    project = project_with_labels(overlap_rate=1.0, overlap_reviewers=2, gold_rate=0.0)
    document = DocumentFactory(project=project)
    first, second = _reviewers(project, 2)
    offer = next_document_for(reviewer=first, project=project)
    annotation_submit(reviewer=first, document=offer.document, label_keys=["first_party"])
    assert next_document_for(reviewer=first, project=project) is None
    assert next_document_for(reviewer=second, project=project).document == document


def test_an_overlapped_document_held_by_one_reviewer_is_not_offered_to_another():
    project = project_with_labels(overlap_rate=1.0, overlap_reviewers=3, gold_rate=0.0)
    document = DocumentFactory(project=project)
    first, second, third = _reviewers(project, 3)
    annotation_submit(
        reviewer=first, document=next_document_for(reviewer=first, project=project).document, label_keys=["first_party"]
    )
    assert next_document_for(reviewer=second, project=project).document == document
    assert next_document_for(reviewer=third, project=project) is None
    # A reload gives the holder the same document back.
    assert next_document_for(reviewer=second, project=project).resumed


def test_without_overlap_a_labeled_document_goes_to_nobody_else():
    project = project_with_labels(overlap_rate=0.0, gold_rate=0.0)
    DocumentFactory(project=project)
    first, second = _reviewers(project, 2)
    annotation_submit(
        reviewer=first, document=next_document_for(reviewer=first, project=project).document, label_keys=["first_party"]
    )
    assert next_document_for(reviewer=second, project=project) is None


def test_the_second_reviewer_does_not_see_the_first_reviewers_labels(client):
    project = project_with_labels(overlap_rate=1.0, gold_rate=0.0)
    document = DocumentFactory(project=project)
    first, second = _reviewers(project, 2)
    annotation_submit(reviewer=first, document=document, label_keys=["third_party"])
    offer = next_document_for(reviewer=second, project=project)
    client.force_login(second)
    body = client.get(f"/projects/{project.pk}/documents/{offer.document.pk}").json()
    assert "third_party" not in str(body.get("document", body).get("my_labels"))


def test_the_models_suggestion_is_withheld_from_the_second_reviewer(client):
    from learning.models import QueuePriority

    project = project_with_labels(overlap_rate=1.0, gold_rate=0.0)
    document = DocumentFactory(project=project)
    QueuePriority.objects.create(
        document=document, project=project, score=0.9, model_version=1, probabilities={"third_party": 0.9}
    )
    first, second = _reviewers(project, 2)
    client.force_login(first)
    assert client.get(f"/projects/{project.pk}/documents/{document.pk}").json()["document"]["suggestion"]
    annotation_submit(reviewer=first, document=document, label_keys=["third_party"])
    next_document_for(reviewer=second, project=project)
    client.force_login(second)
    assert client.get(f"/projects/{project.pk}/documents/{document.pk}").json()["document"]["suggestion"] is None


def test_overlap_and_gold_shares_hold_right_after_an_import_before_any_rescore(tmp_path):
    """Straight after an import nothing is scored yet; the queue must not hand out the overlap set first."""
    import json

    from annotation.services.imports import documents_import
    from learning.models import QueuePriority
    from quality.services import gold_answer_set

    project = project_with_labels(overlap_rate=0.10, overlap_reviewers=2, gold_rate=0.10)
    path = tmp_path / "clauses.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"c{i}", "text": f"Clause {i} of the notice."}) + "\n" for i in range(400))
    )
    documents_import(project=project, path=path)
    assert not QueuePriority.objects.filter(project=project).exists()  # the rescore has not run
    # Evenly spread keys (as in the test above), so that the overlap set is exactly 10% and the shares below
    # measure the queue's order, not the luck of one draw of random keys.
    for i, document in enumerate(Document.objects.filter(project=project).order_by("pk")):
        Document.objects.filter(pk=document.pk).update(random_key=(i * 0.6180339887) % 1)
    admin = UserFactory()
    for document in Document.objects.filter(project=project, random_key__gte=0.10).order_by("pk")[:20]:
        gold_answer_set(actor=admin, document=document, label_keys=["first_party"])
    reviewers = _reviewers(project, 3)

    for _ in range(40):  # reviewers take turns, 40 answers each
        for reviewer in reviewers:
            offer = next_document_for(reviewer=reviewer, project=project)
            annotation_submit(reviewer=reviewer, document=offer.document, label_keys=["first_party"])

    labeled = Document.objects.filter(project=project, annotations__isnull=False).distinct()
    overlapped = labeled.filter(random_key__lt=0.10).count()
    # Before, the lowest random keys came first: every early first look was an overlapped document.
    assert 0.05 <= overlapped / labeled.count() <= 0.15, f"{overlapped} of {labeled.count()} labeled are overlapped"
    for reviewer in reviewers:
        answers = Annotation.objects.filter(reviewer=reviewer)
        gold = answers.filter(document__gold_answer__isnull=False).count()
        assert 0.05 <= gold / answers.count() <= 0.15, f"{gold} of {answers.count()} answers are gold checks"
