"""The API against its own OpenAPI schema: schemathesis generates requests for every operation from the schema
(drf-spectacular's), valid ones and invalid ones, sends them through WSGI and runs every check it has: no 5xx,
statuses, content types, headers and bodies as documented, valid requests accepted, invalid ones refused,
authentication never ignored, unsupported methods answered 405."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from tests.api.conftest import add_model_versions, client_with, personal_key

pytestmark = pytest.mark.django_db

# Per operation and mode; 30 operations x 2 modes x 8 keep the test around two minutes on a busy machine.
EXAMPLES_PER_OPERATION = 8
NEGATIVE_EXPECTED = ["400", "401", "403", "404", "405", "409", "413", "415", "429"]
POSITIVE_EXPECTED = ["2xx", "401", "403", "404", "409", "429"]
SCHEMA_CONFIG = {
    "checks": {
        # 413 is the documented answer of each limited operation to too many items, also when the schema's own
        # maxItems is what the generated request breaks.
        "negative_data_rejection": {"expected-statuses": NEGATIVE_EXPECTED},
        # No 5xx, ever: schemathesis would let them pass this check (not_a_server_error reports them anyway).
        "positive_data_acceptance": {"expected-statuses": POSITIVE_EXPECTED},
    },
    "operations": [
        {
            # A valid request whose answer depends on what no schema can say: an expiry must lie in the future;
            # an uploaded file whose content is no format Docket reads is 400 with the formats it does; a NUL
            # character in a name inside free-form `metadata` (OpenAPI 3.0 has no propertyNames) is 400.
            "include-operation-id": ["keys_create", "imports_create", "documents_bulk_create"],
            "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "400"]}},
        },
        {
            # Bulk create refuses a bad item in its result, one by one, and stores the rest: an item that breaks
            # the schema is answered 201 with that item rejected (the request itself stays 400 when malformed).
            "include-operation-id": ["documents_bulk_create"],
            "checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_EXPECTED, "201"]}},
        },
        {
            # A multipart form carries only text: a number or an object the generator puts in a text field
            # arrives as its characters, a valid string, and the upload is queued (202). A field sent twice is
            # refused (test_imports_api.py), and a valid upload's every other check still runs.
            "include-operation-id": ["imports_create"],
            "checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_EXPECTED, "202"]}},
        },
    ],
}


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
def api_run(home, away, wsgi_app_in_test_transaction, trained_models, serving_cache, settings):
    """What every case needs: a real model serving (a 503 would be a failure), a staff admin, and real ids."""
    add_model_versions(home, trained_models)
    settings.DOCKET_API_MAX_BATCH = 8
    settings.DOCKET_MAX_TEXT_CHARS = 2000
    home.admin.is_staff = True
    home.admin.save()
    return {
        "project_id": [home.project.pk, away.project.pk],
        "document_id": [home.queued.pk, home.labeled.pk, away.queued.pk],
        "label_id": [home.label.pk, away.label.pk],
        "key_id": [home.extra["key"].pk, away.extra["key"].pk],
    }


def test_api_conforms_to_its_schema(home, api_run, wsgi_app_in_test_transaction):
    real_ids = api_run
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        wsgi_app_in_test_transaction,
        config=SchemathesisConfig.from_dict(SCHEMA_CONFIG),
    )
    reading_token = personal_key(home.admin, [home.project])
    failures, cases = [], {"count": 0}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(
                case=operation.as_strategy(generation_mode=mode),
                picks=st.lists(st.integers(0, 2), min_size=4, max_size=4),
            )
            def run(case, picks):
                meta = case._meta
                # Real ids for most cases, so generated requests reach the views' logic, not only the 404s; but
                # never over a path that schemathesis made invalid on purpose.
                if meta is None or not meta.is_negative_at(ParameterLocation.PATH):
                    for (name, values), pick in zip(real_ids.items(), picks, strict=True):
                        if case.path_parameters and name in case.path_parameters and pick < len(values):
                            case.path_parameters[name] = values[pick]
                if case.query and (meta is None or not meta.is_negative_at(ParameterLocation.QUERY)):
                    # A cursor is opaque: only one a page gave is valid, and no schema can generate that.
                    case.query.pop("cursor", None)
                headers = {}
                if meta is None or not meta.is_negative_at(ParameterLocation.HEADER):
                    # A write may revoke a key or change a project: each gets a key of its own.
                    token = reading_token if case.method.upper() == "GET" else personal_key(home.admin, [home.project])
                    headers = {"Authorization": f"Bearer {token}"}
                cases["count"] += 1
                case.call_and_validate(headers=headers)

            try:
                run()
            except (Exception, BaseExceptionGroup) as error:  # collect every operation's failures, then report all
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {error}")
    print(f"schemathesis: {len(operations)} operations, {cases['count']} cases, all checks")
    assert not failures, "\n\n".join(failures)
