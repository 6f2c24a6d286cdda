"""A reviewer's call that PostgreSQL aborts as a deadlock's victim (SQLSTATE 40P01) is made again, not answered
with a server error: found by the 16-reviewer hammer drill (benchmarks/fault_drills.py), where a claim and a
submission of the same document waited on each other and the submission answered 500.

The deadlock itself is raised by PostgreSQL on the first call (a real 40P01 error), so the test does not
depend on two connections' timing. Transactional tests: a call inside a caller's transaction is not retried.
"""

import json

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client
from django.urls import reverse

from annotation.models import Annotation, Document, Lease
from annotation.services import labeling, queue
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def deadlock_victim() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")


def victim_once(monkeypatch, module, name: str) -> list[int]:
    """Make module.name a deadlock's victim on its first call; returns the list of calls made."""
    original = getattr(module, name)
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            deadlock_victim()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


@pytest.fixture
def reviewer_client(reviewer):
    client = Client()
    client.force_login(reviewer)
    return client


def post_json(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def test_a_submission_picked_as_a_deadlocks_victim_is_stored_once_and_answered(
    project, reviewer, reviewer_client, monkeypatch
):
    DocumentFactory(project=project)
    served = post_json(reviewer_client, reverse("annotation:queue-next", args=[project.pk])).json()["document"]
    calls = victim_once(monkeypatch, labeling, "_first_answer_insert")
    body = {
        "labels": ["first_party"],
        "ticket": served["ticket"],
        "submission_id": "7a1c9a52-0d7e-4d8e-9a51-1c2f0e7b6a11",
    }
    response = post_json(
        reviewer_client, reverse("annotation:document-annotate", args=[project.pk, served["id"]]), body
    )
    assert response.status_code == 200, response.content[:300]
    assert response.json()["created"] and not response.json()["leaseLost"]
    assert len(calls) == 2
    assert Annotation.objects.filter(document_id=served["id"], reviewer=reviewer).count() == 1
    assert Document.objects.get(pk=served["id"]).status == Document.Status.LABELED
    assert not Lease.objects.filter(document_id=served["id"]).exists()


def test_a_claim_picked_as_a_deadlocks_victim_serves_a_document(project, reviewer, reviewer_client, monkeypatch):
    document = DocumentFactory(project=project)
    calls = victim_once(monkeypatch, queue, "_offer_in_two_statements")
    response = post_json(reviewer_client, reverse("annotation:queue-next", args=[project.pk]))
    assert response.status_code == 200, response.content[:300]
    assert response.json()["document"]["id"] == document.pk
    assert len(calls) == 2
    assert Lease.objects.get(document=document).reviewer == reviewer


def test_inside_a_callers_transaction_the_deadlock_goes_to_the_caller(project, reviewer, monkeypatch):
    DocumentFactory(project=project)
    calls = victim_once(monkeypatch, queue, "_offer_in_two_statements")
    with pytest.raises(OperationalError), transaction.atomic():
        queue.next_document_for(reviewer=reviewer, project=project)
    assert len(calls) == 1


def test_an_annotation_from_the_api_picked_as_a_deadlocks_victim_is_stored_once(project, monkeypatch):
    from tests.api.conftest import client_with, service_key
    from tests.factories import MembershipFactory, UserFactory

    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    document = DocumentFactory(project=project)
    client = client_with(service_key(admin, [project], role="reviewer"))
    calls = victim_once(monkeypatch, labeling, "_first_answer_insert")
    body = {"document": document.pk, "labels": ["first_party"], "submission_id": "1b0c8a4e-2b7e-4f7e-9b1c-1d2e3f4a5b6d"}
    response = client.post(f"/api/v1/projects/{project.pk}/annotations", body, format="json")
    assert response.status_code == 201, response.content[:300]
    assert len(calls) == 2
    assert Annotation.objects.filter(document=document).count() == 1
