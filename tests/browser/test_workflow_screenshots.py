"""Screenshots of import, export, legal review and the labeling page on a phone, for the docs.

They land in test-artifacts/screenshots/; with DOCKET_SCREENSHOTS=docs they replace docs/img/import-result.png,
export.png, legal-review.png and labeling-phone.png.
"""

import io
import json

import pytest

from annotation.services.imports import ImportOptions, import_batch_create, import_batch_run
from annotation.services.queue import document_flag
from tests.browser.conftest import log_in, wait_until_answerable
from tests.browser.test_screenshots import output_dir, realistic_project
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

VENDOR_ROWS = [
    {
        "id": "vc-101",
        "text": "The processor shall delete all customer data within 30 days of termination.",
        "labels": ["data_retention"],
        "source_title": "Vendor DPA: Lumen Analytics",
    },
    {"id": "vc-102", "text": "", "labels": ["third_party"], "source_title": "Vendor DPA: Lumen Analytics"},
    {
        "id": "vc-103",
        "text": "Sub-processors are listed in Annex III and notified 14 days before any change.",
        "labels": ["third_party", "policy_change"],
        "source_title": "Vendor DPA: Lumen Analytics",
    },
    {
        "id": "vc-104",
        "text": "Access to production data requires hardware-key sign-in.",
        "labels": ["security"],
        "source_title": "Vendor DPA: Lumen Analytics",
    },
    {
        "id": "vc-105",
        "text": "Customer may audit the processor once a year with 30 days' notice.",
        "source_title": "Vendor DPA: Lumen Analytics",
    },
]


def test_screenshots_of_import_export_legal_review_and_the_phone(new_page):
    project, reviewer = realistic_project()
    admin, lead = UserFactory(username="nadia.admin"), UserFactory(username="lena.lead")
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=lead, role="lead")
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)

    content = "".join(json.dumps(row) + "\n" for row in VENDOR_ROWS).encode()
    batch = import_batch_create(
        project=project, file_name="vendor-dpa-clauses.jsonl", options=ImportOptions(), user=admin
    )
    import_batch_run(batch=batch, stream=io.BytesIO(content))
    documents = list(project.documents.order_by("id"))
    document_flag(
        reviewer=reviewer,
        document=documents[2],
        comment="The ticket names the customer's solicitor and quotes their letter; legal should see it first.",
    )

    page = new_page(viewport=DESKTOP)
    log_in(page, admin.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/manage/import/{batch.pk}/")
    page.screenshot(path=out / "import-result.png", full_page=True)
    page.goto(f"/projects/{project.pk}/manage/export/")
    page.screenshot(path=out / "export.png", full_page=True)

    lead_page = new_page(viewport=DESKTOP)
    log_in(lead_page, lead.username, PASSWORD)
    lead_page.goto(f"/projects/{project.pk}/legal-review/")
    lead_page.locator(".resolve-form input[value=requeue]").first.check()
    lead_page.locator(".resolve-form textarea").first.fill(
        "No privileged advice in it; label the request as usual and keep the solicitor's name out of notes."
    )
    lead_page.screenshot(path=out / "legal-review.png", full_page=True)

    phone = new_page(viewport=PHONE)
    log_in(phone, reviewer.username, PASSWORD)
    phone.goto(f"/projects/{project.pk}/label/")
    phone.wait_for_selector("#workspace[data-mode=queue]")
    wait_until_answerable(phone)
    phone.screenshot(path=out / "labeling-phone.png")
    phone.locator(".label-choice[data-key=data_security]").scroll_into_view_if_needed()
    phone.screenshot(path=out / "labeling-phone-labels.png")
    assert page.errors == [] and lead_page.errors == [] and phone.errors == []
