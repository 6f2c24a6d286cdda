"""Bad input is a 400 in the one error shape, never a 500, and writes nothing: NUL characters, nesting beyond
the limit, wrong JSON types, unknown fields, empty filters; and the schema says what the API refuses."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Document, ImportBatch, Label, Project
from tests.api.conftest import assert_error, client_with, personal_key
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db

DEEP = '{"texts": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.fixture
def api(home):
    home.admin.is_staff = True
    home.admin.save()
    return client_with(personal_key(home.admin, [home.project]))


def raw_post(api, url, body: str):
    return api.post(url, data=body, content_type="application/json")


def test_nul_in_metadata_is_400_and_nothing_is_written(home, api):
    before = (Document.objects.count(), ImportBatch.objects.count())
    response = api.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"text": "Fine text."}, {"text": "Other text.", "metadata": {"note": "a\u0000b"}}]},
        format="json",
    )
    error = assert_error(response, 400, "invalid")
    assert "NUL" in error["message"]
    assert "documents[1].metadata.note" in error["details"]
    assert (Document.objects.count(), ImportBatch.objects.count()) == before


@pytest.mark.parametrize(
    "body",
    [
        {"texts": ["A NUL \u0000 here."]},
        {"documents": [{"id": "x\u0000", "text": "Fine."}]},
        {"texts": ["Fine."], "\u0000": 1},
    ],
)
def test_nul_anywhere_in_a_predict_body_is_400(home, api, body):
    assert_error(api.post(f"/api/v1/projects/{home.project.pk}/predict", body, format="json"), 400, "invalid")


@pytest.mark.parametrize("path", ["predict", "documents", "labels", "annotations"])
def test_deep_nesting_is_400_not_a_recursion_error(home, api, path):
    response = raw_post(api, f"/api/v1/projects/{home.project.pk}/{path}", DEEP)
    assert "nested too deeply" in assert_error(response, 400, "invalid")["message"]


def test_a_body_nested_just_below_the_limit_is_read(home, api):
    metadata: dict = {}
    for _ in range(28):
        metadata = {"a": metadata}
    response = api.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"text": "Nested metadata.", "metadata": metadata}]},
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "v1/projects", {"name": 0}, "name"),
        ("post", "v1/projects", {"name": "Typed", "lease_ttl_seconds": "60"}, "lease_ttl_seconds"),
        ("post", "v1/projects", {"name": "Typed", "multi_label": "yes"}, "multi_label"),
        ("patch", "P", {"eval_fraction": False}, "eval_fraction"),
        ("patch", "P", {"description": ["a", "b"]}, "description"),
        ("post", "P/predict", {"texts": [0]}, "texts"),
        ("post", "P/labels", {"key": 5, "name": "Five"}, "key"),
        ("post", "P/labels", {"key": "five", "name": ["a", "b"]}, "name"),
        ("post", "P/annotations", {"document": "1", "labels": ["first_party"]}, "document"),
        ("post", "P/keys", {"name": "k", "scopes": ["read"], "expires_at": 0}, "expires_at"),
        ("post", "P/training-runs", {"max_steps": 1.5}, "max_steps"),
        ("patch", "P", {"lease_ttl_seconds": 300, "leese_ttl_seconds": 30}, "leese_ttl_seconds"),
    ],
)
def test_wrong_json_types_and_unknown_fields_are_refused(home, api, method, path, body, field):
    url = "/api/" + path.replace("P", f"v1/projects/{home.project.pk}", 1) if path.startswith("P") else f"/api/{path}"
    projects_before = Project.objects.count()
    labels_before = Label.objects.count()
    response = getattr(api, method)(url, body, format="json")
    assert field in assert_error(response, 400, "invalid")["details"]
    assert (Project.objects.count(), Label.objects.count()) == (projects_before, labels_before)


@pytest.mark.parametrize(
    "query", ["status=", "label=", "external_id=", "page_size=", "page_size=abc", "page_size=0", "page_size=1.5"]
)
def test_an_empty_or_malformed_filter_is_400_not_ignored(home, api, query):
    DocumentFactory(project=home.project)
    assert_error(api.get(f"/api/v1/projects/{home.project.pk}/documents?{query}"), 400, "invalid")


@pytest.mark.parametrize("query", ["document=", "source=", "updated_after="])
def test_an_empty_annotation_filter_is_400(home, api, query):
    assert_error(api.get(f"/api/v1/projects/{home.project.pk}/annotations?{query}"), 400, "invalid")


def test_the_schema_says_what_the_api_refuses(home):
    schema = client_with(None).get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    predict = schema["paths"]["/api/v1/projects/{project_id}/predict"]["post"]["requestBody"]
    assert predict["required"] is True
    forms = [form["$ref"].rsplit("/", 1)[-1] for form in predict["content"]["application/json"]["schema"]["oneOf"]]
    assert forms == ["PredictInputTextsRequest", "PredictInputDocumentsRequest"]
    texts, documents = components["PredictInputTextsRequest"], components["PredictInputDocumentsRequest"]
    assert "texts" in texts["required"] and "documents" not in texts["properties"]
    assert "documents" in documents["required"] and "texts" not in documents["properties"]
    assert texts["additionalProperties"] is False and documents["additionalProperties"] is False
    assert texts["properties"]["texts"]["maxItems"] >= 1
    bulk = components["DocumentsBulkCreateRequest"]
    assert bulk["properties"]["documents"]["minItems"] == 1
    assert components["ProjectCreateInputRequest"]["additionalProperties"] is False
    name = components["ProjectCreateInputRequest"]["properties"]["name"]
    assert "\\x00" in name["pattern"]  # NUL refused, and said so


def test_export_format_is_selectable_as_documented(home, api):
    url = f"/api/v1/projects/{home.project.pk}/annotations/export"
    csv_response = api.get(f"{url}?format=csv")
    assert csv_response.status_code == 200
    assert csv_response["Content-Type"].startswith("text/csv")
    assert b"".join(csv_response.streaming_content).decode().startswith("id,text,labels")
    jsonl = api.get(f"{url}?format=jsonl")
    assert jsonl["Content-Type"].startswith("application/x-ndjson")
    assert json.loads(b"".join(jsonl.streaming_content).decode().splitlines()[0])["text"]
    assert "format" in assert_error(api.get(f"{url}?format=xml"), 400, "invalid")["details"]


# --- The labeling page's JSON calls ------------------------------------------------------------------------------


@pytest.fixture
def reviewer_page(home):
    client = Client()
    client.force_login(home.reviewer)
    return client


def test_labeling_page_calls_refuse_deep_nesting_and_nul(home, reviewer_page):
    next_url = reverse("annotation:queue-next", args=[home.project.pk])
    response = reviewer_page.post(
        next_url, data='{"after": ' + "[" * 5000 + "]" * 5000 + "}", content_type="application/json"
    )
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]

    annotate = reverse("annotation:document-annotate", args=[home.project.pk, home.queued.pk])
    body = {"labels": ["first_party"], "suggested_labels": ["first_party\u0000"]}
    response = reviewer_page.post(annotate, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["error"]
    assert not home.queued.annotations.exists()


# --- Pages --------------------------------------------------------------------------------------------------------


def test_a_nul_in_a_page_form_or_query_is_400_before_any_view(home):
    page = Client()
    page.force_login(home.admin)
    gold = reverse("quality:gold", args=[home.project.pk])
    response = page.post(gold, {"document": "doc\u0000", "labels": ["first_party"]})
    assert response.status_code == 400
    assert page.get(reverse("annotation:my-work", args=[home.project.pk]), {"q": "a\u0000"}).status_code == 400
    assert page.get(gold).status_code == 200
