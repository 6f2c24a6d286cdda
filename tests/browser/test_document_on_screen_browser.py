"""An answer belongs to the document on screen: a double click or Enter pressed three times saves one
answer, for the document that was shown; the save status tells the truth; a promoted model shows at once."""

import time

import pytest

from annotation.models import Annotation, Document
from learning.models import ModelVersion, QueuePriority
from tests.api.conftest import TRAINING_TEXTS, trained_models  # noqa: F401  (a session fixture, shared)
from tests.browser.conftest import log_in, wait_until_answerable
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXTS = [
    "We share your device identifiers with our analytics provider to measure how the app is used.",
    "Card numbers are encrypted at rest with keys held in a hardware security module.",
    "We collect your delivery address to ship the orders you place.",
    "Support chats are kept for 18 months and then deleted.",
]


def reviewer_and_suggested_documents(model_version: int = 1):
    """A reviewer and four queued documents, each with the model's suggestion pre-selected (third_party): the
    case where an extra Enter or click would save the next document unseen, with a label it never showed."""
    project = project_with_labels()
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    documents = []
    for i, text in enumerate(TEXTS):
        document = DocumentFactory(project=project, text=text, metadata={"source_title": f"Notice §{i}"})
        QueuePriority.objects.create(
            document=document,
            project=project,
            score=1.0 - i / 10,
            model_version=model_version,
            probabilities={"first_party": 0.1, "third_party": 0.8, "data_security": 0.1},
        )
        documents.append(document)
    return project, reviewer, documents


def open_labeling(new_page, project, reviewer):
    page = new_page()
    log_in(page, reviewer.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/label/")
    page.wait_for_selector("#workspace[data-mode=queue]")
    wait_until_answerable(page)
    return page


def shown_id(page) -> int:
    return int(page.get_attribute("#doc", "data-document-id"))


def settle(page, previous: int) -> int:
    """Wait until the next document is on screen, every save has landed and a moment has passed for any
    stray submission to arrive; returns the document on screen."""
    page.wait_for_function(
        "previous => document.getElementById('doc').dataset.documentId !== String(previous)", arg=previous
    )
    wait_until_answerable(page)
    page.wait_for_selector("#save-status[data-pending='0']", state="attached")
    page.wait_for_timeout(1500)
    page.wait_for_selector("#save-status[data-pending='0']", state="attached")
    return shown_id(page)


def wait_for_prefetch(page) -> None:
    # The page fetches the next document as soon as one is shown; give it time to arrive, so the next one
    # could be painted within the same moment as the extra clicks and presses below.
    page.wait_for_timeout(1000)


def test_double_click_on_submit_saves_one_answer_for_the_document_shown(new_page):
    project, reviewer, documents = reviewer_and_suggested_documents()
    page = open_labeling(new_page, project, reviewer)
    shown = shown_id(page)
    assert shown == documents[0].pk
    wait_for_prefetch(page)

    page.dblclick("#submit-button")

    next_shown = settle(page, shown)
    answers = list(Annotation.objects.filter(reviewer=reviewer).values_list("document_id", flat=True))
    assert answers == [shown]
    assert next_shown == documents[1].pk
    assert Document.objects.get(pk=next_shown).status == Document.Status.QUEUED
    assert page.errors == []


def test_enter_pressed_three_times_saves_one_answer_for_the_document_shown(new_page):
    project, reviewer, documents = reviewer_and_suggested_documents()
    page = open_labeling(new_page, project, reviewer)
    shown = shown_id(page)
    wait_for_prefetch(page)

    for _ in range(3):
        page.keyboard.press("Enter")

    next_shown = settle(page, shown)
    answers = list(Annotation.objects.filter(reviewer=reviewer).values_list("document_id", flat=True))
    assert answers == [shown]
    assert next_shown == documents[1].pk
    annotation = Annotation.objects.get(document_id=shown)
    assert annotation.seconds_spent is not None and annotation.seconds_spent > 0
    assert annotation.served_at is not None and annotation.served_at <= annotation.created_at
    # The next document is answered normally once it has been on screen.
    page.keyboard.press("Enter")
    settle(page, next_shown)
    assert sorted(Annotation.objects.filter(reviewer=reviewer).values_list("document_id", flat=True)) == sorted(
        [shown, next_shown]
    )


def test_a_failed_save_leaves_the_not_saved_list_once_that_document_is_saved(new_page):
    project, reviewer, documents = reviewer_and_suggested_documents()
    page = open_labeling(new_page, project, reviewer)
    first = shown_id(page)
    annotate = f"**/projects/{project.pk}/documents/{first}/annotate"
    # The server fails the first save of this document once (as a locked database did), then works again.
    page.route(annotate, lambda route: route.fulfill(status=500, body="Server Error", content_type="text/html"))

    page.keyboard.press("Enter")
    page.wait_for_selector("#failures p")
    page.unroute(annotate)
    second = settle(page, first)
    status = page.locator("#save-status")
    assert status.get_attribute("data-failed") == "1"
    assert status.inner_text() != "All saved"
    assert "Not saved" in page.inner_text("#failures")
    assert not Annotation.objects.filter(document_id=first).exists()

    # U goes back to it; Enter saves it this time.
    page.keyboard.press("u")
    page.wait_for_selector("#workspace[data-mode=edit]")
    wait_until_answerable(page)
    assert shown_id(page) == first
    page.keyboard.press("Enter")
    page.wait_for_selector("#workspace[data-mode=queue]")
    page.wait_for_selector("#save-status[data-failed='0'][data-pending='0']", state="attached")
    assert status.inner_text() == "All saved"
    assert page.is_hidden("#failures")
    assert page.locator("#failures p").count() == 0
    assert Annotation.objects.filter(document_id=first, reviewer=reviewer).exists()
    assert shown_id(page) == second


def test_the_labeling_page_shows_a_promoted_model_within_two_seconds(new_page, trained_models, settings):  # noqa: F811
    from learning import serving
    from learning.services import model_version_promote

    project, reviewer, documents = reviewer_and_suggested_documents(model_version=1)
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    versions = {}
    for number, status in ((1, ModelVersion.Status.ACTIVE), (2, ModelVersion.Status.READY)):
        versions[number] = ModelVersion.objects.create(
            project=project,
            number=number,
            status=status,
            kind=ModelVersion.Kind.FAST,
            taxonomy_version=project.taxonomy.version,
            label_keys=list(TRAINING_TEXTS),
            artifact_path=str(trained_models[f"v{number}"]),
            macro_f1=0.8,
        )
    serving.models.clear()
    try:
        page = open_labeling(new_page, project, reviewer)
        assert page.inner_text("#model-info .badge") == "Model v1"

        # No worker runs here: the queue's stored scores stay v1's, as while a rescore is still under way.
        model_version_promote(version=versions[2], actor=admin)
        promoted = time.monotonic()
        page.wait_for_function(
            "() => document.querySelector('#model-info .badge')?.textContent === 'Model v2'", timeout=5000
        )
        assert time.monotonic() - promoted <= 2.0
        # The document on screen gets v2's own suggestion, scored on the spot, and the next ones too.
        page.wait_for_function("() => !document.getElementById('model-info').textContent.includes('updating')")
        assert page.inner_text("#model-info .badge") == "Model v2"
        wait_until_answerable(page)  # a suggestion painted anew is answerable after the same pause
        shown = shown_id(page)
        page.keyboard.press("Enter")
        settle(page, shown)
        assert page.inner_text("#model-info .badge") == "Model v2"
        assert Annotation.objects.get(document_id=shown).model_version_shown == 2
    finally:
        serving.models.clear()
