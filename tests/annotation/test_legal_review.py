"""Legal review: flagged documents wait with who, when and why; a lead or an admin resolves each with a note."""

import pytest
from django.urls import reverse

from annotation.exceptions import FlagResolved
from annotation.models import AuditEvent, Document, Flag, Label
from annotation.services import legal_review
from annotation.services.queue import document_flag, next_document_for
from tests.api.conftest import assert_error, client_with, personal_key, service_key
from tests.factories import PASSWORD, AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(project):
    user = UserFactory(username="lena")
    MembershipFactory(project=project, user=user, role="lead")
    return user


@pytest.fixture
def flagged(project, reviewer):
    document = DocumentFactory(project=project, external_id="clause-7", text="Client privileged memo text.")
    return document_flag(reviewer=reviewer, document=document, comment="Looks like a privileged memo.")


def test_requeue_sends_the_document_back_with_the_note_as_its_reason_and_is_audited(flagged, lead, reviewer):
    flag = legal_review.flag_resolve(actor=lead, flag=flagged, decision="requeue", note="Not privileged; label it.")
    document = Document.objects.get(pk=flagged.document_id)
    assert document.status == Document.Status.QUEUED
    assert document.rereview_reason == "Legal review: Not privileged; label it."
    assert (flag.resolved_by, flag.decision, flag.resolution_note) == (lead, "requeue", "Not privileged; label it.")
    event = AuditEvent.objects.get(action="flag.resolve")
    assert event.actor == lead and event.target_id == str(flag.pk)
    assert event.before["status"] == "flagged" and event.after["status"] == "queued"
    assert event.after["note"] == "Not privileged; label it." and event.after["decision"] == "requeue"
    assert next_document_for(reviewer=reviewer, project=document.project).document == document


def test_close_keeps_the_document_out_of_labeling(flagged, lead, reviewer):
    legal_review.flag_resolve(actor=lead, flag=flagged, decision="close", note="Privileged: never label.")
    document = Document.objects.get(pk=flagged.document_id)
    assert document.status == Document.Status.CLOSED
    assert next_document_for(reviewer=reviewer, project=document.project) is None


def test_a_resolution_needs_a_note_and_a_known_decision_and_changes_nothing_without(flagged, lead):
    with pytest.raises(legal_review.ResolutionInvalid, match="note"):
        legal_review.flag_resolve(actor=lead, flag=flagged, decision="requeue", note="   ")
    with pytest.raises(legal_review.ResolutionInvalid, match="decision"):
        legal_review.flag_resolve(actor=lead, flag=flagged, decision="delete", note="gone")
    assert Flag.objects.get(pk=flagged.pk).resolved_at is None
    assert Document.objects.get(pk=flagged.document_id).status == Document.Status.FLAGGED
    assert not AuditEvent.objects.filter(action="flag.resolve").exists()


def test_a_flag_is_resolved_once(flagged, lead, project_admin):
    legal_review.flag_resolve(actor=lead, flag=flagged, decision="close", note="Privileged.")
    with pytest.raises(FlagResolved, match="lena"):
        legal_review.flag_resolve(actor=project_admin, flag=flagged, decision="requeue", note="Changed my mind.")
    assert Flag.objects.get(pk=flagged.pk).decision == "close"


def test_a_document_with_another_open_flag_stays_held(flagged, lead, project):
    second_reviewer = UserFactory()
    MembershipFactory(project=project, user=second_reviewer, role="reviewer")
    second = Flag.objects.create(document=flagged.document, reviewer=second_reviewer, comment="Also: health data.")
    legal_review.flag_resolve(actor=lead, flag=flagged, decision="requeue", note="First point is fine.")
    assert Document.objects.get(pk=flagged.document_id).status == Document.Status.FLAGGED
    legal_review.flag_resolve(actor=lead, flag=second, decision="requeue", note="Health data is fine too.")
    assert Document.objects.get(pk=flagged.document_id).status == Document.Status.QUEUED


def test_the_database_refuses_a_half_resolved_flag(flagged):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Flag.objects.filter(pk=flagged.pk).update(decision="close")


# --- Pages ------------------------------------------------------------------------------------------------------


def test_the_queue_shows_who_flagged_when_and_why(client, flagged, lead):
    client.login(username=lead.username, password=PASSWORD)
    page = client.get(reverse("annotation:legal-review", args=[flagged.document.project_id])).content.decode()
    assert f'id="flag-{flagged.pk}"' in page
    assert flagged.reviewer.username in page and "Looks like a privileged memo." in page
    assert "clause-7" in page and flagged.created_at.strftime("%Y-%m-%d %H:%M") in page


@pytest.mark.parametrize("role, status", [("reviewer", 403), ("lead", 200), ("admin", 200)])
def test_leads_and_admins_open_the_queue_reviewers_do_not(client, project, flagged, role, status):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    client.login(username=user.username, password=PASSWORD)
    response = client.get(reverse("annotation:legal-review", args=[project.pk]))
    assert response.status_code == status


