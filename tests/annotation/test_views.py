"""The reviewer pages and the JSON calls the labeling page makes: access, CSRF, validation, query counts."""

import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from annotation import selectors
from annotation.models import Annotation, AnnotationRevision, Document, Flag, Label, Lease, Skip
from learning.models import ModelVersion, QueuePriority
from tests.factories import (
    AnnotationFactory,
    DocumentFactory,
    LabelFactory,
    MembershipFactory,
    UserFactory,
    project_with_labels,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for():
    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def reviewer_client(client_for, reviewer):
    return client_for(reviewer)


def post_json(client, url, body=None, **extra):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json", **extra)


def next_url(project):
    return reverse("annotation:queue-next", args=[project.pk])


def annotate_url(document):
    return reverse("annotation:document-annotate", args=[document.project_id, document.pk])


def ticket_for(client, document) -> str:
    """The ticket the page gets with a document it opens (as "go back" and "My work" do)."""
    url = reverse("annotation:document", args=[document.project_id, document.pk])
    return client.get(url).json()["document"]["ticket"]


# --- Pages -------------------------------------------------------------------------------------------------


def test_project_page_shows_progress_and_my_count_today(project, reviewer, reviewer_client):
    labeled = DocumentFactory(project=project, status=Document.Status.LABELED)
    DocumentFactory(project=project)
    AnnotationFactory(document=labeled, reviewer=reviewer)
    response = reviewer_client.get(reverse("annotation:project-detail", args=[project.pk]))
    assert response.status_code == 200
    assert response.context["progress"]["labeled"] == 1
    assert response.context["progress"]["queued"] == 1
    assert response.context["mine"] == {"today": 1, "total": 1}
    assert response.context["model"] is None
    assert b"None yet" in response.content
    assert b"Start labeling" not in response.content and b"Continue labeling" in response.content


def test_project_page_shows_the_serving_model_and_its_score(project, reviewer_client):
    DocumentFactory(project=project)
    ModelVersion.objects.create(
        project=project,
        number=3,
        status=ModelVersion.Status.ACTIVE,
        kind=ModelVersion.Kind.FAST,
        taxonomy_version=1,
        artifact_path="models/v3",
        macro_f1=0.74,
    )
    response = reviewer_client.get(reverse("annotation:project-detail", args=[project.pk]))
    assert response.context["model"] == {"number": 3, "score": 0.74}
    assert b"v3" in response.content and b"score 0.740" in response.content


def test_project_page_links_admins_to_the_manage_pages(project, project_admin, reviewer_client, client_for):
    DocumentFactory(project=project)
    manage = reverse("manage:index", args=[project.pk]).encode()
    assert manage in client_for(project_admin).get(reverse("annotation:project-detail", args=[project.pk])).content
    assert manage not in reviewer_client.get(reverse("annotation:project-detail", args=[project.pk])).content


def test_project_page_says_when_nothing_is_imported(project, reviewer_client):
    response = reviewer_client.get(reverse("annotation:project-detail", args=[project.pk]))
    assert b"Nothing imported yet" in response.content


def test_labeling_page_hides_deprecated_labels_and_groups_by_parent(project, reviewer_client):
    taxonomy = project.taxonomy
    sharing = Label.objects.get(taxonomy=taxonomy, key="third_party")
    LabelFactory(taxonomy=taxonomy, key="advertising", name="Advertising", parent=sharing, order=10)
    LabelFactory(taxonomy=taxonomy, key="old_label", name="Old label", deprecated=True, order=11)
    DocumentFactory(project=project)
    response = reviewer_client.get(reverse("annotation:label", args=[project.pk]))
    assert response.status_code == 200
    keys = [label["key"] for label in response.context["labels"]]
    assert "old_label" not in keys and "advertising" in keys
    groups = {group["title"]: [label["key"] for label in group["labels"]] for group in response.context["groups"]}
    assert groups["Third Party"] == ["third_party", "advertising"]
    assert b'data-key="old_label"' not in response.content
    assert b'id="labeling-bootstrap"' in response.content


def test_label_groups_keep_the_taxonomy_order_around_a_hierarchy(project):
    sharing = Label.objects.get(taxonomy=project.taxonomy, key="third_party")
    LabelFactory(taxonomy=project.taxonomy, key="advertising", name="Advertising", parent=sharing, order=10)
    groups = selectors.label_groups(selectors.review_labels(project))
    assert [(g["title"], [label["key"] for label in g["labels"]]) for g in groups] == [
        ("", ["first_party"]),
        ("Third Party", ["third_party", "advertising"]),
        ("", ["data_security"]),
    ]


def test_labeling_page_says_when_nothing_is_imported(project, reviewer_client):
    response = reviewer_client.get(reverse("annotation:label", args=[project.pk]))
    assert b"Nothing to label yet" in response.content
    assert b'id="workspace"' not in response.content


def test_label_shortcut_that_clashes_with_a_page_key_is_dropped(project, reviewer_client):
    LabelFactory(taxonomy=project.taxonomy, key="sharing_s", name="Sharing S", shortcut="s", order=20)
    DocumentFactory(project=project)
    response = reviewer_client.get(reverse("annotation:label", args=[project.pk]))
    label = next(label for label in response.context["labels"] if label["key"] == "sharing_s")
    assert label["shortcut"] == "" and label["shortcut_conflict"] == "s"


def test_my_work_lists_only_my_annotations_and_searches(project, reviewer, reviewer_client):
    first_party = Label.objects.get(taxonomy=project.taxonomy, key="first_party")
    mine = AnnotationFactory(
        document=DocumentFactory(project=project, text="We collect your postcode to deliver parcels."),
        reviewer=reviewer,
        label_list=[first_party],
    )
    AnnotationFactory(
        document=DocumentFactory(project=project, text="Cookies remember your language."), reviewer=reviewer
    )
    AnnotationFactory(document=DocumentFactory(project=project, text="We collect your postcode for ads."))  # another's
    url = reverse("annotation:my-work", args=[project.pk])
    assert len(reviewer_client.get(url).context["rows"]) == 2
    rows = reviewer_client.get(url, {"q": "postcode"}).context["rows"]
    assert [row["annotation"].pk for row in rows] == [mine.pk]
    assert [row["annotation"].pk for row in reviewer_client.get(url, {"q": "first party"}).context["rows"]] == [mine.pk]
    response = reviewer_client.get(url, {"q": "postcode"})
    assert f"?document={mine.document_id}".encode() in response.content


def test_my_work_link_opens_the_document_for_editing(project, reviewer, reviewer_client):
    annotation = AnnotationFactory(document=DocumentFactory(project=project), reviewer=reviewer)
    response = reviewer_client.get(reverse("annotation:label", args=[project.pk]), {"document": annotation.document_id})
    assert response.status_code == 200
    assert response.context["bootstrap"]["editDocument"] == annotation.document_id


# --- Access ------------------------------------------------------------------------------------------------


def test_non_member_gets_404_everywhere(project, client_for):
    document = DocumentFactory(project=project)
    stranger = client_for(UserFactory())
    for url in (
        reverse("annotation:project-detail", args=[project.pk]),
        reverse("annotation:label", args=[project.pk]),
        reverse("annotation:my-work", args=[project.pk]),
        reverse("annotation:document", args=[project.pk, document.pk]),
    ):
        assert stranger.get(url).status_code == 404, url
    assert post_json(stranger, next_url(project)).status_code == 404
    assert post_json(stranger, annotate_url(document), {"labels": ["first_party"]}).status_code == 404
    assert not Lease.objects.exists() and not Annotation.objects.exists()


def test_other_projects_document_is_404_through_my_project(project, reviewer_client):
    elsewhere = DocumentFactory(project=project_with_labels())
    mine = project.pk
    for name in ("document-annotate", "document-skip", "document-flag"):
        response = post_json(
            reviewer_client, reverse(f"annotation:{name}", args=[mine, elsewhere.pk]), {"labels": ["first_party"]}
        )
        assert response.status_code == 404, name
    assert reviewer_client.get(reverse("annotation:document", args=[mine, elsewhere.pk])).status_code == 404
    assert reviewer_client.get(reverse("annotation:label", args=[mine]), {"document": elsewhere.pk}).status_code == 404
    # Nor straight through the other project.
    other_url = reverse("annotation:document", args=[elsewhere.project_id, elsewhere.pk])
    assert reviewer_client.get(other_url).status_code == 404
    assert not Annotation.objects.exists() and not Skip.objects.exists() and not Flag.objects.exists()


def test_logged_out_json_call_gets_401_and_pages_redirect_to_login(project):
    client = Client()
    response = post_json(client, next_url(project))
    assert response.status_code == 401
    assert "Log in" in response.json()["error"]
    page = client.get(reverse("annotation:label", args=[project.pk]))
    assert page.status_code == 302 and page["Location"].startswith(reverse("login"))


def test_csrf_is_enforced_on_json_calls(project, reviewer, client_for):
    DocumentFactory(project=project)
    client = client_for(reviewer, enforce_csrf_checks=True)
    assert post_json(client, next_url(project)).status_code == 403
    assert not Lease.objects.exists()
    page = client.get(reverse("annotation:label", args=[project.pk]))
    token = page.context["csrf_token"]
    assert post_json(client, next_url(project), HTTP_X_CSRFTOKEN=str(token)).status_code == 200
    assert Lease.objects.count() == 1


def test_csrf_is_enforced_on_submissions(project, reviewer, client_for):
    document = DocumentFactory(project=project)
    client = client_for(reviewer, enforce_csrf_checks=True)
    assert post_json(client, annotate_url(document), {"labels": ["first_party"]}).status_code == 403
    assert not Annotation.objects.exists()


def test_get_is_not_allowed_on_writes(project, reviewer_client):
    assert reviewer_client.get(next_url(project)).status_code == 405


# --- JSON calls --------------------------------------------------------------------------------------------


def test_next_returns_the_document_with_its_context(project, reviewer, reviewer_client):
    document = DocumentFactory(
        project=project,
        metadata={"kind": "incident_summary", "source_title": "Incident 2026-014", "region": "EU", "team": "SecOps"},
    )
    body = post_json(reviewer_client, next_url(project)).json()
    assert body["document"]["id"] == document.pk
    assert body["document"]["title"] == "Incident 2026-014"
    assert {item["key"] for item in body["document"]["context"]} == {"kind", "source_title", "region"}
    assert body["document"]["metadata"] == [{"key": "team", "value": "SecOps"}]
    assert body["document"]["suggestion"] is None
    assert body["resumed"] is False
    assert Lease.objects.get(document=document).reviewer == reviewer


def test_next_with_after_prefetches_another_document(project, reviewer_client):
    DocumentFactory(project=project)
    DocumentFactory(project=project)
    first = post_json(reviewer_client, next_url(project)).json()["document"]["id"]
    second = post_json(reviewer_client, next_url(project), {"after": first}).json()["document"]["id"]
    assert first != second
    assert post_json(reviewer_client, next_url(project)).json()["document"]["id"] == first


def test_next_says_why_the_queue_is_empty(project, reviewer_client):
    assert post_json(reviewer_client, next_url(project)).json() == {"document": None, "state": "empty"}
    DocumentFactory(project=project, status=Document.Status.LABELED)
    assert post_json(reviewer_client, next_url(project)).json() == {"document": None, "state": "done"}


def test_next_carries_the_models_suggestion_and_probabilities(project, reviewer_client):
    document = DocumentFactory(project=project)
    QueuePriority.objects.create(
        document=document,
        project=project,
        score=0.4,
        model_version=3,
        probabilities={"first_party": 0.2, "third_party": 0.7, "data_security": 0.1, "retired_key": 0.5},
    )
    suggestion = post_json(reviewer_client, next_url(project)).json()["document"]["suggestion"]
    assert suggestion["model_version"] == 3
    assert suggestion["labels"] == ["third_party"]
    assert set(suggestion["probabilities"]) == {"first_party", "third_party", "data_security"}


def test_multi_label_suggestion_holds_every_likely_label(client_for):
    project = project_with_labels(multi_label=True)
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    document = DocumentFactory(project=project)
    QueuePriority.objects.create(
        document=document,
        project=project,
        score=0.4,
        model_version=1,
        probabilities={"first_party": 0.8, "third_party": 0.6, "data_security": 0.1},
    )
    suggestion = post_json(client_for(reviewer), next_url(project)).json()["document"]["suggestion"]
    assert suggestion["labels"] == ["first_party", "third_party"]


def test_annotate_stores_once_for_a_double_submit(project, reviewer, reviewer_client):
    DocumentFactory(project=project)
    served = post_json(reviewer_client, next_url(project)).json()["document"]
    document = Document.objects.get(pk=served["id"])
    body = {
        "ticket": served["ticket"],
        "labels": ["third_party"],
        "submission_id": str(uuid.uuid4()),
        "seconds_spent": 7.3,
        "model_version_shown": 2,
        "suggested_labels": ["first_party"],
    }
    first = post_json(reviewer_client, annotate_url(document), body)
    second = post_json(reviewer_client, annotate_url(document), body)
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["created"] is True and first.json()["leaseLost"] is False
    assert second.json()["replayed"] is True
    annotation = Annotation.objects.get(document=document)
    # The page's 7.3 s, cut to the time since the document was served (the test is quicker than a reviewer).
    since_served = (annotation.created_at - annotation.served_at).total_seconds()
    assert annotation.seconds_spent == pytest.approx(min(7.3, since_served), abs=0.05)
    assert annotation.suggestion_accepted is False
    document.refresh_from_db()
    assert document.status == Document.Status.LABELED


def test_annotate_refuses_invalid_labels_with_a_message(project, reviewer_client):
    document = DocumentFactory(project=project)
    ticket = ticket_for(reviewer_client, document)
    response = post_json(
        reviewer_client, annotate_url(document), {"labels": ["first_party", "third_party"], "ticket": ticket}
    )
    assert response.status_code == 400
    assert "exactly one label" in response.json()["error"]
    response = post_json(reviewer_client, annotate_url(document), {"labels": ["made_up"], "ticket": ticket})
    assert response.status_code == 400 and "made_up" in response.json()["error"]
    response = post_json(reviewer_client, annotate_url(document), {"labels": "first_party", "ticket": ticket})
    assert response.status_code == 400 and "list of label keys" in response.json()["error"]
    assert not Annotation.objects.exists()


def test_annotate_refuses_a_body_that_is_not_json(project, reviewer_client):
    document = DocumentFactory(project=project)
    response = reviewer_client.post(annotate_url(document), data="labels=1", content_type="application/json")
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_editing_through_the_page_keeps_history(project, reviewer, reviewer_client):
    document = DocumentFactory(project=project)
    ticket = ticket_for(reviewer_client, document)
    post_json(reviewer_client, annotate_url(document), {"labels": ["first_party"], "ticket": ticket})
    response = post_json(reviewer_client, annotate_url(document), {"labels": ["data_security"], "ticket": ticket})
    assert response.json()["changed"] is True and response.json()["created"] is False
    detail = reviewer_client.get(reverse("annotation:document", args=[project.pk, document.pk])).json()["document"]
    assert detail["my_labels"] == ["data_security"]
    assert AnnotationRevision.objects.filter(annotation__document=document).count() == 2


def test_skip_and_flag(project, reviewer, reviewer_client):
    skipped = DocumentFactory(project=project)
    flagged = DocumentFactory(project=project)
    skip_url = reverse("annotation:document-skip", args=[project.pk, skipped.pk])
    assert post_json(reviewer_client, skip_url).status_code == 200
    assert Skip.objects.filter(document=skipped, reviewer=reviewer).exists()
    flag_url = reverse("annotation:document-flag", args=[project.pk, flagged.pk])
    response = post_json(reviewer_client, flag_url, {"comment": "  "})
    assert response.status_code == 400 and "legal review" in response.json()["error"]
    assert post_json(reviewer_client, flag_url, {"comment": "Child's data"}).status_code == 200
    flagged.refresh_from_db()
    assert flagged.status == Document.Status.FLAGGED


# --- The document on screen --------------------------------------------------------------------------------


def test_an_answer_for_a_document_the_page_was_not_handed_is_refused_with_409(project, reviewer, reviewer_client):
    shown = DocumentFactory(project=project)
    other = DocumentFactory(project=project)
    ticket = ticket_for(reviewer_client, shown)
    response = post_json(reviewer_client, annotate_url(other), {"labels": ["first_party"], "ticket": ticket})
    assert response.status_code == 409
    assert "was not shown" in response.json()["error"]
    response = post_json(reviewer_client, annotate_url(other), {"labels": ["first_party"], "ticket": "made-up"})
    assert response.status_code == 409
    response = post_json(reviewer_client, annotate_url(other), {"labels": ["first_party"]})
    assert response.status_code == 400 and "ticket" in response.json()["error"]
    assert not Annotation.objects.exists()


def test_a_ticket_served_to_another_reviewer_is_refused(project, reviewer_client, client_for):
    colleague = UserFactory()
    MembershipFactory(project=project, user=colleague)
    document = DocumentFactory(project=project)
    theirs = ticket_for(client_for(colleague), document)
    response = post_json(reviewer_client, annotate_url(document), {"labels": ["first_party"], "ticket": theirs})
    assert response.status_code == 409
    assert not Annotation.objects.exists()


def test_the_answer_stores_when_it_was_served_and_time_on_screen_no_longer_than_that(project, reviewer_client):
    DocumentFactory(project=project)
    served = post_json(reviewer_client, next_url(project)).json()["document"]
    document = Document.objects.get(pk=served["id"])
    body = {"labels": ["first_party"], "ticket": served["ticket"], "seconds_spent": 3600}
    assert post_json(reviewer_client, annotate_url(document), body).status_code == 200
    annotation = Annotation.objects.get(document=document)
    assert annotation.served_at is not None and annotation.served_at <= annotation.created_at
    # The page claimed an hour; it has had the document for well under a minute.
    assert annotation.seconds_spent < 60
