"""Every endpoint for every role and scope: allowed, forbidden, and another project's object not found."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import ImportBatch
from tests.api.conftest import ALL, add_model_versions, assert_error, client_with, personal_key, service_key

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[Any, Any], str]  # (side giving the project, side giving the object) -> path
    scope: str
    role: str  # the least role that may call it
    ok: int
    body: Callable[[Any], Any] = lambda side: None
    has_object: bool = False
    body_format: str = "json"


def P(side) -> str:
    return f"/api/v1/projects/{side.project.pk}"


ENDPOINTS = [
    Endpoint("projects_retrieve", "get", lambda s, o: P(s), "read", "reviewer", 200),
    Endpoint("projects_update", "patch", lambda s, o: P(s), "admin", "admin", 200, lambda s: {"fast_retrain_every": 5}),
    Endpoint("keys_list", "get", lambda s, o: f"{P(s)}/keys", "admin", "admin", 200),
    Endpoint(
        "keys_create",
        "post",
        lambda s, o: f"{P(s)}/keys",
        "admin",
        "admin",
        201,
        lambda s: {"name": "catalog", "kind": "personal", "scopes": ["admin"]},
    ),
    Endpoint(
        "keys_revoke",
        "post",
        lambda s, o: f"{P(s)}/keys/{o.extra['key'].pk}/revoke",
        "admin",
        "admin",
        200,
        has_object=True,
    ),
    Endpoint("taxonomy_retrieve", "get", lambda s, o: f"{P(s)}/taxonomy", "read", "reviewer", 200),
    Endpoint("labels_list", "get", lambda s, o: f"{P(s)}/labels", "read", "reviewer", 200),
    Endpoint(
        "labels_create",
        "post",
        lambda s, o: f"{P(s)}/labels",
        "write",
        "admin",
        201,
        lambda s: {"key": "data_retention", "name": "Data retention"},
    ),
    Endpoint(
        "labels_update",
        "patch",
        lambda s, o: f"{P(s)}/labels/{o.label.pk}",
        "write",
        "admin",
        200,
        lambda s: {"name": "Renamed"},
        has_object=True,
    ),
    Endpoint("documents_list", "get", lambda s, o: f"{P(s)}/documents", "read", "reviewer", 200),
    Endpoint(
        "documents_retrieve",
        "get",
        lambda s, o: f"{P(s)}/documents/{o.queued.pk}",
        "read",
        "reviewer",
        200,
        has_object=True,
    ),
    Endpoint(
        "documents_bulk_create",
        "post",
        lambda s, o: f"{P(s)}/documents",
        "write",
        "admin",
        201,
        lambda s: {"documents": [{"text": "Cookies are kept for thirteen months."}]},
    ),
    Endpoint("annotations_list", "get", lambda s, o: f"{P(s)}/annotations", "read", "reviewer", 200),
    Endpoint("annotations_export", "get", lambda s, o: f"{P(s)}/annotations/export", "read", "admin", 200),
    Endpoint(
        "annotations_create",
        "post",
        lambda s, o: f"{P(s)}/annotations",
        "write",
        "reviewer",
        201,
        lambda s: {"document": s.queued.pk, "labels": [s.label.key]},
    ),
]
ENDPOINTS += [
    Endpoint(
        "predict",
        "post",
        lambda s, o: f"{P(s)}/predict",
        "predict",
        "reviewer",
        200,
        lambda s: {"texts": ["We share your email with advertisers."]},
    ),
    Endpoint("models_list", "get", lambda s, o: f"{P(s)}/models", "read", "reviewer", 200),
    Endpoint("models_retrieve", "get", lambda s, o: f"{P(s)}/models/1", "read", "reviewer", 200),
    Endpoint("models_bundle", "get", lambda s, o: f"{P(s)}/models/1/bundle", "admin", "admin", 200),
    Endpoint("models_promote", "post", lambda s, o: f"{P(s)}/models/1/promote", "admin", "admin", 200),
    Endpoint("models_rollback", "post", lambda s, o: f"{P(s)}/models/rollback", "admin", "admin", 200),
    Endpoint("training_runs_list", "get", lambda s, o: f"{P(s)}/training-runs", "read", "reviewer", 200),
    Endpoint(
        "training_runs_create",
        "post",
        lambda s, o: f"{P(s)}/training-runs",
        "write",
        "admin",
        202,
        lambda s: {"max_steps": 5},
    ),
    Endpoint(
        "training_runs_retrieve",
        "get",
        lambda s, o: f"{P(s)}/training-runs/{o.extra['run'].pk}",
        "read",
        "reviewer",
        200,
        has_object=True,
    ),
]
ENDPOINTS += [
    Endpoint(
        "imports_create",
        "post",
        lambda s, o: f"{P(s)}/imports",
        "write",
        "admin",
        202,
        lambda s: {"file": SimpleUploadedFile("clauses.jsonl", b'{"text": "Cookies last a year."}\n')},
        body_format="multipart",
    ),
    Endpoint(
        "imports_read",
        "get",
        lambda s, o: f"{P(s)}/imports/{o.extra['batch'].pk}",
        "read",
        "admin",
        200,
        has_object=True,
    ),
]
IDS = [e.name for e in ENDPOINTS]


@pytest.fixture(autouse=True)
def _models_on_both_sides(home, away, trained_models, serving_cache):
    from learning.models import TrainingRun

    for side in (home, away):
        add_model_versions(side, trained_models)
        side.extra["run"] = TrainingRun.objects.create(
            project=side.project, kind="fast", trigger="labels", status="succeeded"
        )
        side.extra["batch"] = ImportBatch.objects.create(project=side.project, file_name="in.jsonl", format="jsonl")


def call(endpoint: Endpoint, token: str | None, side, obj=None):
    obj = obj or side
    client = client_with(token)
    return getattr(client, endpoint.method)(endpoint.path(side, obj), endpoint.body(side), format=endpoint.body_format)


def key_with_role(side, role: str, scopes=ALL) -> str:
    if role == "admin":
        return personal_key(side.admin, [side.project], scopes)
    return service_key(side.admin, [side.project], scopes, role="reviewer")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_admin_with_the_scope_is_allowed(endpoint, home):
    response = call(endpoint, key_with_role(home, "admin", scopes=[endpoint.scope]), home)
    assert response.status_code == endpoint.ok, response.content[:500]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_reviewer_is_allowed_or_forbidden_by_role(endpoint, home):
    response = call(endpoint, key_with_role(home, "reviewer"), home)
    if endpoint.role == "reviewer":
        assert response.status_code == endpoint.ok, response.content[:500]
    else:
        assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_key_without_the_scope_is_forbidden(endpoint, home):
    others = [scope for scope in ALL if scope != endpoint.scope]
    assert_error(call(endpoint, key_with_role(home, "admin", scopes=others), home), 403, "scope_missing")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_another_projects_project_is_not_found(endpoint, home, away):
    assert_error(call(endpoint, key_with_role(home, "admin"), away), 404, "not_found")


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.has_object], ids=[e.name for e in ENDPOINTS if e.has_object]
)
def test_another_projects_object_is_not_found_under_own_project(endpoint, home, away):
    assert_error(call(endpoint, key_with_role(home, "admin"), home, obj=away), 404, "not_found")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_key_limited_to_one_project_does_not_reach_the_users_other_project(endpoint, home, away):
    from annotation.models import Membership

    Membership.objects.create(project=away.project, user=home.admin, role="admin")
    assert_error(call(endpoint, key_with_role(home, "admin"), away), 404, "not_found")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_no_key_is_unauthenticated(endpoint, home):
    response = call(endpoint, None, home)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_project_list_shows_only_projects_the_key_covers(home, away):
    from annotation.models import Membership

    Membership.objects.create(project=away.project, user=home.admin, role="admin")
    response = client_with(personal_key(home.admin, [home.project], ["read"])).get("/api/v1/projects")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [home.project.pk]


def test_project_list_needs_the_read_scope(home):
    response = client_with(personal_key(home.admin, [home.project], ["predict"])).get("/api/v1/projects")
    assert_error(response, 403, "scope_missing")


def test_reviewer_sees_only_their_own_annotations(home):
    token = service_key(home.admin, [home.project], role="reviewer")
    client = client_with(token)
    created = client.post(
        f"{P(home)}/annotations", {"document": home.queued.pk, "labels": [home.label.key]}, format="json"
    )
    assert created.status_code == 201
    listed = client.get(f"{P(home)}/annotations").json()["results"]
    assert [a["id"] for a in listed] == [created.json()["id"]]
    admin_view = client_with(personal_key(home.admin, [home.project], ["read"])).get(f"{P(home)}/annotations")
    assert len(admin_view.json()["results"]) == 2


def test_staff_creates_a_project_and_its_key_then_covers_it(home):
    home.admin.is_staff = True
    home.admin.save()
    client = client_with(personal_key(home.admin, [home.project], ["admin", "read"]))
    response = client.post("/api/v1/projects", {"name": "Vendor contracts", "multi_label": True}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["role"] == "admin"
    assert client.get(f"/api/v1/projects/{response.json()['id']}").status_code == 200


def test_non_staff_cannot_create_projects(home):
    client = client_with(personal_key(home.admin, [home.project], ["admin"]))
    assert_error(client.post("/api/v1/projects", {"name": "Mine"}, format="json"), 403, "forbidden")


def test_browser_session_uses_the_browsable_api(home, client):
    client.force_login(home.reviewer)
    response = client.get(f"{P(home)}/documents", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Documents" in response.content or b"document" in response.content