def test_resolving_from_the_page_says_what_happened(client, flagged, lead):
    client.login(username=lead.username, password=PASSWORD)
    url = reverse("annotation:flag-resolve", args=[flagged.document.project_id, flagged.pk])
    response = client.post(url, {"decision": "requeue", "note": "Fine to label."}, follow=True)
    assert "is back in the review queue" in response.content.decode()
    assert Document.objects.get(pk=flagged.document_id).status == Document.Status.QUEUED


def test_a_resolution_without_a_note_is_explained_once_on_the_form(client, flagged, lead):
    client.login(username=lead.username, password=PASSWORD)
    url = reverse("annotation:flag-resolve", args=[flagged.document.project_id, flagged.pk])
    response = client.post(url, {"decision": "close", "note": ""})
    assert response.status_code == 400
    assert response.content.decode().count("Write a note: what was decided and why.") == 1
    assert Flag.objects.get(pk=flagged.pk).resolved_at is None


def test_the_project_page_links_the_held_count_to_the_queue_for_leads_only(client, project, flagged, lead, reviewer):
    client.login(username=lead.username, password=PASSWORD)
    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()
    assert 'id="legal-review-link"' in page and reverse("annotation:legal-review", args=[project.pk]) in page
    client.login(username=reviewer.username, password=PASSWORD)
    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()
    assert 'id="legal-review-link"' not in page


def test_a_reviewer_refused_a_page_sees_the_app_around_the_403(client, project, reviewer):
    client.login(username=reviewer.username, password=PASSWORD)
    response = client.get(reverse("annotation:legal-review", args=[project.pk]))
    page = response.content.decode()
    assert response.status_code == 403
    assert '<header class="top">' in page and 'id="forbidden"' in page and "My projects" in page
    assert "resolve_flags" in page  # the reason: which action the role lacks


# --- API --------------------------------------------------------------------------------------------------------


def test_the_api_lists_open_flags_with_who_when_and_why(project, flagged, project_admin):
    client = client_with(personal_key(project_admin, [project], ["read"]))
    body = client.get(f"/api/v1/projects/{project.pk}/flags").json()
    (row,) = body["results"]
    assert row["id"] == flagged.pk and row["document"] == flagged.document_id
    assert row["flagged_by"] == flagged.reviewer.username and row["comment"] == "Looks like a privileged memo."
    assert row["decision"] == "" and row["resolved_at"] is None


def test_a_lead_resolves_a_flag_through_the_api_once(project, flagged, lead):
    client = client_with(personal_key(lead, [project], ["read", "write"]))
    url = f"/api/v1/projects/{project.pk}/flags/{flagged.pk}/resolve"
    response = client.post(url, {"decision": "close", "note": "Privileged."}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["decision"] == "close" and response.json()["resolved_by"] == "lena"
    assert Document.objects.get(pk=flagged.document_id).status == Document.Status.CLOSED
    again = client.post(url, {"decision": "requeue", "note": "Again."}, format="json")
    assert_error(again, 409, "flag_resolved")
    assert client.get(f"/api/v1/projects/{project.pk}/flags").json()["results"] == []
    resolved = client.get(f"/api/v1/projects/{project.pk}/flags?state=resolved").json()["results"]
    assert [r["note"] for r in resolved] == ["Privileged."]


def test_the_api_refuses_a_reviewer_and_a_missing_note(project, flagged, project_admin, reviewer):
    reviewer_client = client_with(service_key(project_admin, [project], ["read", "write"], role="reviewer"))
    assert_error(reviewer_client.get(f"/api/v1/projects/{project.pk}/flags"), 403, "forbidden")
    admin_client = client_with(personal_key(project_admin, [project], ["write"]))
    url = f"/api/v1/projects/{project.pk}/flags/{flagged.pk}/resolve"
    assert_error(admin_client.post(url, {"decision": "close"}, format="json"), 400, "invalid")
    assert_error(admin_client.post(url, {"decision": "close", "note": "  "}, format="json"), 400, "invalid")
    assert Flag.objects.get(pk=flagged.pk).resolved_at is None


def test_another_projects_flag_is_not_found(project, flagged):
    from tests.factories import project_with_labels

    other = project_with_labels(name="Other project")
    admin = UserFactory()
    MembershipFactory(project=other, user=admin, role="admin")
    client = client_with(personal_key(admin, [other], ["write"]))
    response = client.post(
        f"/api/v1/projects/{other.pk}/flags/{flagged.pk}/resolve", {"decision": "close", "note": "x"}, format="json"
    )
    assert_error(response, 404, "not_found")


def test_a_labeled_document_flagged_again_can_go_back_for_re_review(project, reviewer, lead):
    document = DocumentFactory(project=project, status=Document.Status.LABELED)
    AnnotationFactory(
        document=document, reviewer=reviewer, label_list=[Label.objects.filter(taxonomy__project=project).first()]
    )
    flag = document_flag(reviewer=reviewer, document=document, comment="Second thoughts: health data.")
    legal_review.flag_resolve(actor=lead, flag=flag, decision="requeue", note="Check the health label.")
    assert Document.objects.get(pk=document.pk).status == Document.Status.QUEUED
