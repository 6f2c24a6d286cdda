"""Database round trips of the main API operations a downstream system calls for one document.

Transactional tests, so the counts are those of a deployment: a test wrapped in a transaction would add a
savepoint pair around every write.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api.conftest import client_with, personal_key, service_key
from tests.factories import AnnotationFactory, DocumentFactory

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


def _more_rows(side, n: int) -> None:
    """n more labelled documents (each with an annotation and its labels) and n more queued ones."""
    labels = list(side.project.taxonomy.labels.all()) if hasattr(side.project, "taxonomy") else [side.label]
    for _ in range(n):
        AnnotationFactory(
            document=DocumentFactory(project=side.project, status="labeled"),
            reviewer=side.reviewer,
            label_list=labels[:2],
        )
        DocumentFactory(project=side.project)


LISTS = (
    "",  # the project
    "/documents",
    "/documents?status=labeled",
    "/annotations",
    "/annotations/export",
    "/labels",
    "/taxonomy",
    "/flags",
    "/keys",
    "/models",
    "/training-runs",
)


@pytest.mark.parametrize("path", LISTS)
def test_a_list_asks_the_same_number_of_queries_for_one_row_and_for_a_page(home, path):
    """No operation that answers a list asks the database once per row: a page of 25 rows costs what one does."""
    client = client_with(personal_key(home.admin, [home.project]))
    url = f"/api/v1/projects/{home.project.pk}{path}"
    queries(lambda: client.get(url))  # per-process lookups (label keys of the taxonomy version) done once
    few, _ = queries(lambda: client.get(url))
    _more_rows(home, 24)
    many, response = queries(lambda: client.get(url))
    assert many == few, f"{path}: {few} queries with one row, {many} with 25"
    assert many <= 8, f"{path}: {many} queries"


def test_the_project_list_asks_the_same_number_of_queries_for_one_project_and_for_ten(home):
    from tests.api.conftest import build_side
    from tests.factories import MembershipFactory

    others = []
    for n in range(9):
        side = build_side(f"Project {n}")
        MembershipFactory(project=side.project, user=home.admin, role="admin")
        others.append(side.project)
    one = client_with(personal_key(home.admin, [home.project]))
    ten = client_with(personal_key(home.admin, [home.project, *others]))
    queries(lambda: one.get("/api/v1/projects"))
    few, response = queries(lambda: one.get("/api/v1/projects"))
    queries(lambda: ten.get("/api/v1/projects"))
    many, response = queries(lambda: ten.get("/api/v1/projects"))
    body = response.json()
    assert len(body["results"] if isinstance(body, dict) else body) == 10
    assert many == few, f"{few} queries for one project, {many} for ten"
