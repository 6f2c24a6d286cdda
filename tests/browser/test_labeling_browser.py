"""A reviewer labels with the keyboard only, two reviewers at once never see the same document, and an earlier
answer is found and changed from My work."""

import pytest

from annotation.models import Annotation, AnnotationRevision, Document, Flag, Lease, Skip
from annotation.services.labeling import annotation_submit
from learning.models import QueuePriority
from tests.browser.conftest import log_in, wait_until_answerable
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXTS = [
    "We share your device identifiers with our analytics provider to measure how the app is used.",
    "Card numbers are encrypted at rest with keys held in a hardware security module.",
    "We collect your delivery address to ship the orders you place.",
    "Customer asks for a copy of every record we hold about them under Article 15.",
    "A misconfigured storage bucket exposed export files for two hours on 3 March.",
    "Support chats are kept for 18 months and then deleted.",
]


def current_id(page) -> int:
    page.wait_for_selector("#workspace[data-mode=queue], #workspace[data-mode=edit]")
    wait_until_answerable(page)
    return int(page.get_attribute("#doc", "data-document-id"))


def wait_for_other_document(page, previous: int) -> int:
    page.wait_for_function(
        "previous => { const doc = document.getElementById('doc');"
        " const ws = document.getElementById('workspace');"
        " return !ws.hidden && doc.dataset.documentId && doc.dataset.documentId !== String(previous); }",
        arg=previous,
    )
    return current_id(page)


def wait_until_saved(page) -> None:
    page.wait_for_selector("#save-status[data-pending='0']", state="attached")


def test_reviewer_labels_skips_goes_back_and_flags_with_the_keyboard_only(new_page):
    project = project_with_labels()  # first_party (1), third_party (2), data_security (3); single-label
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    documents = [
        DocumentFactory(
            project=project,
            text=text,
            metadata={"kind": "policy_clause", "source_title": f"Northwind Notice §{i}", "region": "EU"},
        )
        for i, text in enumerate(TEXTS)
    ]
    # The model is sure about the first one: it comes first and its suggestion is pre-selected.
    QueuePriority.objects.create(
        document=documents[0],
        project=project,
        score=0.99,
        model_version=2,
        probabilities={"first_party": 0.12, "third_party": 0.81, "data_security": 0.07},
    )

    page = new_page()
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/label/")
    keyboard = page.keyboard

    # 1. Accept the model's suggestion with Enter alone.
    first = current_id(page)
    assert first == documents[0].pk
    assert page.inner_text("#model-info").startswith("Model v2")
    assert page.get_attribute(".label-choice[data-key=third_party]", "aria-pressed") == "true"
    assert page.inner_text(".label-choice[data-key=third_party] .prob-text") == "81%"
    assert page.inner_text("#doc-title") == "Northwind Notice §0"
    keyboard.press("Enter")

    # 2. Choose a label by its key; the next document was prefetched and is there at once.
    second = wait_for_other_document(page, first)
    assert "No model yet" in page.inner_text("#model-info")
    keyboard.press("1")
    assert page.get_attribute(".label-choice[data-key=first_party]", "aria-pressed") == "true"
    keyboard.press("Enter")

    # 3. Skip.
    third = wait_for_other_document(page, second)
    keyboard.press("s")

    # 4. Label, then go back (U) to change it.
    fourth = wait_for_other_document(page, third)
    keyboard.press("3")
    keyboard.press("Enter")
    fifth = wait_for_other_document(page, fourth)
    wait_until_saved(page)
    keyboard.press("u")
    page.wait_for_selector("#workspace[data-mode=edit]")
    assert current_id(page) == fourth
    assert page.get_attribute(".label-choice[data-key=data_security]", "aria-pressed") == "true"
    keyboard.press("1")
    keyboard.press("Enter")
    page.wait_for_selector("#workspace[data-mode=queue]")
    assert current_id(page) == fifth

    # 5. Flag the fifth for legal review with a comment.
    keyboard.press("f")
    page.wait_for_selector("#flag-dialog[open]")
    keyboard.type("Mentions a named customer's health condition.")
    keyboard.press("Enter")
    sixth = wait_for_other_document(page, fifth)

    # 6. The help overlay opens and closes with ?.
    keyboard.press("?")
    page.wait_for_selector("#help-dialog[open]")
    assert "Flag the document for legal review" in page.inner_text("#help-dialog")
    keyboard.press("?")
    page.wait_for_selector("#help-dialog:not([open])", state="attached")

    # 7. Label the last one; only the skipped document is left, and it is not offered again.
    keyboard.press("2")
    keyboard.press("Enter")
    page.wait_for_selector("#empty-state[data-state=skipped]")
    wait_until_saved(page)
    assert page.errors == []
    assert page.external_requests == []

    answers = {
        a.document_id: sorted(a.labels.values_list("key", flat=True))
        for a in Annotation.objects.filter(reviewer=reviewer)
    }
    assert answers == {
        first: ["third_party"],
        second: ["first_party"],
        fourth: ["first_party"],
        sixth: ["third_party"],
    }
    accepted = Annotation.objects.get(document_id=first)
    assert accepted.suggestion_accepted is True and accepted.model_version_shown == 2
    assert accepted.suggested_labels == ["third_party"]
    assert all(a.seconds_spent is not None and a.seconds_spent >= 0 for a in Annotation.objects.all())
    changed = Annotation.objects.get(document_id=fourth)
    assert list(AnnotationRevision.objects.filter(annotation=changed).values_list("reason", "label_keys")) == [
        ("create", ["data_security"]),
        ("edit", ["first_party"]),
    ]
    assert Skip.objects.filter(document_id=third, reviewer=reviewer).exists()
    flag = Flag.objects.get(document_id=fifth)
    assert flag.comment == "Mentions a named customer's health condition." and flag.reviewer == reviewer
    statuses = dict(Document.objects.values_list("id", "status"))
    assert statuses[fifth] == Document.Status.FLAGGED
    assert statuses[third] == Document.Status.QUEUED
    assert {statuses[d] for d in (first, second, fourth, sixth)} == {Document.Status.LABELED}
    assert not Lease.objects.exists()


