"""Keys: stored hashed and shown once, revoked and expired keys stop working, use is recorded, changes audited."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import AuditEvent, Membership
from api import services
from api.models import ApiKey, ServiceAccount
from tests.api.conftest import assert_error, client_with, personal_key, service_key

pytestmark = pytest.mark.django_db


def test_key_is_stored_as_prefix_and_sha256_never_in_clear(home):
    issued = services.api_key_create(actor=home.admin, projects=[home.project], name="ci", scopes=["read"])
    stored = ApiKey.objects.get(pk=issued.key.pk)
    assert issued.token.startswith(f"dk_{stored.prefix}_")
    assert stored.secret_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    assert issued.token not in str(ApiKey.objects.filter(pk=stored.pk).values().get())


def test_secret_appears_only_in_the_create_response(home):
    client = client_with(personal_key(home.admin, [home.project], ["admin"]))
    created = client.post(
        f"/api/v1/projects/{home.project.pk}/keys", {"name": "catalog", "scopes": ["admin"]}, format="json"
    )
    assert created.status_code == 201
    token = created.json()["token"]
    listed = client.get(f"/api/v1/projects/{home.project.pk}/keys")
    assert token not in listed.content.decode()
    assert all("token" not in key for key in listed.json()["results"])


def test_wrong_secret_with_a_real_prefix_is_rejected(home):
    token = personal_key(home.admin, [home.project], ["read"])
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_error(client_with(forged).get("/api/v1/projects"), 401, "invalid_key")


def test_garbage_bearer_is_rejected(home):
    assert_error(client_with("not-a-key").get("/api/v1/projects"), 401, "invalid_key")


def test_revoked_key_stops_working_at_once(home):
    admin = client_with(personal_key(home.admin, [home.project], ["admin", "read"]))
    victim = client_with(personal_key(home.admin, [home.project], ["read"]))
    assert victim.get("/api/v1/projects").status_code == 200
    key_id = ApiKey.objects.filter(user=home.admin, scopes=["read"]).get().pk
    revoked = admin.post(f"/api/v1/projects/{home.project.pk}/keys/{key_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    error = assert_error(victim.get("/api/v1/projects"), 401, "invalid_key")
    assert "revoked" in error["message"]


def test_revoking_twice_is_a_conflict(home):
    admin = client_with(personal_key(home.admin, [home.project], ["admin"]))
    key = home.extra["key"]
    assert admin.post(f"/api/v1/projects/{home.project.pk}/keys/{key.pk}/revoke").status_code == 200
    assert_error(admin.post(f"/api/v1/projects/{home.project.pk}/keys/{key.pk}/revoke"), 409, "conflict")


def test_expired_key_is_refused(home):
    token = personal_key(home.admin, [home.project], ["read"], expires_at=timezone.now() + timedelta(hours=1))
    assert client_with(token).get("/api/v1/projects").status_code == 200
    an_hour_ago = timezone.now() - timedelta(hours=1)
    ApiKey.objects.filter(prefix=token.split("_")[1]).update(created_at=an_hour_ago, expires_at=timezone.now())
    error = assert_error(client_with(token).get("/api/v1/projects"), 401, "invalid_key")
    assert "expired" in error["message"]


def test_expiry_in_the_past_is_refused_at_creation(home):
    client = client_with(personal_key(home.admin, [home.project], ["admin"]))
    response = client.post(
        f"/api/v1/projects/{home.project.pk}/keys",
        {"name": "late", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"},
        format="json",
    )
    assert assert_error(response, 400, "invalid")["details"]["expires_at"]


def test_last_use_is_recorded(home):
    token = personal_key(home.admin, [home.project], ["read"])
    key = ApiKey.objects.get(prefix=token.split("_")[1])
    assert key.last_used_at is None
    client_with(token).get("/api/v1/projects")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_disabled_account_cannot_use_its_key(home):
    token = personal_key(home.admin, [home.project], ["read"])
    home.admin.is_active = False
    home.admin.save()
    assert_error(client_with(token).get("/api/v1/projects"), 401, "invalid_key")


def test_creation_and_revocation_are_audited(home):
    issued = services.api_key_create(actor=home.admin, projects=[home.project], name="ci", scopes=["read"])
    services.api_key_revoke(key=issued.key, actor=home.admin)
    actions = list(
        AuditEvent.objects.filter(project=home.project, target_id=str(issued.key.pk)).values_list("action", flat=True)
    )
    assert sorted(actions) == ["api_key.created", "api_key.revoked"]
    created = AuditEvent.objects.get(action="api_key.created", target_id=str(issued.key.pk))
    assert created.actor == home.admin
    assert issued.token not in str(created.after)


def test_service_key_acts_as_a_service_account_member_with_the_chosen_role(home):
    services.api_key_create(
        actor=home.admin,
        projects=[home.project],
        name="intake-form",
        scopes=["predict"],
        kind="service",
        role="reviewer",
    )
    account = ServiceAccount.objects.get(name="intake-form")
    assert not account.user.has_usable_password()
    assert Membership.objects.get(project=home.project, user=account.user).role == "reviewer"


def test_a_key_cannot_issue_a_key_with_more_scopes_than_it_has(home):
    client = client_with(personal_key(home.admin, [home.project], ["admin"]))
    response = client.post(
        f"/api/v1/projects/{home.project.pk}/keys", {"name": "wider", "scopes": ["admin", "write"]}, format="json"
    )
    assert_error(response, 403, "forbidden")


def test_keys_for_a_further_project_need_admin_rights_there(home, away):
    Membership.objects.create(project=away.project, user=home.admin, role="reviewer")
    client = client_with(personal_key(home.admin, [home.project], ["admin"]))
    response = client.post(
        f"/api/v1/projects/{home.project.pk}/keys",
        {"name": "both", "scopes": ["admin"], "projects": [away.project.pk]},
        format="json",
    )
    assert_error(response, 404, "not_found")  # the key does not cover the away project


def test_reviewer_service_key_cannot_manage_keys(home):
    token = service_key(home.admin, [home.project], role="reviewer")
    assert_error(client_with(token).get(f"/api/v1/projects/{home.project.pk}/keys"), 403, "forbidden")


# --- The Keys page ------------------------------------------------------------------------------------------


def test_keys_page_issues_a_key_and_shows_the_secret_once(home, client):
    client.force_login(home.admin)
    url = f"/projects/{home.project.pk}/keys/"
    response = client.post(url, {"name": "intake-form", "kind": "service", "scopes": ["predict"], "role": "reviewer"})
    assert response.status_code == 201
    key = ApiKey.objects.get(name="intake-form")
    page = response.content.decode()
    token_start = page.index(f"dk_{key.prefix}_")
    token = page[token_start : page.index("<", token_start)]
    assert key.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in client.get(url).content.decode()


def test_keys_page_revokes(home, client):
    client.force_login(home.admin)
    key = home.extra["key"]
    response = client.post(f"/projects/{home.project.pk}/keys/{key.pk}/revoke/", follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_keys_page_is_for_project_admins_only(home, away, client):
    client.force_login(home.reviewer)
    assert client.get(f"/projects/{home.project.pk}/keys/").status_code == 403
    assert client.get(f"/projects/{away.project.pk}/keys/").status_code == 404
