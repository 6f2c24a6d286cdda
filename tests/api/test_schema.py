"""The API against its own OpenAPI schema: schemathesis generates requests for every operation from the schema
(drf-spectacular's) and sends them through WSGI; no response may be a 5xx or contradict the schema."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import add_model_versions, client_with, personal_key

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 15


def test_schema_is_served_and_valid_openapi_3(home):
    response = client_with(None).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert all(op.get("summary") and op.get("description") for op in operations)
    assert "apiKey" in schema["components"]["securitySchemes"]


def test_docs_page_loads_without_a_cdn(home):
    page = client_with(None).get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "cdn." not in html and "unpkg" not in html
    asset = [part.split('"')[0] for part in html.split('src="')[1:] if "swagger-ui-bundle" in part][0]
    from django.test import Client

    assert Client().get(asset).status_code in (200, 304) or asset.startswith("/static/")


@pytest.fixture
def wsgi_app_in_test_transaction(settings):
    """The real WSGI app, sharing the test's database transaction as Django's own test client does."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1000000/min"}}
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_api_conforms_to_its_schema(home, away, wsgi_app_in_test_transaction, trained_models, serving_cache, settings):
    # A real model serves predictions (a 503 would count as a server error); smaller limits keep it quick.
    add_model_versions(home, trained_models)
    settings.DOCKET_API_MAX_BATCH = 8
    settings.DOCKET_MAX_TEXT_CHARS = 2000
    home.admin.is_staff = True
    home.admin.save()
    token = personal_key(home.admin, [home.project])
    # Real ids for half of the cases, so generated requests reach the views' logic, not only the 404s.
    real_ids = {
        "project_id": [home.project.pk, away.project.pk],
        "document_id": [home.queued.pk, home.labeled.pk, away.queued.pk],
        "label_id": [home.label.pk, away.label.pk],
        "key_id": [home.extra["key"].pk, away.extra["key"].pk],
    }
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app_in_test_transaction)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), picks=st.lists(st.integers(0, 2), min_size=4, max_size=4))
        def run(case, picks):
            for (name, values), pick in zip(real_ids.items(), picks, strict=True):
                if case.path_parameters and name in case.path_parameters and pick < len(values):
                    case.path_parameters[name] = values[pick]
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            run()
        except Exception as error:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    assert not failures, "\n\n".join(failures)
