"""Database round trips of the main API operations a downstream system calls for one document.

Transactional tests, so the counts are those of a deployment: a test wrapped in a transaction would add a
savepoint pair around every write.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api.conftest import client_with, personal_key, service_key

pytestmark = pytest.mark.django_db(transaction=True)


def queries(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code in (200, 201), response.content[:300]
    return len(captured), response


def test_document_detail_and_project_take_at_most_eight_and_five_queries(home):
    client = client_with(personal_key(home.admin, [home.project]))
    base = f"/api/v1/projects/{home.project.pk}"
    # The key with its user, its projects, the document with its project and the caller's role, then what the
    # answer shows of the document.
    detail, response = queries(lambda: client.get(f"{base}/documents/{home.queued.pk}"))
    assert response.json()["id"] == home.queued.pk
    assert detail <= 8
    project, _ = queries(lambda: client.get(base))
    assert project <= 5


def test_an_annotation_from_automation_takes_at_most_twelve_queries(home):
    client = client_with(service_key(home.admin, [home.project], role="reviewer"))
    body = {
        "document": home.queued.pk,
        "labels": [home.label.key],
        "submission_id": "5f0c8a4e-2b7e-4f7e-9b1c-1d2e3f4a5b6d",
    }
    created, response = queries(
        lambda: client.post(f"/api/v1/projects/{home.project.pk}/annotations", body, format="json")
    )
    assert response.status_code == 201
    # The answer itself is one statement (annotation, labels, revision, audit event, status, lease), as from the
    # labeling page; the rest is the key, its projects and the project, and the idempotency bookkeeping.
    assert created <= 12


def test_a_prediction_takes_two_queries_the_key_and_the_project_with_everything_it_needs(
    home, trained_models, serving_cache
):
    from tests.api.conftest import add_model_versions

    add_model_versions(home, trained_models)
    client = client_with(service_key(home.admin, [home.project], ["predict"]))
    url = f"/api/v1/projects/{home.project.pk}/predict"
    queries(lambda: client.post(url, {"texts": ["We sell your data."]}, format="json"))  # loads the model
    # The key with its user and service account; then the project with the caller's role, whether the key covers
    # it, the active model's number and the taxonomy's version. The label keys of that version are known already.
    count, response = queries(lambda: client.post(url, {"texts": ["We sell your data."]}, format="json"))
    assert response.json()["model_version"] == 2
    assert count <= 2
