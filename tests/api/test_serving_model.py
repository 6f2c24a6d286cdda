"""GET …/model: which model serves, for a key that may only predict, with an ETag to poll cheaply."""

import pytest

from learning.models import ModelVersion
from tests.api.conftest import add_model_versions, assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db


def test_a_predict_only_key_sees_the_serving_model_and_its_etag(home, trained_models):
    add_model_versions(home, trained_models)
    client = client_with(personal_key(home.admin, [home.project], ["predict"]))
    url = f"/api/v1/projects/{home.project.pk}/model"
    response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == 2 and body["taxonomy_version"] == body["model_taxonomy_version"]
    assert set(body["labels"]) == {"first_party", "third_party", "data_security"}
    assert response["ETag"].startswith('"')
    unchanged = client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert unchanged.status_code == 304 and unchanged["ETag"] == response["ETag"]
    ModelVersion.objects.filter(project=home.project).update(status="retired")
    ModelVersion.objects.filter(project=home.project, number=1).update(status="active")
    changed = client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert changed.status_code == 200 and changed.json()["model_version"] == 1
    assert changed["ETag"] != response["ETag"]


def test_before_the_first_model_the_version_is_null(home):
    client = client_with(personal_key(home.admin, [home.project], ["predict"]))
    body = client.get(f"/api/v1/projects/{home.project.pk}/model").json()
    assert body["model_version"] is None and body["labels"] == []


def test_a_read_only_key_is_refused_the_predict_scope(home):
    client = client_with(personal_key(home.admin, [home.project], ["read"]))
    assert_error(client.get(f"/api/v1/projects/{home.project.pk}/model"), 403, "scope_missing")
