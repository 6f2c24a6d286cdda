"""Screenshots of the taxonomy and audit pages for docs/admin-guide.md, taken on the demo project.

Skipped unless DOCKET_SCREENSHOTS=1; then it writes docs/img/taxonomy-*.png and docs/img/audit-*.png:
    DOCKET_SCREENSHOTS=1 make test  (or pytest tests/browser/test_taxonomy_screenshots.py)
"""

import os
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.models import Project
from annotation.services import taxonomy
from tests.browser.conftest import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("DOCKET_SCREENSHOTS"), reason="set DOCKET_SCREENSHOTS=1 to refresh docs/img"),
]

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def shot(page, name, *, selector=None):
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=True)


def test_admin_guide_screenshots(new_page):
    call_command("load_demo", verbosity=0)
    project = Project.objects.get(name__startswith="Northwind")
    admin = project.memberships.get(user__username="admin").user
    base = f"/projects/{project.pk}/manage"
    try:
        from learning.models import ModelVersion

        # A model trained on today's first version, so the pages can show it going out of date.
        ModelVersion.objects.create(
            project=project,
            number=3,
            status="active",
            kind="fast",
            taxonomy_version=project.taxonomy.version,
            artifact_path="models/demo-3",
            label_keys=list(project.taxonomy.labels.values_list("key", flat=True)),
        )
    except ImportError:
        pass

    page = new_page(viewport={"width": 1280, "height": 860})
    log_in(page, "admin", "docket-admin")

    # A second level under Data Security, added through the form.
    page.goto(f"{base}/taxonomy/labels/new/?parent=data_security")
    page.fill("#id_key", "breach_notification")
    page.fill("#id_name", "Breach notification")
    page.fill("#id_shortcut", "b")
    page.fill("#id_description", "Telling people and regulators about a personal-data breach.")
    page.fill(
        "#id_guideline",
        "Use when the text is about **notifying** a breach: to whom, how fast, what is said.\n\n"
        "Example: *We will inform affected customers within 72 hours.*",
    )
    shot(page, "taxonomy-label-add")
    page.click("button[name=save]")
    page.wait_for_selector("#label-breach_notification")

    taxonomy.label_rename(label=project.taxonomy.labels.get(key="other"), actor=admin, name="Other / general")
    taxonomy.label_deprecate(label=project.taxonomy.labels.get(key="do_not_track"), actor=admin)

    # Merge: the preview before anything changes.
    page.goto(f"{base}/taxonomy/merge/")
    page.check("input[name=sources][value=user_choice]")
    page.check("input[name=sources][value=user_access]")
    page.check("input[name=into][value=new]")
    page.fill("#id_new_key", "individual_rights")
    page.fill("#id_new_name", "Individual rights")
    page.click("#preview-merge")
    page.wait_for_selector("#merge-preview")
    shot(page, "taxonomy-merge-preview")
    page.click("#apply-merge")
    page.wait_for_selector("#label-individual_rights")

    # Split: the preview says how many documents go back for re-review.
    page.goto(f"{base}/taxonomy/labels/third_party/split/")
    page.fill("#id_part-0-key", "processors")
    page.fill("#id_part-0-name", "Processors and service providers")
    page.fill("#id_part-1-key", "ad_partners")
    page.fill("#id_part-1-name", "Advertising and analytics partners")
    page.fill("#id_part-1-shortcut", "a")
    page.click("#preview-split")
    page.wait_for_selector("#apply-split")
    shot(page, "taxonomy-split-preview")
    page.click("#apply-split")
    page.wait_for_selector("#label-processors")

    page.goto(f"{base}/taxonomy/")
    shot(page, "taxonomy-editor")

    # A used label cannot be deleted; the message says what to do instead.
    page.goto(f"{base}/taxonomy/labels/data_retention/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_selector(".messages li.error")
    shot(page, "taxonomy-delete-refused")

    page.goto(f"{base}/taxonomy/versions/")
    shot(page, "taxonomy-versions")
    page.goto(f"{base}/taxonomy/versions/1/")
    shot(page, "taxonomy-version-mapping")
    page.goto(f"{base}/taxonomy/import/")
    shot(page, "taxonomy-import")

    page.goto(f"{base}/audit/?action=taxonomy.")
    shot(page, "audit-log")
    assert page.errors == []
