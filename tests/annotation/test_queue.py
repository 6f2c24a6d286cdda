"""Which document a reviewer gets next, and the leases that keep reviewers apart."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotation import selectors
from annotation.models import AuditEvent, Document, Flag, Lease, Skip
from annotation.services.labeling import annotation_submit
from annotation.services.queue import _claim, document_flag, document_skip, next_document_for
from learning.models import QueuePriority
from learning.selectors import order_by_priority
from tests.factories import DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_reviewer(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user)
    return user


def docs(project, n, **kwargs):
    return [DocumentFactory(project=project, **kwargs) for _ in range(n)]


def test_next_document_is_the_highest_priority_one(project, reviewer):
    low, high, middle = docs(project, 3)
    for doc, score in ((low, 0.1), (high, 0.9), (middle, 0.5)):
        QueuePriority.objects.create(document=doc, project=project, score=score)
    assert next_document_for(reviewer=reviewer, project=project).document == high


def test_without_priorities_the_queue_follows_random_key(project, reviewer):
    a, b, c = docs(project, 3)
    for doc, key in ((a, 0.7), (b, 0.2), (c, 0.5)):
        Document.objects.filter(pk=doc.pk).update(random_key=key)
    assert next_document_for(reviewer=reviewer, project=project).document == b


def test_scored_documents_come_before_unscored_ones(project, reviewer):
    unscored, scored = docs(project, 2)
    Document.objects.filter(pk=unscored.pk).update(random_key=0.0)
    QueuePriority.objects.create(document=scored, project=project, score=0.01)
    assert next_document_for(reviewer=reviewer, project=project).document == scored


def test_the_queue_walks_documents_in_the_learning_sides_order(project, reviewer):
    documents = docs(project, 8)
    for score, document in zip((0.3, 0.9, 0.1, 0.6, 0.5), documents[:5], strict=True):
        QueuePriority.objects.create(document=document, project=project, score=score)
    expected = list(order_by_priority(Document.objects.filter(project=project)).values_list("id", flat=True))
    seen = []
    while (offer := next_document_for(reviewer=reviewer, project=project)) is not None:
        seen.append(offer.document.pk)
        annotation_submit(reviewer=reviewer, document=offer.document, label_keys=["first_party"])
    assert seen == expected


def test_taking_a_document_leases_it_for_the_project_ttl(project, reviewer):
    project.lease_ttl_seconds = 120
    project.save()
    (doc,) = docs(project, 1)
    before = timezone.now()
    offer = next_document_for(reviewer=reviewer, project=project)
    lease = Lease.objects.get(document=doc)
    assert lease.reviewer == reviewer
    assert before + timedelta(seconds=119) < lease.expires_at == offer.expires_at
    assert offer.resumed is False


def test_reviewer_holding_a_live_lease_gets_that_document_back(project, reviewer):
    docs(project, 3)
    first = next_document_for(reviewer=reviewer, project=project)
    again = next_document_for(reviewer=reviewer, project=project)
    assert again.document == first.document
    assert again.resumed is True
    assert Lease.objects.filter(reviewer=reviewer).count() == 1


def test_after_gives_a_second_document_and_keeps_the_first(project, reviewer):
    docs(project, 3)
    current = next_document_for(reviewer=reviewer, project=project).document
    prefetched = next_document_for(reviewer=reviewer, project=project, after_document_id=current.pk).document
    assert prefetched != current
    assert set(Lease.objects.filter(reviewer=reviewer).values_list("document_id", flat=True)) == {
        current.pk,
        prefetched.pk,
    }
    # Asking again (a reload of the page) hands back the same two, never a third.
    assert next_document_for(reviewer=reviewer, project=project).document == current
    assert next_document_for(reviewer=reviewer, project=project, after_document_id=current.pk).document == prefetched


def test_a_document_held_by_one_reviewer_is_not_offered_to_another(project, reviewer, other_reviewer):
    docs(project, 2)
    mine = next_document_for(reviewer=reviewer, project=project).document
    theirs = next_document_for(reviewer=other_reviewer, project=project).document
    assert mine != theirs
    # Nothing left for a third request by the other reviewer beyond what they hold.
    assert next_document_for(reviewer=other_reviewer, project=project, after_document_id=theirs.pk) is None


def test_expired_lease_returns_document_to_queue(project, reviewer, other_reviewer):
    (doc,) = docs(project, 1)
    next_document_for(reviewer=reviewer, project=project)
    assert next_document_for(reviewer=other_reviewer, project=project) is None
    Lease.objects.filter(document=doc).update(expires_at=timezone.now() - timedelta(seconds=1))
    offer = next_document_for(reviewer=other_reviewer, project=project)
    assert offer.document == doc
    assert Lease.objects.get(document=doc).reviewer == other_reviewer


def test_claim_refuses_a_document_another_reviewer_holds_live(project, reviewer, other_reviewer):
    (doc,) = docs(project, 1)
    now = timezone.now()
    Lease.objects.create(
        document=doc, project=project, reviewer=reviewer, acquired_at=now, expires_at=now + timedelta(minutes=5)
    )
    assert _claim(document=doc, reviewer=other_reviewer, now=now, expires_at=now + timedelta(minutes=5)) is False
    assert Lease.objects.get(document=doc).reviewer == reviewer


def test_claim_takes_over_an_expired_lease(project, reviewer, other_reviewer):
    (doc,) = docs(project, 1)
    now = timezone.now()
    Lease.objects.create(
        document=doc, project=project, reviewer=reviewer, acquired_at=now - timedelta(minutes=20), expires_at=now
    )
    assert _claim(document=doc, reviewer=other_reviewer, now=now, expires_at=now + timedelta(minutes=5)) is True
    assert Lease.objects.get(document=doc).reviewer == other_reviewer


def test_skipped_document_is_not_offered_again_to_the_same_reviewer(project, reviewer, other_reviewer):
    first, second = docs(project, 2)
    Document.objects.filter(pk=first.pk).update(random_key=0.0)
    Document.objects.filter(pk=second.pk).update(random_key=0.5)
    offered = next_document_for(reviewer=reviewer, project=project).document
    assert offered == first
    document_skip(reviewer=reviewer, document=offered)
    assert not Lease.objects.filter(document=first).exists()
    assert next_document_for(reviewer=reviewer, project=project).document == second
    # Another reviewer still gets the skipped document.
    assert next_document_for(reviewer=other_reviewer, project=project).document == first


def test_skipping_twice_keeps_one_skip(project, reviewer):
    (doc,) = docs(project, 1)
    document_skip(reviewer=reviewer, document=doc)
    document_skip(reviewer=reviewer, document=doc)
    assert Skip.objects.filter(document=doc, reviewer=reviewer).count() == 1


def test_labeled_and_flagged_documents_are_not_offered(project, reviewer):
    docs(project, 1, status=Document.Status.LABELED)
    docs(project, 1, status=Document.Status.FLAGGED)
    assert next_document_for(reviewer=reviewer, project=project) is None


def test_other_projects_documents_are_never_offered(project, reviewer):
    DocumentFactory()  # in a project of its own
    assert next_document_for(reviewer=reviewer, project=project) is None


def test_flag_holds_the_document_for_legal_review(project, reviewer, other_reviewer):
    (doc,) = docs(project, 1)
    next_document_for(reviewer=reviewer, project=project)
    flag = document_flag(reviewer=reviewer, document=doc, comment="  Mentions a minor's health data.  ")
    doc.refresh_from_db()
    assert doc.status == Document.Status.FLAGGED
    assert flag.comment == "Mentions a minor's health data."
    assert not Lease.objects.filter(document=doc).exists()
    assert next_document_for(reviewer=other_reviewer, project=project) is None
    event = AuditEvent.objects.get(action="document.flag")
    assert event.actor == reviewer and event.target_id == str(doc.pk)


def test_flag_needs_a_comment(project, reviewer):
    (doc,) = docs(project, 1)
    with pytest.raises(ValidationError):
        document_flag(reviewer=reviewer, document=doc, comment="   ")
    assert not Flag.objects.exists()
    doc.refresh_from_db()
    assert doc.status == Document.Status.QUEUED


@pytest.mark.parametrize(
    ("setup", "state"),
    [("nothing", "empty"), ("all_labeled", "done"), ("held", "held"), ("skipped", "skipped")],
)
def test_queue_state_says_why_nothing_is_offered(project, reviewer, other_reviewer, setup, state):
    if setup == "all_labeled":
        docs(project, 1, status=Document.Status.LABELED)
    elif setup == "held":
        docs(project, 1)
        next_document_for(reviewer=other_reviewer, project=project)
    elif setup == "skipped":
        (doc,) = docs(project, 1)
        document_skip(reviewer=reviewer, document=doc)
    assert next_document_for(reviewer=reviewer, project=project) is None
    assert selectors.queue_state(project, reviewer) == state
