"""Every error has one shape, {"error": {"code", "message", "details"}}, and the right status."""

import pytest
from django.test import override_settings

from tests.api.conftest import assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(home):
    return client_with(personal_key(home.admin, [home.project]))


def test_400_lists_the_field_errors(home, admin_client):
    response = admin_client.post(f"/api/v1/projects/{home.project.pk}/labels", {"name": "No key"}, format="json")
    assert "key" in assert_error(response, 400, "invalid")["details"]


def test_400_for_malformed_json(home, admin_client):
    response = admin_client.generic(
        "POST", f"/api/v1/projects/{home.project.pk}/labels", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_400_for_an_unknown_label(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/annotations",
        {"document": home.queued.pk, "labels": ["no_such_label"]},
        format="json",
    )
    assert_error(response, 400, "invalid_labels")


def test_401_without_credentials(home):
    assert_error(client_with(None).get("/api/v1/projects"), 401, "not_authenticated")


def test_403_names_the_missing_scope(home):
    client = client_with(personal_key(home.admin, [home.project], ["predict"]))
    error = assert_error(client.get(f"/api/v1/projects/{home.project.pk}"), 403, "scope_missing")
    assert "'read'" in error["message"]


def test_404_for_a_project_that_does_not_exist(admin_client):
    assert_error(admin_client.get("/api/v1/projects/999999"), 404, "not_found")


def test_409_for_a_label_key_taken(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/labels", {"key": home.label.key, "name": "Again"}, format="json"
    )
    assert_error(response, 409, "conflict")


@override_settings(DOCKET_API_MAX_DOCUMENTS=2)
def test_413_for_too_many_documents_in_one_request(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"text": f"clause {i}"} for i in range(3)]},
        format="json",
    )
    error = assert_error(response, 413, "too_large")
    assert error["details"] == {"limit": 2, "received": 3}


def test_405_keeps_the_shape(home, admin_client):
    assert_error(admin_client.delete(f"/api/v1/projects/{home.project.pk}"), 405, "method_not_allowed")


def test_a_bug_is_500_in_the_error_shape_with_the_request_id(home, admin_client, monkeypatch):
    from api.views import projects

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(projects, "access_project", broken)
    response = admin_client.get(f"/api/v1/projects/{home.project.pk}", HTTP_X_REQUEST_ID="trace-500")
    assert_error(response, 500, "server_error")
    assert response["X-Request-ID"] == "trace-500"
