"""An admin upload is imported by a real Celery worker process on Redis, its result kept in PostgreSQL."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_celery_results.models import TaskResult

from annotation.models import Document, ImportBatch
from tests.factories import PASSWORD, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_admin_upload_is_imported_by_a_real_worker(celery_worker_process, client):
    project = project_with_labels()
    admin_user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin_user, role="admin")
    client.login(username=admin_user.username, password=PASSWORD)
    upload = SimpleUploadedFile("clauses.csv", b"id,text,labels\nc1,We sell nothing.,third_party\nc2,Second.,\n")

    response = client.post(
        reverse("admin:annotation_project_import", args=[project.pk]),
        {"file": upload, "text_field": "text", "id_field": "id", "label_field": "labels"},
    )

    assert response.status_code == 302
    batch = ImportBatch.objects.get(project=project)
    assert wait_for(lambda: ImportBatch.objects.get(pk=batch.pk).status == "completed"), (
        celery_worker_process.log_path.read_text()
    )
    assert Document.objects.filter(project=project).count() == 2
    assert wait_for(lambda: TaskResult.objects.filter(status="SUCCESS").exists())
    result = TaskResult.objects.get(status="SUCCESS", task_name="annotation.tasks.import_documents_task")
    assert '"created": 2' in result.result
    page = client.get(response["Location"])
    assert b"2</strong> documents imported" in page.content
