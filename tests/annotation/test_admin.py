"""The admin's import and export pages ask the same permission check as everything else."""

import pytest
from django.urls import reverse

from annotation.models import AuditEvent, ImportBatch
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_reviewer(project):
    user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=user, role="reviewer")
    return user


def test_staff_reviewer_is_refused_the_import_page(client, project, staff_reviewer):
    client.login(username=staff_reviewer.username, password=PASSWORD)
    assert client.get(reverse("admin:annotation_project_import", args=[project.pk])).status_code == 403


def test_staff_non_member_gets_not_found_for_another_projects_export(client, project):
    outsider = UserFactory(is_staff=True)
    client.login(username=outsider.username, password=PASSWORD)
    url = reverse("admin:annotation_project_export", args=[project.pk, "jsonl"])
    assert client.get(url).status_code == 404


def test_project_admin_downloads_a_streamed_export_and_it_is_audited(client, project):
    admin_user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin_user, role="admin")
    DocumentFactory(project=project, text="Exported clause.")
    client.login(username=admin_user.username, password=PASSWORD)
    response = client.get(reverse("admin:annotation_project_export", args=[project.pk, "csv"]))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("id,text,labels") and "Exported clause." in body
    assert AuditEvent.objects.filter(action="export.documents", actor=admin_user).exists()


def test_upload_with_unknown_format_shows_the_reason_and_stores_nothing(client, project):
    from django.core.files.uploadedfile import SimpleUploadedFile

    admin_user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin_user, role="admin")
    client.login(username=admin_user.username, password=PASSWORD)
    response = client.post(
        reverse("admin:annotation_project_import", args=[project.pk]),
        {"file": SimpleUploadedFile("terms.pdf", b"%PDF"), "text_field": "text", "id_field": "id"},
    )
    assert response.status_code == 200
    assert "nor Docket&#x27;s CSV, JSONL or text (.csv, .jsonl, .txt)" in response.content.decode()
    assert not project.import_batches.exists()


def test_import_result_page_of_another_project_is_hidden(client, project):

    other = project_with_labels()
    batch = ImportBatch.objects.create(project=other, file_name="theirs.csv", format="csv")
    admin_user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin_user, role="admin")
    client.login(username=admin_user.username, password=PASSWORD)
    response = client.get(reverse("admin:annotation_importbatch_change", args=[batch.pk]))
    assert response.status_code in (302, 403, 404)
    assert "theirs.csv" not in client.get(reverse("admin:annotation_importbatch_changelist")).content.decode()


def test_superuser_sees_taxonomies_read_only_with_a_link_to_the_versioned_editor(client, project):
    root = UserFactory(is_staff=True, is_superuser=True)
    client.login(username=root.username, password=PASSWORD)
    listing = client.get(reverse("admin:annotation_taxonomy_changelist")).content.decode()
    assert reverse("manage:taxonomy", args=[project.pk]) in listing
    label = project.taxonomy.labels.first()
    response = client.post(reverse("admin:annotation_label_change", args=[label.pk]), {"name": "Changed"})
    assert response.status_code == 403
    label.refresh_from_db()
    assert label.name != "Changed"
