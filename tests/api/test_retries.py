"""What automation can retry without surprises: model switches with the version expected to serve, an
Idempotency-Key on every POST, submission ids, and bulk create that refuses bad items one by one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Document, Project
from api.models import StoredResponse
from learning.models import ModelVersion
from tests.api.conftest import assert_error, client_with, personal_key, service_key

pytestmark = pytest.mark.django_db


def _versions(side, count: int) -> None:
    """v1 .. v<count>, the newest active, the rest retired (no files needed: nothing here predicts)."""
    for number in range(1, count + 1):
        ModelVersion.objects.create(
            project=side.project,
            number=number,
            status="active" if number == count else "retired",
            kind="fast",
            taxonomy_version=1,
            label_keys=["a", "b"],
            artifact_path=f"/nowhere/v{number}",
        )


def _active(side) -> int:
    return ModelVersion.objects.get(project=side.project, status="active").number


@pytest.fixture
def admin_client(home):
    return client_with(personal_key(home.admin, [home.project]))


def test_a_rollback_retried_with_the_same_from_version_moves_once(home, admin_client):
    _versions(home, 3)
    url = f"/api/v1/projects/{home.project.pk}/models/rollback"
    first = admin_client.post(url, {"from_version": 3}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["number"] == 2
    error = assert_error(admin_client.post(url, {"from_version": 3}, format="json"), 409, "version_mismatch")
    assert error["details"] == {"expected": 3, "active": 2}
    assert _active(home) == 2


def test_a_promote_expecting_another_serving_version_changes_nothing(home, admin_client):
    _versions(home, 3)
    url = f"/api/v1/projects/{home.project.pk}/models/1/promote"
    assert_error(admin_client.post(url, {"from_version": 2}, format="json"), 409, "version_mismatch")
    assert _active(home) == 3
    assert admin_client.post(url, {"from_version": 3}, format="json").json()["number"] == 1
    # The same call again finds its own version serving: answered, not refused, and nothing moves.
    again = admin_client.post(url, {"from_version": 3}, format="json")
    assert again.status_code == 200 and again.json()["number"] == 1
    assert _active(home) == 1


def test_an_idempotency_key_replays_the_first_response(home):
    home.admin.is_staff = True
    home.admin.save()
    client = client_with(personal_key(home.admin, [home.project]))
    body = {"name": "Vendor contracts"}
    first = client.post("/api/v1/projects", body, format="json", HTTP_IDEMPOTENCY_KEY="create-vendor-1")
    again = client.post("/api/v1/projects", body, format="json", HTTP_IDEMPOTENCY_KEY="create-vendor-1")
    assert (first.status_code, again.status_code) == (201, 201), again.content
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Project.objects.filter(name="Vendor contracts").count() == 1
    # Without the key, the same body is a second request: the name is taken.
    assert_error(client.post("/api/v1/projects", body, format="json"), 409, "conflict")


def test_an_idempotency_key_retried_rollback_moves_once(home, admin_client):
    _versions(home, 3)
    url = f"/api/v1/projects/{home.project.pk}/models/rollback"
    first = admin_client.post(url, HTTP_IDEMPOTENCY_KEY="rollback-7")
    again = admin_client.post(url, HTTP_IDEMPOTENCY_KEY="rollback-7")
    assert first.json() == again.json() and first.json()["number"] == 2
    assert _active(home) == 2


def test_an_idempotency_key_reused_with_another_body_is_422(home, admin_client):
    url = f"/api/v1/projects/{home.project.pk}/labels"
    admin_client.post(url, {"key": "retention", "name": "Retention"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = admin_client.post(url, {"key": "sharing", "name": "Sharing"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert_error(response, 422, "idempotency_mismatch")
    # The same content in another spacing or key order is the same request.
    same = admin_client.post(
        url,
        data='{"name": "Retention", "key": "retention"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert same.status_code == 201 and same["Idempotent-Replayed"] == "true"


def test_idempotency_keys_belong_to_one_caller(home):
    one = client_with(personal_key(home.admin, [home.project]))
    other = client_with(service_key(home.admin, [home.project], role="admin"))
    url = f"/api/v1/projects/{home.project.pk}/labels"
    mine = one.post(url, {"key": "retention", "name": "Retention"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    theirs = other.post(url, {"key": "retention", "name": "Retention"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert mine.status_code == 201
    # The other client's request ran as its own (and found the key taken); it never saw the first answer.
    assert_error(theirs, 409, "conflict")
    assert not theirs.has_header("Idempotent-Replayed")


def test_a_stored_response_is_kept_24_hours(home, admin_client):
    url = f"/api/v1/projects/{home.project.pk}/labels"
    admin_client.post(url, {"key": "retention", "name": "Retention"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    StoredResponse.objects.update(created_at=StoredResponse.objects.get().created_at - timedelta(hours=25))
    later = admin_client.post(url, {"key": "retention", "name": "Retention"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert_error(later, 409, "conflict")  # run again, not replayed
    assert StoredResponse.objects.get().created_at > timezone.now() - timedelta(minutes=1)  # the old one is gone


def test_an_answer_not_about_the_request_is_not_stored(home, admin_client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/min"}}
    url = f"/api/v1/projects/{home.project.pk}/labels"
    admin_client.get(url)
    throttled = admin_client.post(url, {"key": "x1", "name": "X"}, format="json", HTTP_IDEMPOTENCY_KEY="t")
    assert throttled.status_code == 429
    assert not StoredResponse.objects.exists()


def test_a_malformed_idempotency_key_is_400(home, admin_client):
    url = f"/api/v1/projects/{home.project.pk}/labels"
    response = admin_client.post(url, {"key": "x1", "name": "X"}, format="json", HTTP_IDEMPOTENCY_KEY="has space")
    assert "Idempotency-Key" in assert_error(response, 400, "invalid")["details"]


def test_a_submission_id_reused_with_other_labels_is_422(home):
    client = client_with(service_key(home.admin, [home.project], role="reviewer"))
    url = f"/api/v1/projects/{home.project.pk}/annotations"
    submission = "5f0c8a4e-2b7e-4f7e-9b1c-1d2e3f4a5b6c"
    first = client.post(
        url, {"document": home.queued.pk, "labels": [home.label.key], "submission_id": submission}, format="json"
    )
    assert first.status_code == 201
    other_key = next(k for k in ("first_party", "third_party", "data_security") if k != home.label.key)
    changed = {"document": home.queued.pk, "labels": [other_key], "submission_id": submission}
    assert_error(client.post(url, changed, format="json"), 422, "idempotency_mismatch")
    elsewhere = {"document": home.labeled.pk, "labels": [home.label.key], "submission_id": submission}
    assert_error(client.post(url, elsewhere, format="json"), 422, "idempotency_mismatch")


def test_an_unknown_label_is_named_with_the_valid_keys(home):
    client = client_with(service_key(home.admin, [home.project], role="reviewer"))
    response = client.post(
        f"/api/v1/projects/{home.project.pk}/annotations",
        {"document": home.queued.pk, "labels": ["no_such_label"]},
        format="json",
    )
    error = assert_error(response, 400, "invalid_labels")
    assert error["details"]["unknown"] == ["no_such_label"]
    assert home.label.key in error["details"]["valid"] and home.label.key in error["message"]
    assert "Reload" not in error["message"]


def test_bulk_create_with_one_blank_text_stores_the_rest(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {
            "documents": [
                {"external_id": "a-1", "text": "We keep logs for 90 days."},
                {"external_id": "a-2", "text": "   "},
                {"external_id": "a-3", "text": 42},
                "not an object",
                {"external_id": "a-5", "text": "Fine.", "colour": "red"},
                {"external_id": "a-6", "text": "x" * 30_000},
                {"external_id": "a-7", "text": "Shared with vendors."},
            ]
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r["status"] for r in results] == ["created", *["rejected"] * 5, "created"]
    assert [r["external_id"] for r in results] == ["a-1", "a-2", "a-3", "", "a-5", "a-6", "a-7"]
    assert all(r["reason"] for r in results if r["status"] == "rejected")
    assert "text" in results[1]["reason"] and "colour" in results[4]["reason"]
    assert set(Document.objects.filter(project=home.project).values_list("external_id", flat=True)) >= {"a-1", "a-7"}


def test_bulk_create_with_nothing_usable_answers_each_item(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"external_id": "b-1", "text": ""}, {"external_id": "b-2", "text": home.queued.text}]},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert [(r["status"], r["external_id"]) for r in body["results"]] == [("rejected", "b-1"), ("duplicate", "b-2")]
    assert body["results"][1]["id"] == home.queued.pk


def test_a_key_issued_under_an_idempotency_key_is_never_stored_or_shown_twice(home, admin_client):
    url = f"/api/v1/projects/{home.project.pk}/keys"
    body = {"name": "intake-form", "scopes": ["predict"]}
    first = admin_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="issue-1")
    assert first.status_code == 201
    token = first.json()["token"]
    assert token not in StoredResponse.objects.get().body
    again = admin_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="issue-1")
    assert token not in again.content.decode()
    assert "shown only once" in assert_error(again, 409, "conflict")["message"]


def test_an_upload_retried_with_its_idempotency_key_queues_one_import(home, admin_client, artifact_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotation.models import ImportBatch

    url = f"/api/v1/projects/{home.project.pk}/imports"

    def upload(content: bytes):
        file = SimpleUploadedFile("clauses.txt", content)
        return admin_client.post(url, {"file": file}, format="multipart", HTTP_IDEMPOTENCY_KEY="upload-1")

    first, again = upload(b"One clause.\nAnother clause.\n"), upload(b"One clause.\nAnother clause.\n")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert ImportBatch.objects.filter(project=home.project).count() == 1
    assert_error(upload(b"A different file.\n"), 422, "idempotency_mismatch")
