"""Import and export in the project's Manage area, for project admins who are not Docket staff."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import AuditEvent, Document, ImportBatch
from annotation.services.imports import import_batch_run_stored
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

BAD_ROW_CSV = (
    b"id,text,labels\nc1,We sell your email to partners.,third_party\nc2,,first_party\nc3,Logs kept 30 days.,\n"
)


@pytest.fixture
def admin_client(client, project):
    user = UserFactory(is_staff=False)
    MembershipFactory(project=project, user=user, role="admin")
    client.login(username=user.username, password=PASSWORD)
    client.user = user
    return client


def upload(client, project, content=BAD_ROW_CSV, name="clauses.csv", **extra):
    data = {"file": SimpleUploadedFile(name, content), "text_field": "text", "id_field": "id", "label_field": "labels"}
    return client.post(reverse("manage:import", args=[project.pk]), data, **extra)


def test_a_non_staff_admin_imports_and_the_result_page_says_what_was_stored_and_refused(
    admin_client, project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = upload(admin_client, project)
    batch = ImportBatch.objects.get(project=project)
    assert response.status_code == 302 and response["Location"].endswith(f"/manage/import/{batch.pk}/")
    assert len(enqueued) == 1 and batch.created_by == admin_client.user
    running = admin_client.get(response["Location"]).content.decode()
    assert 'id="import-running"' in running
    import_batch_run_stored(batch.pk)  # what the worker does (a real worker runs it in the browser test)
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="stored-count">2<' in page and 'id="refused-count">1<' in page
    assert "<td>3</td><td>missing text</td>" in page  # the bad row: its line and why
    assert Document.objects.filter(project=project).count() == 2
    status = admin_client.get(reverse("manage:import-batch-status", args=[project.pk, batch.pk])).json()
    assert status["finished"] and (status["created"], status["rejected"], status["annotations"]) == (2, 1, 1)


def test_the_upload_script_gets_json_back(admin_client, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        ok = upload(admin_client, project, HTTP_ACCEPT="application/json")
    batch = ImportBatch.objects.get(project=project)
    assert ok.json() == {"redirect": reverse("manage:import-batch", args=[project.pk, batch.pk])}
    refused = upload(admin_client, project, b"x", name="notes.docx", HTTP_ACCEPT="application/json")
    assert refused.status_code == 400 and "Cannot tell the format" in refused.json()["errors"]["file"][0]["message"]


def test_a_file_of_unknown_format_is_refused_on_the_form_and_nothing_is_stored(admin_client, project):
    response = upload(admin_client, project, b"anything", name="notes.docx")
    assert response.status_code == 400
    assert response.content.decode().count("Cannot tell the format") == 1
    assert not ImportBatch.objects.filter(project=project).exists()


def test_a_reviewer_may_not_import_or_export(client, project, reviewer):
    client.login(username=reviewer.username, password=PASSWORD)
    assert upload(client, project).status_code == 403
    for name, args in (("manage:import", []), ("manage:export", []), ("manage:documents-export", ["jsonl"])):
        assert client.get(reverse(name, args=[project.pk, *args])).status_code == 403
    assert not ImportBatch.objects.exists()


def test_another_projects_import_is_not_found(admin_client, project):
    from tests.factories import project_with_labels

    other = project_with_labels(name="Elsewhere")
    batch = ImportBatch.objects.create(project=other, file_name="x.csv", format="csv")
    assert admin_client.get(reverse("manage:import-batch", args=[project.pk, batch.pk])).status_code == 404


def test_the_export_page_offers_every_format_docket_has(admin_client, project):
    page = admin_client.get(reverse("manage:export", args=[project.pk])).content.decode()
    for url in (
        reverse("manage:documents-export", args=[project.pk, "jsonl"]),
        reverse("manage:documents-export", args=[project.pk, "csv"]),
        reverse("manage:taxonomy-export", args=[project.pk, "yaml"]),
        reverse("manage:taxonomy-export", args=[project.pk, "json"]),
        reverse("manage:audit-export", args=[project.pk, "csv"]),
        reverse("manage:audit-export", args=[project.pk, "jsonl"]),
    ):
        assert f'href="{url}"' in page


def test_a_non_staff_admin_exports_documents_with_labels_and_it_is_audited(admin_client, project):
    import_batch = ImportBatch.objects.create(project=project, file_name="seed.jsonl", format="jsonl")
    import io

    from annotation.services.imports import import_batch_run

    rows = [{"id": "e1", "text": "We share data with processors.", "labels": ["third_party"]}]
    import_batch_run(batch=import_batch, stream=io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode()))
    response = admin_client.get(reverse("manage:documents-export", args=[project.pk, "jsonl"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("application/x-ndjson")
    (record,) = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert (record["id"], record["labels"]) == ("e1", ["third_party"])
    event = AuditEvent.objects.get(action="export.documents")
    assert event.actor == admin_client.user and event.after == {"format": "jsonl"}
    assert admin_client.get(reverse("manage:documents-export", args=[project.pk, "xml"])).status_code == 404


def test_the_empty_project_page_links_to_the_import_page_not_the_django_admin(admin_client, project):
    page = admin_client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()
    assert f'href="{reverse("manage:import", args=[project.pk])}"' in page
    assert "admin pages" not in page


def test_a_failed_import_is_run_again_from_its_page_after_the_cause_is_fixed(
    admin_client, project, django_capture_on_commit_callbacks
):
    unknown_label = b"id,text,labels\nu1,We sell nothing.,advertising\n"
    with django_capture_on_commit_callbacks(execute=False):
        response = upload(admin_client, project, unknown_label)
    batch = ImportBatch.objects.get(project=project)
    import_batch_run_stored(batch.pk)
    page = admin_client.get(response["Location"]).content.decode()
    assert "Nothing was imported." in page and 'id="import-rerun"' in page
    from annotation.services import taxonomy

    taxonomy.label_add(project=project, actor=admin_client.user, key="advertising", name="Advertising")
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        admin_client.post(reverse("manage:import-batch-rerun", args=[project.pk, batch.pk]))
    assert len(enqueued) == 1
    import_batch_run_stored(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.created_count, batch.annotation_count) == ("completed", 1, 1)
