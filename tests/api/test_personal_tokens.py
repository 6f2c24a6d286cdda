"""My API tokens: every member holds personal tokens of their own, within what their role allows."""

import pytest

from annotation.exceptions import NotAllowed
from annotation.models import AuditEvent
from api import services
from api.models import ApiKey
from tests.api.conftest import assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db


def create(client, **data):
    return client.post("/accounts/tokens/", {"expires_in_days": "30", **data})


def issued_token(response) -> str:
    return response.context["issued"].token


def test_a_reviewer_creates_a_token_that_reads_and_predicts_in_their_project(client, home):
    client.force_login(home.reviewer)
    response = create(client, name="notebook", projects=[home.project.pk], scopes=["read", "predict"])
    assert response.status_code == 201
    token = issued_token(response)
    assert token in response.content.decode()  # shown once, in this response
    assert token not in client.get("/accounts/tokens/").content.decode()
    key = ApiKey.objects.get(user=home.reviewer)
    assert (key.kind, sorted(key.scopes), key.expires_at is not None) == ("personal", ["predict", "read"], True)
    assert AuditEvent.objects.filter(action="api_key.created", project=home.project, actor=home.reviewer).exists()

    api = client_with(token)
    assert api.get(f"/api/v1/projects/{home.project.pk}/documents").status_code == 200
    # The token reaches its project only, and never more than the reviewer's role.
    assert [p["id"] for p in api.get("/api/v1/projects").json()["results"]] == [home.project.pk]


def test_a_reviewer_cannot_give_their_token_write_or_admin(client, home):
    client.force_login(home.reviewer)
    response = create(client, name="too much", projects=[home.project.pk], scopes=["read", "write"])
    assert response.status_code == 200
    assert "allows only: predict, read" in response.content.decode()
    assert not ApiKey.objects.filter(user=home.reviewer).exists()
    with pytest.raises(NotAllowed):
        services.api_key_create(
            actor=home.reviewer, projects=[home.project], name="x", scopes=["admin"], kind="service"
        )


def test_another_projects_id_is_refused_and_nothing_is_written(client, home, away):
    client.force_login(home.reviewer)
    response = create(client, name="sneaky", projects=[away.project.pk], scopes=["read"])
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.filter(user=home.reviewer).exists()
    with pytest.raises(NotAllowed):
        services.api_key_create(actor=home.reviewer, projects=[away.project], name="x", scopes=["read"])


def test_an_admin_may_give_their_own_token_every_scope(client, home):
    client.force_login(home.admin)
    response = create(client, name="automation", projects=[home.project.pk], scopes=["read", "write", "admin"])
    assert response.status_code == 201
    assert client_with(issued_token(response)).get(f"/api/v1/projects/{home.project.pk}/keys").status_code == 200


def test_revoking_ones_own_token_stops_it_and_nobody_else_can(client, home):
    token = personal_key(home.reviewer, [home.project], ["read"])
    key = ApiKey.objects.get(user=home.reviewer)
    client.force_login(home.admin)
    assert client.post(f"/accounts/tokens/{key.pk}/revoke/").status_code == 404  # not the admin's own token
    client.force_login(home.reviewer)
    assert client.get("/accounts/tokens/").content.decode().count(f'data-key-id="{key.pk}"') == 1
    response = client.post(f"/accounts/tokens/{key.pk}/revoke/", follow=True)
    assert "It no longer works" in response.content.decode()
    assert_error(client_with(token).get("/api/v1/projects"), 401, "invalid_key")
    assert AuditEvent.objects.filter(action="api_key.revoked", actor=home.reviewer).count() == 1


def test_the_page_needs_a_login_and_a_form_needs_its_csrf_token(client, home):
    assert client.get("/accounts/tokens/").status_code == 302
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(home.reviewer)
    response = strict.post("/accounts/tokens/", {"name": "x", "projects": [home.project.pk], "scopes": ["read"]})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(user=home.reviewer).exists()
