"""Many reviewers asking at once, each thread on its own PostgreSQL connection: no document is leased twice
and no answer is lost."""

import threading
from collections import Counter, defaultdict

import pytest
from django.db import connection

from annotation.models import Annotation, Document, Lease
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.django_db(transaction=True)]


def run_in_threads(target, count: int) -> list[BaseException]:
    """Start `count` threads at the same instant; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(index)
        except BaseException as error:  # reported to the test below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


@pytest.fixture
def team():
    if connection.vendor != "postgresql":
        pytest.skip("the queue's locking is proven on PostgreSQL")
    project = project_with_labels()
    reviewers = [UserFactory() for _ in range(16)]
    for reviewer in reviewers:
        MembershipFactory(project=project, user=reviewer)
    return project, reviewers


def test_simultaneous_requests_never_lease_one_document_twice(team):
    project, reviewers = team
    for _ in range(10):
        DocumentFactory(project=project)
    offered: dict[int, int | None] = {}

    def ask(index: int) -> None:
        offer = next_document_for(reviewer=reviewers[index], project=project)
        offered[index] = offer.document.pk if offer else None

    assert run_in_threads(ask, len(reviewers)) == []
    handed_out = [doc for doc in offered.values() if doc is not None]
    assert len(handed_out) == 10 == len(set(handed_out))
    assert sorted(Lease.objects.values_list("document_id", flat=True)) == sorted(handed_out)


def test_reviewers_labeling_in_parallel_each_document_once_and_lose_nothing(team):
    project, reviewers = team
    documents = [DocumentFactory(project=project) for _ in range(120)]
    seen: dict[int, list[int]] = defaultdict(list)
    submitted: Counter = Counter()

    def label_until_empty(index: int) -> None:
        reviewer = reviewers[index]
        current = next_document_for(reviewer=reviewer, project=project)
        while current is not None:
            seen[current.document.pk].append(reviewer.pk)
            # Like the page: prefetch the next document while the current one is on screen, then submit.
            upcoming = next_document_for(reviewer=reviewer, project=project, after_document_id=current.document.pk)
            annotation_submit(reviewer=reviewer, document=current.document, label_keys=["first_party"])
            submitted[reviewer.pk] += 1
            current = upcoming

    assert run_in_threads(label_until_empty, len(reviewers)) == []
    twice = {doc: who for doc, who in seen.items() if len(set(who)) > 1}
    assert twice == {}, f"documents offered to two reviewers: {twice}"
    assert sum(submitted.values()) == len(documents)
    assert Annotation.objects.count() == len(documents)
    assert Document.objects.filter(status=Document.Status.LABELED).count() == len(documents)
    assert not Lease.objects.exists()
    # Several reviewers really did work at the same time.
    assert len([r for r in submitted.values() if r]) > 1
