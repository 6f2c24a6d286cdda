"""Importing a file through the API in another tool's format, following the import, exporting in each format."""

import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Document
from annotation.services.imports import import_batch_run_stored
from tests.api.conftest import ALL, assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db

LABEL_STUDIO_TASKS = [
    {
        "data": {"text": "We sell nothing.", "id": "ls-1"},
        "annotations": [{"result": [{"type": "choices", "value": {"choices": ["first_party"]}}], "completed_by": 1}],
    },
    {"data": {"text": "A second clause with no answer yet.", "id": "ls-2"}},
]


@pytest.fixture
def admin_api(home, artifact_dir):
    return client_with(personal_key(home.admin, [home.project], ALL))


def test_label_studio_upload_is_detected_imported_and_followed(home, admin_api):
    upload = SimpleUploadedFile("from-ls.json", json.dumps(LABEL_STUDIO_TASKS, indent=2).encode())
    queued = admin_api.post(f"/api/v1/projects/{home.project.pk}/imports", {"file": upload}, format="multipart")
    assert queued.status_code == 202, queued.content
    assert (queued.json()["format"], queued.json()["status"]) == ("label-studio", "queued")

    import_batch_run_stored(queued.json()["id"])  # what the worker does once the upload is committed
    followed = admin_api.get(f"/api/v1/projects/{home.project.pk}/imports/{queued.json()['id']}").json()

    assert (followed["status"], followed["created"], followed["annotations"]) == ("completed", 2, 1)
    assert Document.objects.filter(project=home.project, external_id="ls-1").exists()


def test_upload_of_no_known_format_is_refused_with_the_reason(home, admin_api):
    upload = SimpleUploadedFile("labels.xlsx", b"\xd0\xcf\x11\xe0 not a format Docket reads")
    response = admin_api.post(f"/api/v1/projects/{home.project.pk}/imports", {"file": upload}, format="multipart")
    body = assert_error(response, 400, "import_rejected")
    assert "Cannot tell the format of 'labels.xlsx'" in body["message"]


def test_a_form_field_sent_twice_is_refused_and_nothing_is_queued(home, admin_api):
    upload = SimpleUploadedFile("from-ls.json", json.dumps(LABEL_STUDIO_TASKS).encode())
    response = admin_api.post(
        f"/api/v1/projects/{home.project.pk}/imports",
        {"file": upload, "text_field": ["text", "body"]},
        format="multipart",
    )
    body = assert_error(response, 400)
    assert "text_field" in json.dumps(body["details"]) and "once" in json.dumps(body)
    assert not home.project.import_batches.exists()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("label-studio", "application/json"),
        ("doccano", "application/x-ndjson"),
        ("prodigy", "application/x-ndjson"),
        ("parquet", "application/vnd.apache.parquet"),
        ("hf-dataset", "application/zip"),
    ],
)
def test_export_in_each_format_names_its_type_and_file(home, admin_api, fmt, content_type):
    response = admin_api.get(f"/api/v1/projects/{home.project.pk}/annotations/export?format={fmt}")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == content_type
    assert f"project-{home.project.pk}." in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    if fmt == "parquet":
        assert pq.read_table(io.BytesIO(body)).num_rows == 2
