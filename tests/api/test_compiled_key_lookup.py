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


def _predict_project_statement(home, *, superuser):
    from annotation import permissions

    name = "api.predict_project"
    values = {"project_id": home.project.pk, "user_id": home.admin.pk, "superuser": superuser, "key_id": 77}
    shape = statements._shape_of(values)
    return statements._shapes[(name, "values", shape)], permissions._column_names[name], values


@pytest.mark.parametrize("superuser", [False, True])
def test_predict_project_statement_matches_a_fresh_compilation(home, superuser):
    from annotation import permissions
    from api.auth import _with_key_covers
    from api.views.predict import _serving_columns
    from tests.factories import UserFactory

    caller = UserFactory(is_superuser=True) if superuser else home.admin
    issued = services.api_key_create(
        actor=caller, projects=[home.project], name="compiled", scopes=["predict"], kind="personal"
    )
    response = client_with(issued.token).post(
        f"/api/v1/projects/{home.project.pk}/predict", {"texts": ["x"]}, format="json"
    )
    assert response.status_code == 503, response.content  # no model yet, after the project was read
    compiled, names, _ = _predict_project_statement(home, superuser=superuser)
    key = issued.key
    values = {"project_id": home.project.pk, "user_id": caller.pk, "superuser": superuser, "key_id": key.pk}
    if superuser:
        fresh = permissions.Project.objects.filter(pk=home.project.pk)
    else:
        fresh = permissions._project_with_role(project_id=home.project.pk, user_id=caller.pk)
    fresh = fresh.annotate(**_with_key_covers(_serving_columns, key_id=key.pk))
    extra = names if superuser else (*names, "member_role")
    sql, params = _fresh(fresh.values(*statements._columns(permissions.Project), *extra))
    assert compiled.sql == sql
    assert compiled.params(values) == list(params)


def test_a_key_that_does_not_cover_the_project_is_refused_on_the_compiled_path(home, away):
    from tests.factories import MembershipFactory

    MembershipFactory(project=away.project, user=home.admin, role="admin")
    client = client_with(personal_key(home.admin, [home.project], ["predict"]))
    for _ in range(2):
        response = client.post(f"/api/v1/projects/{away.project.pk}/predict", {"texts": ["x"]}, format="json")
        assert_error(response, 404)
    assert (
        client.post(f"/api/v1/projects/{home.project.pk}/predict", {"texts": ["x"]}, format="json").status_code == 503
    )


def test_a_non_member_is_refused_on_the_compiled_path(home, away):
    token = personal_key(home.admin, [home.project], ["predict"])
    client = client_with(token)
    client.post(f"/api/v1/projects/{home.project.pk}/predict", {"texts": ["x"]}, format="json")
    ApiKey.objects.get(prefix=token.split("_")[1]).projects.add(away.project)
    response = client.post(f"/api/v1/projects/{away.project.pk}/predict", {"texts": ["x"]}, format="json")
    assert_error(response, 404)
