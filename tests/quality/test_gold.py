"""Gold checks: documents with known answers are served as a share of each reviewer's queue and scored."""

import pytest

from annotation.models import Document
from annotation.selectors import final_labels_for
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from quality.selectors import gold_accuracy
from quality.services import gold_answer_set
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


def _label_everything(project, reviewer, answer):
    served = []
    while (offer := next_document_for(reviewer=reviewer, project=project)) is not None:
        served.append(offer.document)
        annotation_submit(reviewer=reviewer, document=offer.document, label_keys=[answer(offer.document)])
    return served


def test_gold_documents_are_a_configured_share_of_each_reviewers_queue():
    project = project_with_labels(overlap_rate=0.0, gold_rate=0.2)
    admin = UserFactory()
    documents = [DocumentFactory(project=project) for _ in range(50)]
    gold = documents[:10]
    for document in gold:
        gold_answer_set(actor=admin, document=document, label_keys=["first_party"])
    reviewers = [UserFactory(), UserFactory()]
    for reviewer in reviewers:
        MembershipFactory(project=project, user=reviewer)
    first = []
    for _ in range(10):  # reviewers alternate, ten documents each
        for reviewer in reviewers:
            offer = next_document_for(reviewer=reviewer, project=project)
            annotation_submit(reviewer=reviewer, document=offer.document, label_keys=["first_party"])
            first.append((reviewer, offer.document.pk))
    gold_ids = {d.pk for d in gold}
    for reviewer in reviewers:
        served = [d for r, d in first if r == reviewer]
        assert sum(d in gold_ids for d in served) == 2  # 20% of ten
    # Gold documents reach every reviewer: both answered the same gold documents they were served.
    assert Document.objects.filter(pk__in=gold_ids, status=Document.Status.QUEUED).count() == 0


def test_gold_answer_is_the_final_label_and_each_reviewers_accuracy_is_shown():
    project = project_with_labels(overlap_rate=0.0, gold_rate=0.5)
    admin, good, sloppy = UserFactory(), UserFactory(), UserFactory()
    gold = [DocumentFactory(project=project) for _ in range(4)]
    for document in gold:
        gold_answer_set(actor=admin, document=document, label_keys=["data_security"])
    for _ in range(8):
        DocumentFactory(project=project)
    answers = {good: lambda d: "data_security", sloppy: lambda d: "first_party" if d.pk % 2 else "data_security"}
    active = [good, sloppy]
    while active:  # the two take turns, as reviewers working side by side do
        for reviewer in list(active):
            offer = next_document_for(reviewer=reviewer, project=project)
            if offer is None:
                active.remove(reviewer)
                continue
            annotation_submit(
                reviewer=reviewer, document=offer.document, label_keys=[answers[reviewer](offer.document)]
            )
    rows = {row["reviewer"]: row for row in gold_accuracy(project)}
    assert rows[good.username]["accuracy"] == 1.0
    assert rows[good.username]["answered"] == 4
    expected = sum(1 for d in gold if d.pk % 2 == 0) / 4
    assert rows[sloppy.username]["accuracy"] == pytest.approx(expected)
    final = final_labels_for([gold[0].pk])[gold[0].pk]
    assert (final.labels, final.basis) == (["data_security"], "gold")


def test_without_gold_rate_gold_documents_are_never_served():
    project = project_with_labels(overlap_rate=0.0, gold_rate=0.0)
    admin, reviewer = UserFactory(), UserFactory()
    gold = DocumentFactory(project=project)
    gold_answer_set(actor=admin, document=gold, label_keys=["first_party"])
    DocumentFactory(project=project)
    served = _label_everything(project, reviewer, lambda d: "first_party")
    assert gold not in served
