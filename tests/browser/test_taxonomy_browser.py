"""An admin builds a taxonomy in the browser, a reviewer labels with it, the admin merges two labels, and the
reviewer's own work shows the merged label."""

import pytest

from annotation.models import Annotation, AnnotationRevision, Label, Project
from tests.browser.conftest import log_in, wait_until_answerable
from tests.factories import PASSWORD, DocumentFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXTS = [
    "Our advertising partners receive a hashed email address to show you relevant offers.",
    "Payment data is processed on our behalf by a card processor bound by contract.",
    "We collect the delivery address you enter at checkout to ship your order.",
]


def add_label(page, *, key, name, shortcut, under=None):
    """Through the taxonomy page: "Add label", or "+ child" on the parent's row to nest the new one."""
    if under:
        page.click(f"#label-{under} a[title='Add a label under this one']")
    else:
        page.click("#add-label")
    page.fill("#id_key", key)
    page.fill("#id_name", name)
    page.fill("#id_shortcut", shortcut)
    page.click("button[name=save]")
    page.wait_for_selector(f"#label-{key}")


def label_current_document(page, shortcut, previous):
    """Choose a label by its key and press Enter; returns the id of the document that was labeled."""
    page.wait_for_function(
        "previous => { const doc = document.getElementById('doc');"
        " return !document.getElementById('workspace').hidden && doc.dataset.documentId"
        " && doc.dataset.documentId !== String(previous); }",
        arg=previous,
    )
    wait_until_answerable(page)
    document_id = int(page.get_attribute("#doc", "data-document-id"))
    page.keyboard.press(shortcut)
    page.keyboard.press("Enter")
    return document_id


def test_admin_builds_a_taxonomy_reviewer_labels_admin_merges_reviewer_sees_merged_label(new_page):
    admin = UserFactory(username="priya", is_staff=True)
    reviewer = UserFactory(username="tom")

    # 1. The admin creates a project with an empty taxonomy and builds two levels with shortcuts.
    admin_page = new_page()
    log_in(admin_page, admin.username, PASSWORD)
    admin_page.goto("/projects/new/")
    admin_page.fill("#id_name", "Vendor notices")
    admin_page.check("input[name=start][value=empty]")
    admin_page.click("#project-form button[type=submit]")
    admin_page.wait_for_url("**/manage/taxonomy/")
    project = Project.objects.get(name="Vendor notices")
    add_label(admin_page, key="collection", name="Collection", shortcut="1")
    add_label(admin_page, key="sharing", name="Sharing", shortcut="2")
    add_label(admin_page, key="ads", name="Ad networks", shortcut="3", under="sharing")
    add_label(admin_page, key="processors", name="Processors", shortcut="4", under="sharing")
    assert admin_page.get_attribute("#label-processors", "data-depth") == "1"
    assert [
        (label.key, label.parent.key if label.parent else None, label.shortcut)
        for label in Label.objects.filter(taxonomy__project=project).select_related("parent").order_by("order")
    ] == [("collection", None, "1"), ("sharing", None, "2"), ("ads", "sharing", "3"), ("processors", "sharing", "4")]

    # 2. The admin adds the reviewer on the People page; documents arrive.
    admin_page.goto(f"/projects/{project.pk}/manage/members/")
    admin_page.fill("#id_identifier", reviewer.username)
    admin_page.select_option("#id_role", "reviewer")
    admin_page.click("#member-form button[type=submit]")
    admin_page.wait_for_selector("#member-tom")
    for text in TEXTS:
        DocumentFactory(project=project, text=text)

    # 3. The reviewer labels all three on the labeling page with the taxonomy's shortcuts.
    reviewer_page = new_page()
    log_in(reviewer_page, reviewer.username, PASSWORD)
    reviewer_page.goto(f"/projects/{project.pk}/label/")
    labeled = {}
    previous = None
    for shortcut in ("3", "4", "1"):
        previous = label_current_document(reviewer_page, shortcut, previous)
        labeled[previous] = shortcut
    reviewer_page.wait_for_selector("#empty-state[data-state=done]")
    reviewer_page.wait_for_selector("#save-status[data-pending='0']", state="attached")
    keys = {a.document_id: list(a.labels.values_list("key", flat=True)) for a in Annotation.objects.all()}
    assert sorted(keys.values()) == [["ads"], ["collection"], ["processors"]]

    # 4. The admin merges the two sharing labels into one, after a preview of what it touches.
    admin_page.goto(f"/projects/{project.pk}/manage/taxonomy/merge/")
    admin_page.check("input[name=sources][value=ads]")
    admin_page.check("input[name=sources][value=processors]")
    admin_page.check("input[name=into][value=new]")
    admin_page.fill("#id_new_key", "recipients")
    admin_page.fill("#id_new_name", "Third-party recipients")
    admin_page.click("#preview-merge")
    assert "2 annotations on 2 documents will be moved" in admin_page.inner_text("#merge-preview")
    admin_page.click("#apply-merge")
    admin_page.wait_for_selector("#label-recipients")
    assert admin_page.get_attribute("#label-recipients", "data-depth") == "1"  # still under Sharing
    assert admin_page.locator("#label-ads").count() == 0

    # 5. The reviewer's own work shows the merged label where they had chosen either of the two.
    reviewer_page.goto(f"/projects/{project.pk}/my-work/")
    work = reviewer_page.inner_text("table.work")
    assert work.count("Third-party recipients") == 2 and "Collection" in work
    assert "Ad networks" not in work and "Processors" not in work
    # ...and the labeling page offers it with the first merged label's shortcut.
    reviewer_page.goto(f"/projects/{project.pk}/label/")
    choice = reviewer_page.locator(".label-choice[data-key=recipients]")
    assert "Third-party recipients" in choice.inner_text() and "3" in choice.inner_text()
    assert reviewer_page.locator(".label-choice[data-key=ads]").count() == 0

    merged = [a for a in Annotation.objects.all() if labeled[a.document_id] in ("3", "4")]
    for annotation in merged:
        assert list(annotation.labels.values_list("key", flat=True)) == ["recipients"]
        assert list(AnnotationRevision.objects.filter(annotation=annotation).values_list("reason", flat=True)) == [
            "create",
            "taxonomy.merge",
        ]
    assert admin_page.errors == [] and reviewer_page.errors == []
    assert admin_page.external_requests == [] and reviewer_page.external_requests == []