def test_two_reviewers_at_once_never_see_the_same_document(new_page):
    project = project_with_labels()
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    for user in (alice, bob):
        MembershipFactory(project=project, user=user)
    documents = [DocumentFactory(project=project) for _ in range(9)]

    pages = {}
    for user in (alice, bob):
        pages[user.username] = new_page()
        log_in(pages[user.username], user.username, PASSWORD)
        pages[user.username].goto(f"/projects/{project.pk}/label/")
    seen: dict[str, list[int]] = {"alice": [], "bob": []}
    done = set()
    # Take turns, so both always hold a document (and a prefetched one) at the same time.
    for turn in range(20):
        name = ("alice", "bob")[turn % 2]
        if name in done:
            continue
        page = pages[name]
        page.wait_for_selector("#workspace[data-mode=queue], #empty-state:not([hidden])")
        if page.is_visible("#empty-state"):
            done.add(name)
            continue
        doc_id = current_id(page)
        if seen[name] and seen[name][-1] == doc_id:
            continue
        seen[name].append(doc_id)
        if turn == 4:
            # A reload hands the reviewer the very same document back.
            page.reload()
            assert current_id(page) == doc_id
        page.keyboard.press(str(1 + turn % 3))
        page.keyboard.press("Enter")
        page.wait_for_function(
            "previous => document.getElementById('doc').dataset.documentId !== String(previous)"
            " || !document.getElementById('empty-state').hidden",
            arg=doc_id,
        )
    for page in pages.values():
        # Whoever ran out first saw "held by other reviewers"; once both are done, a reload says "done".
        page.wait_for_selector("#empty-state:not([hidden])")
        wait_until_saved(page)
    for page in pages.values():
        page.reload()
        page.wait_for_selector("#empty-state[data-state=done]")
        assert page.errors == []

    assert set(seen["alice"]).isdisjoint(seen["bob"]), seen
    assert sorted(seen["alice"] + seen["bob"]) == sorted(d.pk for d in documents)
    assert seen["alice"] and seen["bob"]
    assert Annotation.objects.count() == len(documents)
    assert set(Annotation.objects.values_list("reviewer__username", flat=True)) == {"alice", "bob"}
    assert not Document.objects.filter(status=Document.Status.QUEUED).exists()


def test_reviewer_finds_an_earlier_answer_in_my_work_and_changes_it(new_page):
    project = project_with_labels()
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    target = DocumentFactory(project=project, text="Call recordings are deleted after 90 days.")
    other = DocumentFactory(project=project, text="We collect your delivery address.")
    for document in (target, other):
        annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])

    page = new_page()
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/my-work/")
    page.fill("input[name=q]", "recordings")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "q=recordings" in url)
    assert page.locator("table.work tbody tr").count() == 1
    page.click("table.work a.btn")
    page.wait_for_selector("#workspace[data-mode=edit]")
    assert current_id(page) == target.pk
    assert page.get_attribute(".label-choice[data-key=first_party]", "aria-pressed") == "true"
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/my-work/" in url)
    assert "Data Security" in page.inner_text("table.work")
    assert "Saved your change" in page.inner_text("#saved-notice")  # the change is confirmed, not silent
    assert page.errors == [] and page.external_requests == []

    annotation = Annotation.objects.get(document=target, reviewer=reviewer)
    assert list(annotation.labels.values_list("key", flat=True)) == ["data_security"]
    assert list(AnnotationRevision.objects.filter(annotation=annotation).values_list("reason", flat=True)) == [
        "create",
        "edit",
    ]


def test_before_any_model_the_suggestion_says_it_comes_from_the_label_descriptions(new_page):
    project = project_with_labels()
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    document = DocumentFactory(project=project, text=TEXTS[1])
    # What the cold start writes before the first model: "version 0", from the labels' own words.
    QueuePriority.objects.create(
        document=document,
        project=project,
        score=0.9,
        model_version=0,
        probabilities={"first_party": 0.05, "third_party": 0.10, "data_security": 0.85},
    )
    page = new_page()
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/label/")
    assert current_id(page) == document.pk
    assert page.inner_text("#model-info").startswith("From label descriptions")
    assert page.get_attribute(".label-choice[data-key=data_security]", "aria-pressed") == "true"
    assert page.inner_text(".label-choice[data-key=data_security] .prob-text") == "85%"
