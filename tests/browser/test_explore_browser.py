"""A lead finds documents on Explore by words and by meaning, filters them, labels 20 at once, sees the batch in the
audit log and undoes it; a reviewer without the permission sees no bulk action. With DOCKET_SCREENSHOTS=docs the
Explore page is saved at 1280 px and on a phone as docs/img/explore.png and docs/img/explore-phone.png."""

import os

import numpy as np
import pytest

from annotation.models import Annotation, AuditEvent, BulkBatch, Document
from learning import services as learning_services
from learning.models import QueuePriority
from tests.browser.conftest import ARTIFACTS, ROOT, log_in
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEALTH = [
    "Please delete the health records you hold about me, including my {} test results.",
    "I want my medical history erased from your systems, especially the {} diagnosis.",
    "Remove every health questionnaire I filled in about {} from my account.",
    "Delete my fitness and heart-rate data synced from the {} app.",
]
CONDITIONS = ["blood", "allergy", "asthma", "diabetes", "migraine"]
OTHER = [
    "Your site sets advertising cookies before I click accept on the {} page.",
    "Why does the newsletter sign-up form on {} ask for my date of birth?",
    "The mobile app shares my location with a map provider while I browse {}.",
]
PLACES = ["checkout", "home", "careers", "support", "blog"]


def screenshot(page, name: str) -> None:
    target = ROOT / "docs" / "img" if os.environ.get("DOCKET_SCREENSHOTS") == "docs" else ARTIFACTS / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target / name, full_page=name.endswith("-full.png"))


def _project_with_embeddings():
    project = project_with_labels(
        ("health_data", "cookies", "location", "other"), name="Northwind data requests", gold_rate=0, overlap_rate=0
    )
    documents = []
    for template in HEALTH:
        for condition in CONDITIONS:
            source = "tickets" if len(documents) < 20 else "email"
            documents.append(
                DocumentFactory(project=project, text=template.format(condition), metadata={"source": source})
            )
    for template in OTHER:
        for place in PLACES:
            documents.append(
                DocumentFactory(project=project, text=template.format(place), metadata={"source": "tickets"})
            )
    # Suggestions as the labels' own words give them before the first model (model version 0).
    for document in documents:
        health = any(w in document.text for w in ("health", "medical", "heart"))
        QueuePriority.objects.create(
            document=document,
            project=project,
            score=0.0,
            model_version=0,
            probabilities={"health_data": 0.81 if health else 0.07, "cookies": 0.12, "location": 0.04, "other": 0.03},
        )
    # The queue's cold start embeds documents with the base body; the test does the same, in this process.
    classifier = learning_services._held_classifier(None, project)
    learning_services.embeddings_for(
        project_id=project.pk,
        body_id=classifier.body_id,
        document_ids=np.array([d.pk for d in documents]),
        encode=classifier.encode,
    )
    return project, documents


def test_a_lead_finds_labels_twenty_at_once_and_undoes_the_batch(new_page, artifact_dir):
    project, documents = _project_with_embeddings()
    lead, reviewer = UserFactory(username="lena"), UserFactory(username="ravi")
    MembershipFactory(project=project, user=lead, role="lead")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    health_tickets = {d.pk for d in documents[:20]}

    page = new_page({"width": 1280, "height": 900})
    log_in(page, lead.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/explore/")

    # By words: a prefix finds "delete" and "deleting"; the matches are highlighted.
    page.fill("input[name=words]", "delet*")
    page.click("#search-button")
    page.wait_for_selector("#results li.result")
    assert page.locator("#results li.result").count() == 10
    assert page.locator("#results mark").first.inner_text().lower().startswith("delet")
    screenshot(page, "explore.png")

    # By meaning: no word in common with the request, and still the health requests come first.
    page.fill("input[name=words]", "")
    page.fill("input[name=meaning]", "wipe my medical information")
    page.click("#search-button")
    page.wait_for_selector("#results li.result")
    first_texts = page.locator("#results li.result .snippet").all_inner_texts()[:5]
    assert all(any(w in t.lower() for w in ("health", "medical", "heart", "diagnosis")) for t in first_texts)
    screenshot(page, "explore-meaning.png")

    # Filters: tickets not labeled yet (the 20 health tickets and 15 others), nearest to a health deletion first.
    page.fill("input[name=meaning]", "delete my health data")
    if page.locator("details.explore-filters[open]").count() == 0:
        page.click("details.explore-filters summary")
    page.fill("#id_meta_key", "source")
    page.fill("#id_meta_value", "tickets")
    page.select_option("#id_labeled", "no")
    page.click("#search-button")
    page.wait_for_selector("#results li.result")
    assert page.inner_text("#result-count").startswith("35")
    shown = [int(x) for x in page.locator("#results li.result").evaluate_all("els => els.map(e => e.dataset.document)")]
    assert set(shown[:20]) == health_tickets  # the twenty health tickets are the twenty nearest

    # Label the twenty at once: tick them, choose the label, preview, apply.
    for pk in shown[:20]:
        page.check(f"input.select-row[value='{pk}']")
    assert page.inner_text("#selected-count") == "20 selected"
    page.check("input[name=labels][value=health_data]")
    page.click("#bulk-preview")
    page.wait_for_selector("#preview")
    assert page.inner_text("[data-group=new]").startswith("20")
    assert page.inner_text("[data-group=gold]").startswith("0")
    screenshot(page, "explore-preview.png")
    page.click("#bulk-apply")
    page.wait_for_selector("#batch-events")
    batch = BulkBatch.objects.get()
    assert page.locator("#batch-events tr[data-action='annotation.bulk']").count() == 20
    assert page.locator("#batch-events tr[data-action='bulk.apply']").count() == 1
    screenshot(page, "explore-batch.png")
    assert set(Annotation.objects.filter(bulk_batch=batch).values_list("document_id", flat=True)) == health_tickets
    assert AuditEvent.objects.filter(action="annotation.bulk", after__batch=str(batch.pk)).count() == 20

    # Undo the batch as a whole.
    page.click("#undo-batch")
    page.wait_for_selector("#undone")
    assert page.locator("#batch-events tr[data-action='annotation.bulk_undo']").count() == 20
    assert not Annotation.objects.exists()
    assert set(Document.objects.filter(pk__in=health_tickets).values_list("status", flat=True)) == {"queued"}
    assert page.errors == [] and page.external_requests == []

    # A reviewer without the permission: the same page, no bulk action anywhere.
    other = new_page({"width": 1280, "height": 900})
    log_in(other, reviewer.username, PASSWORD)
    other.goto(f"/projects/{project.pk}/explore/?words=health")
    other.wait_for_selector("#results li.result")
    assert other.locator("#bulk-panel").count() == 0
    assert other.locator("input.select-row").count() == 0

    # The page on a phone.
    phone = new_page({"width": 390, "height": 844})
    log_in(phone, lead.username, PASSWORD)
    phone.goto(f"/projects/{project.pk}/explore/?words=delet*")
    phone.wait_for_selector("#results li.result")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(phone, "explore-phone.png")
    phone.locator("#results li.result").first.scroll_into_view_if_needed()
    phone.evaluate("document.getElementById('results').scrollIntoView()")
    screenshot(phone, "explore-phone-results.png")
