"""Database round trips of what a reviewer waits for: the next document, a submission, the labeling page.

Transactional tests, so the counts are those of a deployment (a transaction's BEGIN and COMMIT are not
queries; a test wrapped in a transaction would add a savepoint pair), with sessions in a shared cache as
config/settings.py sets them up when DOCKET_CACHE_URL is given.
"""

import json

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Annotation, Document, GoldAnswer, Lease
from learning.models import QueuePriority
from tests.factories import AnnotationFactory, DocumentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reviewer_client(settings, reviewer):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    client = Client()
    client.force_login(reviewer)
    return client


def post_json(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def next_url(project):
    return reverse("annotation:queue-next", args=[project.pk])


def annotate_url(document_id, project):
    return reverse("annotation:document-annotate", args=[project.pk, document_id])


def queue_of(project, documents):
    for i in range(documents):
        document = DocumentFactory(project=project)
        if i % 2:
            QueuePriority.objects.create(
                document=document, project=project, score=i, model_version=1, probabilities={"first_party": 0.9}
            )


@pytest.mark.parametrize("documents", [5, 60])
def test_next_document_takes_at_most_five_queries(project, reviewer_client, django_assert_max_num_queries, documents):
    queue_of(project, documents)
    first = post_json(reviewer_client, next_url(project)).json()["document"]["id"]
    # The user, the project with the reviewer's role, the leases held, the claim, the document as shown.
    with django_assert_max_num_queries(5):
        response = post_json(reviewer_client, next_url(project), {"after": first})
    second = response.json()["document"]
    assert second["id"] != first and second["suggestion"]["labels"] == ["first_party"]
    assert set(Lease.objects.values_list("document_id", flat=True)) == {first, second["id"]}
    with django_assert_max_num_queries(4):  # a reload: the document held already, no claim
        assert post_json(reviewer_client, next_url(project)).json()["document"]["id"] == first


def test_next_document_with_gold_and_overlap_routing_takes_at_most_five_queries(
    project, reviewer, reviewer_client, django_assert_max_num_queries
):
    project.gold_rate, project.overlap_rate = 0.5, 0.5
    project.save(update_fields=["gold_rate", "overlap_rate"])
    queue_of(project, 6)
    gold = DocumentFactory(project=project, status=Document.Status.LABELED)
    GoldAnswer.objects.create(document=gold, project=project, label_keys=["first_party"], created_by=UserFactory())
    answered = DocumentFactory(project=project, status=Document.Status.LABELED)
    AnnotationFactory(document=answered, reviewer=reviewer)  # one answer: half of it is gold's due share
    with django_assert_max_num_queries(5):
        served = post_json(reviewer_client, next_url(project)).json()["document"]
    assert served["id"] == gold.pk
    assert served["suggestion"] is None  # a gold answer is never hinted at


def test_submission_takes_at_most_four_queries(project, reviewer, reviewer_client, django_assert_max_num_queries):
    DocumentFactory(project=project)
    served = post_json(reviewer_client, next_url(project)).json()["document"]
    body = {
        "labels": ["first_party"],
        "ticket": served["ticket"],
        "submission_id": "3f1c9a52-0d7e-4d8e-9a51-1c2f0e7b6a11",
    }
    # The user, the document with its project and the role, the labels with the taxonomy's version, and one
    # statement for the hold on the taxonomy, the answer with its labels, revision and audit event, the
    # document's status and the lease.
    with django_assert_max_num_queries(4):
        response = post_json(reviewer_client, annotate_url(served["id"], project), body)
    assert response.status_code == 200 and response.json()["created"] and not response.json()["leaseLost"]
    annotation = Annotation.objects.get(document_id=served["id"], reviewer=reviewer)
    assert list(annotation.labels.values_list("key", flat=True)) == ["first_party"]
    assert annotation.revisions.count() == 1
    assert Document.objects.get(pk=served["id"]).status == Document.Status.LABELED
    assert not Lease.objects.filter(document_id=served["id"]).exists()


def test_labeling_page_takes_at_most_seven_queries(project, reviewer_client, django_assert_max_num_queries):
    queue_of(project, 5)
    with django_assert_max_num_queries(7):
        assert reviewer_client.get(reverse("annotation:label", args=[project.pk])).status_code == 200


def test_document_on_screen_and_model_poll_take_few_queries(
    project, reviewer, reviewer_client, django_assert_max_num_queries
):
    document = DocumentFactory(project=project)
    with django_assert_max_num_queries(3):  # the user, the document with project and role, the document shown
        assert reviewer_client.get(reverse("annotation:document", args=[project.pk, document.pk])).status_code == 200
    with django_assert_max_num_queries(3):
        assert reviewer_client.get(reverse("annotation:labeling-model", args=[project.pk])).status_code == 200


def test_my_projects_asks_the_same_number_of_queries_for_one_project_and_for_six(
    project, reviewer, reviewer_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import MembershipFactory, project_with_labels

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = reviewer_client.get(reverse("annotation:my-projects"))
        assert response.status_code == 200
        return len(captured)

    DocumentFactory(project=project)
    page_queries()
    one = page_queries()
    for n in range(5):
        other = project_with_labels(name=f"Other {n}")
        MembershipFactory(project=other, user=reviewer, role="reviewer")
        DocumentFactory(project=other, status="labeled")
    assert page_queries() == one, "each project on the page asked the database again"
    assert one <= 4
