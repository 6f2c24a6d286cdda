"""Bad rows and failed imports: a NUL character or deep nesting is a row's reason, never a database error; an
import that stops ends "failed" with its reason, keeps its file and can be run again."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DataError
from django.urls import reverse

from annotation.models import AuditEvent, Document, ImportBatch
from annotation.services import imports
from annotation.services.imports import ImportOptions, import_batch_create, import_batch_rerun, import_batch_run
from annotation.untrusted import MAX_NESTING
from tests.factories import PASSWORD, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


def run_import(project, content: str, name: str) -> ImportBatch:
    batch = import_batch_create(project=project, file_name=name, options=ImportOptions())
    return import_batch_run(batch=batch, stream=io.BytesIO(content.encode("utf-8")))


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_nul_in_metadata_rejects_that_row_with_its_line_and_keeps_the_others(project):
    lines = [
        json.dumps({"id": "ok", "text": "We keep logs for 30 days."}),
        json.dumps({"id": "bad", "text": "We share data.", "metadata": {"note": "a\u0000b"}}),
        json.dumps({"id": "bad-key", "text": "We sell data.", "source\u0000": "x"}),
    ]
    batch = run_import(project, "\n".join(lines) + "\n", "docs.jsonl")

    assert (batch.status, batch.created_count, batch.rejected_count) == ("completed", 1, 2)
    reasons = dict(batch.row_errors.values_list("line", "reason"))
    assert "NUL" in reasons[2] and "metadata.note" in reasons[2]
    assert "NUL" in reasons[3]
    assert list(Document.objects.filter(project=project).values_list("external_id", flat=True)) == ["ok"]


def test_nul_in_a_csv_cell_or_the_id_is_a_row_reason(project):
    batch = run_import(project, "id,text,team\nr1,Fine text.,legal\nr\x002,Other text.,x\nr3,Third.,a\x00b\n", "x.csv")
    assert (batch.status, batch.created_count, batch.rejected_count) == ("completed", 1, 2)
    assert sorted(batch.row_errors.values_list("line", flat=True)) == [3, 4]


def test_deeply_nested_row_is_rejected_not_a_recursion_error(project):
    too_deep = '{"text": "Deep.", "metadata": ' + "[" * 5000 + "]" * 5000 + "}"
    limit = json.dumps({"text": "Deep but allowed.", "metadata": nested(MAX_NESTING - 2)})
    batch = run_import(project, f'{{"text": "Flat."}}\n{too_deep}\n{limit}\n', "deep.jsonl")

    assert (batch.status, batch.created_count, batch.rejected_count) == ("completed", 2, 1)
    [(line, reason)] = batch.row_errors.values_list("line", "reason")
    assert line == 2 and "nested too deeply" in reason


def test_an_import_that_stops_on_an_unexpected_error_ends_failed_with_the_line(project, monkeypatch):
    def broken_flush(self):
        raise DataError("simulated outage")

    monkeypatch.setattr(imports._Builder, "flush", broken_flush)
    batch = import_batch_create(project=project, file_name="docs.txt", options=ImportOptions())
    with pytest.raises(DataError):
        import_batch_run(batch=batch, stream=io.BytesIO(b"One.\nTwo.\n"))

    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert "near line 2" in batch.error and "DataError" in batch.error
    assert batch.finished_at is not None
    assert not Document.objects.filter(project=project).exists()
    assert AuditEvent.objects.filter(action="import.failed", target_id=str(batch.pk)).exists()


def test_import_command_with_nul_rows_names_the_line(project, tmp_path, capsys):
    source = tmp_path / "docs.jsonl"
    source.write_text(
        json.dumps({"text": "Good."}) + "\n" + json.dumps({"text": "Bad.", "metadata": {"k": "\u0000"}}) + "\n"
    )
    call_command("import_documents", str(project.pk), str(source), "--no-progress")
    out = capsys.readouterr().out
    assert "1 documents imported" in out and "line 2: the line contains a NUL character" in out


def test_import_command_prints_one_line_with_the_line_number_when_the_import_stops(project, tmp_path, monkeypatch):
    def broken_flush(self):
        raise DataError("simulated outage")

    monkeypatch.setattr(imports._Builder, "flush", broken_flush)
    source = tmp_path / "docs.txt"
    source.write_text("One.\nTwo.\nThree.\n")
    with pytest.raises(CommandError) as refused:
        call_command("import_documents", str(project.pk), str(source), "--no-progress")
    message = str(refused.value)
    assert "\n" not in message and "near line 3" in message
    assert ImportBatch.objects.get(project=project).status == ImportBatch.Status.FAILED


@pytest.fixture
def staff_admin(client):
    project = project_with_labels()
    user = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=user, role="admin")
    client.login(username=user.username, password=PASSWORD)
    return project, user


def stored_upload(project, tmp_path, content: bytes, name: str = "clauses.csv") -> ImportBatch:
    path = tmp_path / name
    path.write_bytes(content)
    return import_batch_create(project=project, file_name=name, options=ImportOptions(), stored_path=str(path))


def test_a_failed_upload_keeps_its_file_shows_the_reason_and_runs_again(
    staff_admin, client, tmp_path, django_capture_on_commit_callbacks, monkeypatch
):
    project, user = staff_admin
    batch = stored_upload(project, tmp_path, b"id,text,labels\nc1,We sell data.,brand_new\n")
    imports.import_batch_run_stored(batch.pk)  # every row names a label the project lacks: refused
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED and batch.rerunnable
    assert Path(batch.stored_path).exists()

    page = client.get(reverse("admin:annotation_importbatch_change", args=[batch.pk]))
    assert "brand_new" in page.content.decode() and "Run this import again" in page.content.decode()

    # The admin fixes the cause (adds the label), then runs the same upload again.
    from annotation.services.taxonomy import label_add

    label_add(project=project, actor=user, key="brand_new", name="Brand new")
    queued = []
    monkeypatch.setattr("annotation.tasks.import_documents_task.delay", lambda batch_id: queued.append(batch_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:annotation_importbatch_rerun", args=[batch.pk]))
    assert response.status_code == 302
    assert queued == [batch.pk]
    batch.refresh_from_db()
    assert (batch.status, batch.error, batch.row_errors.count()) == (ImportBatch.Status.QUEUED, "", 0)

    imports.import_batch_run_stored(batch.pk)  # what the worker does with the queued task
    batch.refresh_from_db()
    assert (batch.status, batch.created_count) == (ImportBatch.Status.COMPLETED, 1)
    assert not Path(batch.stored_path).exists()  # a completed upload's file is removed
    assert AuditEvent.objects.filter(action="import.rerun", target_id=str(batch.pk)).exists()


def test_only_a_failed_import_with_its_file_can_run_again(staff_admin, tmp_path):
    project, user = staff_admin
    batch = stored_upload(project, tmp_path, b"id,text\nc1,Fine.\n")
    imports.import_batch_run_stored(batch.pk)
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.COMPLETED and not batch.rerunnable
    with pytest.raises(imports.ImportRejected):
        import_batch_rerun(batch=batch, actor=user)


def test_an_upload_whose_every_row_has_a_nul_ends_failed_with_the_line_and_can_run_again(staff_admin, tmp_path):
    project, user = staff_admin
    batch = stored_upload(project, tmp_path, b"id,text\nc1,Bad\x00text.\nc2,Also\x00bad.\n")
    imports.import_batch_run_stored(batch.pk)  # what the worker runs for an admin upload
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert "line 2" in batch.error and "NUL" in batch.error
    assert batch.rerunnable
    assert sorted(batch.row_errors.values_list("line", flat=True)) == [2, 3]
