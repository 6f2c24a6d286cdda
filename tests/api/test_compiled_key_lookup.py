"""The API key and the predict project are read with statements compiled once (annotation.statements): the
same SQL and parameters as a fresh compilation, and every refusal still holds on the compiled path."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import statements
from api import services
from api.models import ApiKey, ServiceAccount
from tests.api.conftest import assert_error, client_with, personal_key, service_key

pytestmark = pytest.mark.django_db


def _fresh(queryset):
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def test_key_lookup_matches_a_fresh_compilation(home):
    tokens = [personal_key(home.admin, [home.project], ["read"]) for _ in range(2)]
    for token in tokens:
        key = services.api_key_authenticate(token=token)
        assert key.prefix == token.split("_")[1]
    shape = statements._shape_of({"prefix": statements.Text("x")})
    compiled = statements._shapes[("api.key_by_prefix", "values", shape)]
    prefix = tokens[1].split("_")[1]
    with CaptureQueriesContext(connection) as captured:
        services.api_key_authenticate(token=tokens[1])
    fresh_sql, fresh_params = _fresh(
        services._key_by_prefix(prefix=prefix).values(
            *statements._columns(ApiKey),
            *statements._columns(type(home.admin), "user__"),
            *statements._columns(ServiceAccount, "user__service_account__"),
        )
    )
    assert compiled.sql == fresh_sql
    assert compiled.params({"prefix": statements.Text(prefix)}) == list(fresh_params)
    assert len(captured) == 1


def test_key_lookup_reads_the_user_and_service_account_with_the_key(home):
    token = service_key(home.admin, [home.project], ["predict"])
    services.api_key_authenticate(token=token)  # compiled
    with CaptureQueriesContext(connection) as captured:
        key = services.api_key_authenticate(token=token)
        assert key.user.service_account.project_id == home.project.pk
        assert key.user.service_account.user is key.user
    assert len(captured) == 1
    personal = services.api_key_authenticate(token=personal_key(home.admin, [home.project], ["read"]))
    with CaptureQueriesContext(connection) as captured:
        assert getattr(personal.user, "service_account", None) is None
    assert len(captured) == 0


def test_a_revoked_key_is_refused_on_the_compiled_path(home):
    token = personal_key(home.admin, [home.project], ["read"])
    client = client_with(token)
    assert client.get("/api/v1/projects").status_code == 200
    assert client.get("/api/v1/projects").status_code == 200  # the lookup is compiled by now
    services.api_key_revoke(key=ApiKey.objects.get(prefix=token.split("_")[1]), actor=home.admin)
    assert "revoked" in assert_error(client.get("/api/v1/projects"), 401, "invalid_key")["message"]


def test_an_unknown_prefix_is_refused_on_the_compiled_path(home):
    token = personal_key(home.admin, [home.project], ["read"])
    assert client_with(token).get("/api/v1/projects").status_code == 200
    prefix = token.split("_")[1]
    forged = token.replace(prefix, "0" * len(prefix), 1)
    assert_error(client_with(forged).get("/api/v1/projects"), 401, "invalid_key")


def test_a_key_of_another_project_is_refused_on_the_compiled_path(home, away):
    token = service_key(away.admin, [away.project], ["predict"])
    client = client_with(token)
    for _ in range(2):
        response = client.post(f"/api/v1/projects/{home.project.pk}/predict", {"texts": ["x"]}, format="json")
        assert_error(response, 404)
