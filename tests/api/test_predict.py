"""Predict: real SetFit models, limits, 503 without a model, pinned versions, and a swap under load."""

import threading
import time

import numpy as np
import pytest
from django.db import connection
from django.test import override_settings

from learning import services, serving
from learning.models import ModelVersion
from tests.api.conftest import (
    TRAINING_TEXTS,
    add_model_versions,
    assert_error,
    build_side,
    client_with,
    personal_key,
    service_key,
)

LABELS = list(TRAINING_TEXTS)
TEXTS = ["We sell your browsing history to ad networks.", "All backups are encrypted with AES-256."]


@pytest.fixture
def with_models(home, trained_models, serving_cache):
    add_model_versions(home, trained_models)
    return home


def predict(client, side, body):
    return client.post(f"/api/v1/projects/{side.project.pk}/predict", body, format="json")


@pytest.mark.django_db
def test_predict_returns_labels_probabilities_and_versions(with_models, trained_models):
    client = client_with(service_key(with_models.admin, [with_models.project], ["predict"]))
    response = predict(client, with_models, {"texts": TEXTS})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == 2
    assert response["Server-Timing"].startswith("model;dur=")
    assert body["taxonomy_version"] == body["model_taxonomy_version"] == with_models.project.taxonomy.version
    assert body["unmapped_labels"] == []
    assert body["labels"] == LABELS
    assert len(body["results"]) == 2
    for result in body["results"]:
        assert set(result["probabilities"]) == set(LABELS)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert result["labels"] == [max(result["probabilities"], key=result["probabilities"].get)]


@pytest.mark.django_db
def test_predict_says_the_applications_time_beside_the_models(with_models):
    client = client_with(service_key(with_models.admin, [with_models.project], ["predict"]))
    response = predict(client, with_models, {"texts": TEXTS})
    assert response.status_code == 200, response.content
    timing = dict(entry.strip().split(";dur=") for entry in response["Server-Timing"].split(","))
    assert set(timing) == {"model", "app"}
    assert float(timing["app"]) >= float(timing["model"]) > 0


