"""Every role finds its whole job in the app, on any screen: import and export for a project admin who is not
staff (test_import_export_browser.py, with its own worker), legal review of flags, taxonomy merges that do what
their preview says, and phones at 390 px."""

import time

import pytest

from annotation.models import (
    Annotation,
    AnnotationRevision,
    AuditEvent,
    Document,
    Flag,
    Label,
)
from annotation.services.audit import audit_record
from annotation.services.labeling import annotation_submit
from learning.models import ModelVersion, QueuePriority
from tests.browser.conftest import log_in, wait_until_answerable
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def settle(page) -> None:
    """Let the labeling page finish its saves and its fetch of the next document before the test's database is
    emptied; a request still running on the live server would deadlock with the flush."""
    page.wait_for_selector("#save-status[data-pending='0']", state="attached")
    page.wait_for_load_state("networkidle")


def horizontal_overflow(page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def top_bar_overlaps(page) -> list[str]:
    """Pairs of top-bar links or buttons whose boxes intersect."""
    return page.evaluate(
        """() => {
          const items = [...document.querySelectorAll('header.top a, header.top button, header.top span')]
            .filter(e => e.offsetParent !== null);
          const boxes = items.map(e => [e.textContent.trim(), e.getBoundingClientRect()]);
          const hits = [];
          for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const [a, p] = boxes[i], [b, q] = boxes[j];
            if (p.left < q.right - 1 && q.left < p.right - 1 && p.top < q.bottom - 1 && q.top < p.bottom - 1
                && !items[i].contains(items[j]) && !items[j].contains(items[i])) hits.push(a + ' / ' + b);
          }
          return hits;
        }"""
    )


# --- Legal review -------------------------------------------------------------------------------------------------


def test_a_reviewer_flags_a_document_and_a_lead_resolves_it(new_page):
    project = project_with_labels(name="Incident notes")
    reviewer, lead = UserFactory(username="tom"), UserFactory(username="lena")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    MembershipFactory(project=project, user=lead, role="lead")
    document = DocumentFactory(project=project, external_id="inc-7", text="Counsel's memo on the March breach.")

    reviewer_page = new_page()
    log_in(reviewer_page, reviewer.username, PASSWORD)
    reviewer_page.goto(f"/projects/{project.pk}/label/")
    reviewer_page.wait_for_selector("#workspace[data-mode=queue]")
    wait_until_answerable(reviewer_page)
    reviewer_page.keyboard.press("f")
    reviewer_page.fill("#flag-comment", "This is a privileged legal memo.")
    reviewer_page.keyboard.press("Enter")
    reviewer_page.wait_for_selector("#empty-state:not([hidden])")
    assert Document.objects.get(pk=document.pk).status == Document.Status.FLAGGED

    lead_page = new_page()
    log_in(lead_page, lead.username, PASSWORD)
    lead_page.goto(f"/projects/{project.pk}/")
    assert lead_page.inner_text("#stat-flagged") == "1"
    lead_page.click("#legal-review-link")
    flag = Flag.objects.get(document=document)
    card = lead_page.locator(f"#flag-{flag.pk}")
    assert "tom" in card.inner_text() and "This is a privileged legal memo." in card.inner_text()
    card.locator("input[value=requeue]").check()
    card.locator("textarea[name=note]").fill("Not privileged after all: a summary for the privacy office.")
    card.locator("button[type=submit]").click()
    lead_page.wait_for_selector(".messages li:has-text('back in the review queue')")
    assert lead_page.inner_text("#open-count") == "0"

    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED and document.rereview_reason.startswith("Legal review:")
    actions = list(AuditEvent.objects.filter(project=project).order_by("id").values_list("action", "actor_label"))
    assert ("document.flag", "tom") in actions and ("flag.resolve", "lena") in actions
    # The reviewer gets the document again.
    reviewer_page.goto(f"/projects/{project.pk}/label/")
    reviewer_page.wait_for_selector("#workspace[data-mode=queue]")
    assert reviewer_page.get_attribute("#doc", "data-document-id") == str(document.pk)
    assert reviewer_page.errors == [] and lead_page.errors == []
    settle(reviewer_page)


# --- Taxonomy changes say and do the same thing -------------------------------------------------------------------


def test_the_merge_preview_counts_what_moves_and_suggestions_afterwards_carry_no_merged_away_label(new_page):
    project = project_with_labels(("first_party", "user_choice", "do_not_track"), name="Consent notices")
    admin, reviewer = UserFactory(username="priya"), UserFactory(username="sam")
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    for _i in range(5):  # the target's own annotations, which stay where they are
        annotation_submit(reviewer=reviewer, document=DocumentFactory(project=project), label_keys=["user_choice"])
    for _i in range(3):
        annotation_submit(reviewer=reviewer, document=DocumentFactory(project=project), label_keys=["do_not_track"])
    queued = DocumentFactory(project=project, text="We honour Global Privacy Control signals.")
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=project.taxonomy.version,
        label_keys=["first_party", "user_choice", "do_not_track"],
        artifact_path="m/1",
    )
    QueuePriority.objects.create(
        document=queued,
        project=project,
        score=0.9,
        model_version=1,
        probabilities={"first_party": 0.2, "user_choice": 0.35, "do_not_track": 0.45},
    )

    page = new_page()
    log_in(page, admin.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/manage/taxonomy/merge/")
    page.check("input[name=sources][value=do_not_track]")
    page.check("input[name=sources][value=user_choice]")
    page.check("input[name=into][value=existing]")
    page.select_option("#id_target", "user_choice")
    page.click("#preview-merge")
    preview = page.inner_text("#merge-preview")
    assert "3 annotations on 3 documents will be moved" in preview, preview
    page.click("#apply-merge")
    page.wait_for_selector("#label-user_choice")
    moved = AnnotationRevision.objects.filter(reason="taxonomy.merge").count()
    assert moved == 3  # what the preview said
    assert Annotation.objects.filter(labels__key="user_choice").count() == 8

    reviewer_page = new_page()
    log_in(reviewer_page, reviewer.username, PASSWORD)
    reviewer_page.goto(f"/projects/{project.pk}/label/")
    reviewer_page.wait_for_selector("#workspace[data-mode=queue]")
    assert reviewer_page.get_attribute("#doc", "data-document-id") == str(queued.pk)
    assert reviewer_page.locator(".label-choice[data-key=do_not_track]").count() == 0
    choice = reviewer_page.locator(".label-choice[data-key=user_choice]")
    assert "suggested" in choice.get_attribute("class") and choice.get_attribute("data-probability") == "0.800"
    assert page.errors == [] and reviewer_page.errors == []


def test_the_guideline_panel_follows_the_document_not_the_last_label(new_page):
    project = project_with_labels(name="Guidelines")
    Label.objects.filter(key="first_party").update(guideline="We collect it ourselves.")
    Label.objects.filter(key="third_party").update(guideline="Someone else receives it.")
    reviewer = UserFactory(username="ana")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    for text in ("First clause about collection.", "Second clause about sharing."):
        DocumentFactory(project=project, text=text)
    page = new_page()
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/label/")
    page.wait_for_selector("#workspace[data-mode=queue]")
    first = page.get_attribute("#doc", "data-document-id")
    wait_until_answerable(page)
    page.keyboard.press("2")
    assert "Someone else receives it." in page.inner_text("#guideline")
    page.keyboard.press("Enter")
    page.wait_for_function("first => document.getElementById('doc').dataset.documentId !== first", arg=first)
    assert "Someone else receives it." not in page.inner_text("#guideline")
    assert page.inner_text("#guideline-title") == "Guidelines"
    settle(page)


# --- Phones -------------------------------------------------------------------------------------------------------


def busy_project():
    """A project whose pages are as wide as they get: long names, many labels, models, a long audit log."""
    project = project_with_labels(
        [f"category_{i}_with_a_long_key" for i in range(12)], name="Northwind privacy review of vendor contracts"
    )
    admin = UserFactory(username="administrator.with.a.long.name", is_staff=True)
    reviewer = UserFactory(username="reviewer.with.a.long.name")
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    keys = list(Label.objects.filter(taxonomy__project=project).order_by("order").values_list("key", flat=True))
    long_text = "Vendor agrees to process personal data only on documented instructions. " * 12
    for i in range(6):
        document = DocumentFactory(project=project, text=f"{long_text} Clause {i}.", external_id=f"contract-{i:04d}")
        if i < 4:
            annotation_submit(reviewer=reviewer, document=document, label_keys=[keys[i]])
    for number, status in ((1, "retired"), (2, "active"), (3, "ready")):
        ModelVersion.objects.create(
            project=project,
            number=number,
            status=status,
            kind="fast" if number < 3 else "slow",
            taxonomy_version=project.taxonomy.version,
            label_keys=keys,
            artifact_path=f"m/{number}",
            train_label_count=20 * number,
            eval_label_count=5,
            macro_f1=0.5 + number / 10,
            micro_f1=0.6,
        )
    for _ in range(5):
        audit_record(
            action="taxonomy.edit",
            actor=admin,
            project=project,
            target=project.taxonomy,
            before={"guideline": "x" * 400},
            after={"guideline": "y" * 400, "changes": list(range(30))},
        )
    return project, admin, reviewer


def test_labeling_models_taxonomy_and_audit_pages_have_no_sideways_scroll_at_390_px(new_page):
    project, admin, reviewer = busy_project()
    page = new_page(viewport=PHONE)
    log_in(page, admin.username, PASSWORD)
    pages = {
        "labeling": f"/projects/{project.pk}/label/",
        "models": f"/projects/{project.pk}/models/",
        "taxonomy": f"/projects/{project.pk}/manage/taxonomy/",
        "audit": f"/projects/{project.pk}/manage/audit/",
        "project": f"/projects/{project.pk}/",
        "import": f"/projects/{project.pk}/manage/import/",
        "export": f"/projects/{project.pk}/manage/export/",
        "legal review": f"/projects/{project.pk}/legal-review/",
        "my work": f"/projects/{project.pk}/my-work/",
        "insights": f"/projects/{project.pk}/quality/",
    }
    wide = {}
    for name, url in pages.items():
        page.goto(url)
        if name == "labeling":
            page.wait_for_selector("#workspace[data-mode=queue]")
        overflow = horizontal_overflow(page)
        if overflow > 0:
            wide[name] = overflow
        assert top_bar_overlaps(page) == [], name
    assert wide == {}
    # The wide tables scroll inside their own box instead.
    page.goto(pages["audit"])
    assert page.evaluate(
        "(() => { const t = document.getElementById('audit'); return t.scrollWidth > t.clientWidth; })()"
    )
    assert page.errors == []


def test_labeling_works_one_handed_on_a_phone(new_page):
    project, admin, reviewer = busy_project()
    page = new_page(viewport=PHONE)
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/label/")
    page.wait_for_selector("#workspace[data-mode=queue]")
    document_id = int(page.get_attribute("#doc", "data-document-id"))
    label = page.locator(".label-choice").nth(5)
    label.scroll_into_view_if_needed()
    box = label.bounding_box()
    assert box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    label.click()
    wait_until_answerable(page)
    submit = page.locator("#submit-button")
    submit_box = submit.bounding_box()
    assert submit_box["y"] + submit_box["height"] <= PHONE["height"]  # pinned within the screen, under the thumb
    submit.click()
    page.wait_for_function("id => document.getElementById('doc').dataset.documentId !== String(id)", arg=document_id)
    deadline = time.monotonic() + 10
    while not Annotation.objects.filter(document_id=document_id, reviewer=reviewer).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert horizontal_overflow(page) == 0 and page.errors == []
    settle(page)
