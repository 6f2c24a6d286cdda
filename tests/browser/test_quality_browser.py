"""Two reviewers label one overlapped document differently; an admin settles it by keyboard on the adjudication
page, and the dashboard's agreement figures follow each step. With DOCKET_SCREENSHOTS=docs the dashboard and
adjudication pages are saved as docs/img/dashboard.png and docs/img/adjudication.png."""

import os
import re

import pytest

from annotation.models import Annotation, Document
from annotation.selectors import final_labels_for
from annotation.services.labeling import annotation_submit
from tests.browser.conftest import ARTIFACTS, ROOT, log_in, wait_until_answerable
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AGREED = [
    "We share your device identifiers with our analytics provider to measure how the app is used.",
    "Card numbers are encrypted at rest with keys held in a hardware security module.",
    "We collect your delivery address to ship the orders you place.",
    "Our payment processor receives your card number to charge you.",
    "Support chats are kept for 18 months and then deleted.",
    "Access to customer records requires two-factor authentication.",
    "We use your purchase history to recommend products.",
    "Advertising partners may set cookies on our pages.",
    "Backups are encrypted and stored in a separate region.",
    "We read your contacts only when you invite a friend.",
]
DISPUTED = "Your location is sent to our mapping partner, who also uses it to improve their own services."


def screenshot(page, name: str) -> None:
    target = ROOT / "docs" / "img" if os.environ.get("DOCKET_SCREENSHOTS") == "docs" else ARTIFACTS / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target / name, full_page=True)


def figure(page, selector: str) -> str:
    return page.inner_text(selector).strip()


def wait_for_answers(document, n: int, page) -> None:
    page.wait_for_function("() => document.getElementById('save-status')?.dataset.pending === '0'")
    for _ in range(100):
        if Annotation.objects.filter(document=document).count() >= n:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{document} never got {n} answers")


def test_two_reviewers_disagree_and_an_admin_adjudicates_by_keyboard(new_page):
    # first_party (1), third_party (2), data_security (3); every document is overlapped by two reviewers.
    project = project_with_labels(overlap_rate=1.0, overlap_reviewers=2, gold_rate=0.0, name="Northwind privacy review")
    alice, bob, admin = UserFactory(username="alice"), UserFactory(username="bob"), UserFactory(username="dana")
    MembershipFactory(project=project, user=alice)
    MembershipFactory(project=project, user=bob)
    MembershipFactory(project=project, user=admin, role="admin")
    for i, text in enumerate(AGREED):  # ten documents the two already agreed on: enough for figures
        document = DocumentFactory(project=project, text=text, random_key=0.5 + i / 100)
        key = ["first_party", "third_party", "data_security"][i % 3]
        annotation_submit(reviewer=alice, document=document, label_keys=[key])
        annotation_submit(reviewer=bob, document=document, label_keys=[key])
    disputed = DocumentFactory(project=project, text=DISPUTED, external_id="notice-4.2", metadata={"product": "Maps"})

    dashboard = new_page()
    log_in(dashboard, admin.username, PASSWORD)
    dashboard.goto(f"/projects/{project.pk}/quality/")
    assert figure(dashboard, "#agreement-units") == "10"
    assert figure(dashboard, "#agreement-observed .figure") == "1.00"
    assert figure(dashboard, "#stat-disputed") == "0"

    # Alice and Bob each get the document in turn and answer differently, by keyboard.
    for reviewer, key, answers in ((alice, "1", 1), (bob, "2", 2)):
        page = new_page()
        log_in(page, reviewer.username, PASSWORD)
        page.goto(f"/projects/{project.pk}/label/")
        page.wait_for_selector("#workspace[data-mode=queue]")
        wait_until_answerable(page)
        assert int(page.get_attribute("#doc", "data-document-id")) == disputed.pk
        # Bob does not see Alice's answer: nothing is pre-selected for him.
        assert page.locator(".label-choice[aria-pressed=true]").count() == 0
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        wait_for_answers(disputed, answers, page)
    assert Document.objects.get(pk=disputed.pk).status == Document.Status.LABELED

    dashboard.reload()
    assert figure(dashboard, "#agreement-units") == "11"
    assert figure(dashboard, "#agreement-observed .figure") == "0.91"  # 10 of 11 documents agree
    assert figure(dashboard, "#stat-disputed") == "1"
    consensus_before = figure(dashboard, "#agreement-consensus tr[data-reviewer=bob] .ci")
    assert "10 documents" in consensus_before  # the disputed document has no final label yet

    # The admin opens the adjudication queue and takes Bob's answer with B, then Enter.
    adjudication = dashboard
    adjudication.keyboard.press("Escape")
    adjudication.goto(f"/projects/{project.pk}/quality/adjudication/")
    assert int(adjudication.get_attribute("#adjudicate", "data-document-id")) == disputed.pk
    answers_text = adjudication.inner_text("#answers")
    assert "alice" in answers_text and "bob" in answers_text
    adjudication.keyboard.press("b")
    assert adjudication.is_checked("input[name=labels][value=third_party]")
    if os.environ.get("DOCKET_SCREENSHOTS"):
        screenshot(adjudication, "adjudication.png")
    adjudication.keyboard.press("Enter")
    adjudication.wait_for_selector("[data-state=empty]")
    final = final_labels_for([disputed.pk])[disputed.pk]
    assert (final.labels, final.basis) == (["third_party"], "adjudicated")
    assert {a.reviewer.username: list(a.labels.values_list("key", flat=True)) for a in disputed.annotations.all()} == {
        "alice": ["first_party"],
        "bob": ["third_party"],
    }

    dashboard.goto(f"/projects/{project.pk}/quality/")
    assert figure(dashboard, "#stat-disputed") == "0"
    assert figure(dashboard, "#agreement-observed .figure") == "0.91"  # reviewers still disagreed
    assert "11 documents" in figure(dashboard, "#agreement-consensus tr[data-reviewer=bob] .ci")
    assert figure(dashboard, "#agreement-consensus tr[data-reviewer=bob] .figure") == "1.00"
    assert figure(dashboard, "#agreement-consensus tr[data-reviewer=alice] .figure") == "0.91"
    assert re.search(r"\d", figure(dashboard, "#chart-labels"))
    if os.environ.get("DOCKET_SCREENSHOTS"):
        screenshot(dashboard, "dashboard.png")
    assert dashboard.errors == []
    assert dashboard.external_requests == []