@pytest.mark.django_db
def test_predictions_equal_in_process_setfit(with_models, trained_models):
    from learning.ml.classifier import Classifier

    expected = Classifier.load(trained_models["v2"]).predict_proba(TEXTS)
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    results = predict(client, with_models, {"texts": TEXTS}).json()["results"]
    got = np.array([[r["probabilities"][k] for k in LABELS] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.django_db
def test_documents_form_echoes_ids(with_models):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    body = {"documents": [{"id": "form-1", "text": TEXTS[0]}, {"id": "form-2", "text": TEXTS[1]}]}
    results = predict(client, with_models, body).json()["results"]
    assert [r["id"] for r in results] == ["form-1", "form-2"]


@pytest.mark.django_db
def test_pinned_version_answers_while_another_is_active(with_models):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    pinned = predict(client, with_models, {"texts": TEXTS, "model_version": 1}).json()
    active = predict(client, with_models, {"texts": TEXTS}).json()
    assert (pinned["model_version"], active["model_version"]) == (1, 2)
    assert pinned["results"][0]["probabilities"] != active["results"][0]["probabilities"]


@pytest.mark.django_db
def test_unknown_pinned_version_is_not_found_and_a_failed_one_cannot_serve(with_models):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    assert_error(predict(client, with_models, {"texts": TEXTS, "model_version": 99}), 404, "not_found")
    ModelVersion.objects.create(
        project=with_models.project, number=3, status="failed", kind="fast", taxonomy_version=1, error="boom"
    )
    assert_error(predict(client, with_models, {"texts": TEXTS, "model_version": 3}), 503, "model_not_ready")


@pytest.mark.django_db
def test_no_model_yet_is_503_with_a_clear_message(home, serving_cache):
    client = client_with(personal_key(home.admin, [home.project], ["predict"]))
    error = assert_error(predict(client, home, {"texts": TEXTS}), 503, "model_not_ready")
    assert "no active model" in error["message"]


@pytest.mark.django_db
@override_settings(DOCKET_API_MAX_BATCH=3)
def test_too_many_texts_is_413(with_models):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    error = assert_error(predict(client, with_models, {"texts": ["a"] * 4}), 413, "too_large")
    assert error["details"] == {"limit": 3, "received": 4}


@pytest.mark.django_db
@override_settings(DOCKET_MAX_TEXT_CHARS=100)
def test_too_long_a_text_is_413(with_models):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    error = assert_error(predict(client, with_models, {"texts": ["short", "x" * 101]}), 413, "too_large")
    assert "Text 1" in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [{}, {"texts": []}, {"texts": "one string"}, {"texts": ["a"], "documents": [{"id": "1", "text": "a"}]}],
    ids=["nothing", "empty", "not-a-list", "both"],
)
def test_malformed_input_is_400(with_models, body):
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    assert_error(predict(client, with_models, body), 400, "invalid")


@pytest.mark.django_db
def test_multi_label_returns_every_label_above_threshold(db, trained_models, serving_cache):
    side = build_side("Multi project", multi_label=True)
    ModelVersion.objects.create(
        project=side.project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=1,
        label_keys=LABELS,
        artifact_path=str(trained_models["multi"]),
    )
    client = client_with(personal_key(side.admin, [side.project], ["predict"]))
    body = predict(client, side, {"texts": TEXTS}).json()
    assert body["multi_label"] is True
    for result in body["results"]:
        above = sorted(k for k, p in result["probabilities"].items() if p >= 0.5)
        assert sorted(result["labels"]) == above
    assert sum(body["results"][0]["probabilities"].values()) != pytest.approx(1.0)


@pytest.mark.django_db(transaction=True)
def test_cache_serves_the_old_model_while_the_new_one_loads(trained_models):
    """The swap itself: while v2 loads (slowly), callers get v1 at once; then everyone gets v2."""
    side = build_side("Cache project")
    add_model_versions(side, trained_models, active="v1")
    loading, release = threading.Event(), threading.Event()

    def slow_loader(path):
        if path.name == "v2":
            loading.set()
            release.wait(30)
        return type("Loaded", (), {"labels": LABELS, "multi_label": False})()

    cache = serving.ModelCache(loader=slow_loader)
    assert cache.active(side.project).number == 1
    ModelVersion.objects.filter(project=side.project, number=1).update(status="retired")
    ModelVersion.objects.filter(project=side.project, number=2).update(status="active")
    loaded = []

    def load_v2():
        try:
            loaded.append(cache.active(side.project).number)
        finally:
            connection.close()

    loader_thread = threading.Thread(target=load_v2)
    loader_thread.start()
    assert loading.wait(30)
    started = time.monotonic()
    assert cache.active(side.project).number == 1  # not blocked by the load in progress
    assert time.monotonic() - started < 1
    release.set()
    loader_thread.join(30)
    assert loaded == [2]
    assert cache.active(side.project).number == 2


@pytest.mark.django_db(transaction=True)
def test_model_swap_during_concurrent_predicts_fails_no_request(trained_models, serving_cache):
    """Clients predict in threads while an admin promotes v2 and rolls back: every request answers 200."""
    side = build_side("Swap project")
    add_model_versions(side, trained_models, active="v1")
    token = personal_key(side.admin, [side.project], ["predict"])
    statuses, versions, errors = [], [], []
    stop = threading.Event()

    def hammer():
        client = client_with(token)
        try:
            while not stop.is_set():
                response = predict(client, side, {"texts": TEXTS})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model_version"])
                else:
                    errors.append(response.content[:300])
        finally:
            connection.close()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        services.model_version_promote(
            version=ModelVersion.objects.get(project=side.project, number=2), actor=side.admin
        )
        deadline = time.monotonic() + 30
        while 2 not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
        services.model_version_rollback(project=side.project, actor=side.admin)
        time.sleep(1.0)
        n_before_end = len(versions)
        deadline = time.monotonic() + 30
        while (len(versions) == n_before_end or versions[-1] != 1) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors[:3]
    assert len(statuses) >= 8 and set(statuses) == {200}
    assert 1 in versions and 2 in versions
    assert versions[-1] == 1


@pytest.mark.django_db
def test_a_prediction_after_a_merge_carries_no_merged_away_label(with_models):
    from annotation.services import taxonomy

    trained_on = with_models.project.taxonomy.version
    taxonomy.labels_merge(
        project=with_models.project, actor=with_models.admin, source_keys=["third_party"], target_key="first_party"
    )
    client = client_with(personal_key(with_models.admin, [with_models.project], ["predict"]))
    body = predict(client, with_models, {"texts": TEXTS}).json()
    assert body["model_taxonomy_version"] == trained_on
    assert body["taxonomy_version"] == trained_on + 1
    assert "third_party" not in body["labels"] and body["unmapped_labels"] == []
    for result in body["results"]:
        assert "third_party" not in result["probabilities"] and "third_party" not in result["labels"]
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "body",
    [
        {"texts": ["We sell your data."]},
        {"texts": ["We sell your data.", "   ", "Données partagées avec des tiers. 個人情報"], "model_version": 2},
        {"texts": [""]},
        {"texts": ["A lone \ud800 surrogate."]},
        {"texts": ["A NUL \u0000 here."]},
        {"texts": ["x" * 20]},
        {"texts": ["x" * 21]},
        {"texts": ["x", 1]},
        {"texts": [None]},
        {"texts": [True]},
        {"texts": ["x"] * 5},
        {"texts": []},
        {"texts": "x"},
        {"texts": ["x"], "model_version": 0},
        {"texts": ["x"], "model_version": True},
        {"texts": ["x"], "model_version": "2"},
        {"texts": ["x"], "model_version": 1.0},
        {"texts": ["x"], "model_version": None},
        {"texts": ["x"], "documents": [{"id": "a", "text": "x"}]},
        {"texts": ["x"], "extra": 1},
        {"documents": [{"id": "a", "text": "x"}]},
        [],
    ],
)
@override_settings(DOCKET_MAX_TEXT_CHARS=20, DOCKET_API_MAX_BATCH=5)
def test_the_plain_texts_path_accepts_what_the_serializer_accepts_and_nothing_else(body):
    from api.views.predict import PredictInput, _plain_texts

    serializer = PredictInput(data=body)
    if _plain_texts(body) is None:
        return  # the serializer decides, as for every other body
    assert serializer.is_valid(), serializer.errors
    assert _plain_texts(body) == dict(serializer.validated_data)


def test_the_common_body_takes_the_plain_path():
    from api.views.predict import _plain_texts

    body = {"texts": ["We sell your data.", "Données partagées."], "model_version": 3}
    assert _plain_texts(body) is body
