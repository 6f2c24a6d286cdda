"""A project admin who is not Docket staff imports a file with a bad row and exports the labels, all in the app.

A module of its own: it runs a real Celery worker, which must not pick up the tasks other browser tests enqueue.
"""

import json

import pytest

from annotation.models import AuditEvent, ImportBatch
from tests.browser.conftest import log_in
from tests.factories import PASSWORD, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_project_admin_who_is_not_staff_imports_a_file_with_a_bad_row_and_exports_labels(
    new_page, celery_worker_process, tmp_path
):
    project = project_with_labels(name="Vendor contracts")
    admin = UserFactory(username="nadia", is_staff=False)
    MembershipFactory(project=project, user=admin, role="admin")
    rows = [
        {"id": "v-1", "text": "We share invoices with our payment processor.", "labels": ["third_party"]},
        {"id": "v-2", "text": "   "},  # the bad row: no text
        {"id": "v-3", "text": "Contracts are kept for seven years.", "labels": []},
    ]
    upload = tmp_path / "vendor-clauses.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    page = new_page()
    log_in(page, admin.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/")
    page.click("#import-link")  # the empty project says where imports happen, and it is a link
    page.wait_for_url(f"**/projects/{project.pk}/manage/import/")
    page.set_input_files("#id_file", str(upload))
    page.click("#import-submit")
    page.wait_for_url("**/manage/import/*/", timeout=30_000)
    page.wait_for_selector("#import-summary", timeout=60_000)  # the worker ran it; the page reloaded itself
    assert page.inner_text("#stored-count") == "2" and page.inner_text("#refused-count") == "1"
    assert "missing text" in page.inner_text("#row-errors") and "2" in page.inner_text("#row-errors td")
    batch = ImportBatch.objects.get(project=project)
    assert (batch.status, batch.created_by_id, batch.annotation_count) == ("completed", admin.pk, 1)

    page.click("a:has-text('Export')")
    page.wait_for_url("**/manage/export/")
    with page.expect_download() as download_info:
        page.click("#export-jsonl")
    exported = [json.loads(line) for line in open(download_info.value.path(), encoding="utf-8")]
    assert {r["id"]: r["labels"] for r in exported} == {"v-1": ["third_party"], "v-3": []}
    assert AuditEvent.objects.filter(action="export.documents", actor=admin).exists()
    assert page.errors == [] and page.external_requests == []
