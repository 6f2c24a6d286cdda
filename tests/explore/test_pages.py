"""The Explore pages: who sees what, preview then apply, the batch page and its undo, review these next."""

import pytest
from django.urls import reverse

from annotation.models import Annotation, BulkBatch, Document, QueueBoost
from tests.factories import DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="lead")
    return user


def _client(client, user):
    client.force_login(user)
    return client


def test_the_page_lists_matches_with_highlights(client, project, reviewer):
    DocumentFactory(project=project, text="We sell browsing history to brokers.")
    DocumentFactory(project=project, text="Nothing to see.")
    page = _client(client, reviewer).get(reverse("explore:explore", args=[project.pk]), {"words": "brokers"})
    assert page.status_code == 200
    assert b"<mark>brokers</mark>" in page.content
    assert b"Nothing to see" not in page.content


def test_a_reviewer_without_the_setting_gets_no_bulk_action_and_is_refused_it(client, project, reviewer):
    document = DocumentFactory(project=project)
    c = _client(client, reviewer)
    page = c.get(reverse("explore:explore", args=[project.pk]))
    assert b'id="bulk-panel"' not in page.content and b'name="selected"' not in page.content
    response = c.post(
        reverse("explore:bulk-label", args=[project.pk]),
        {"selected": [document.pk], "labels": ["first_party"], "step": "apply"},
    )
    assert response.status_code == 403
    assert not Annotation.objects.exists()


def test_a_reviewer_may_when_the_project_allows_it(client, project, reviewer):
    project.reviewers_bulk_label = True
    project.save()
    page = _client(client, reviewer).get(reverse("explore:explore", args=[project.pk]))
    DocumentFactory(project=project)
    page = client.get(reverse("explore:explore", args=[project.pk]))
    assert b'id="bulk-panel"' in page.content


def test_preview_then_apply_then_undo_from_the_pages(client, project, lead):
    documents = DocumentFactory.create_batch(3, project=project, metadata={"source": "tickets"})
    c = _client(client, lead)
    url = reverse("explore:bulk-label", args=[project.pk])
    preview = c.post(
        url,
        {
            "all_matching": "on",
            "query": "meta_key=source&meta_value=tickets",
            "labels": ["third_party"],
            "step": "preview",
        },
    )
    assert preview.status_code == 200
    assert b'data-group="new"><b>3</b>' in preview.content
    assert not Annotation.objects.exists()
    carried = preview.context["documents"]
    applied = c.post(url, {"documents": carried, "labels": ["third_party"], "step": "apply"})
    batch = BulkBatch.objects.get()
    assert applied.url == reverse("explore:batch", args=[project.pk, batch.pk])
    assert Annotation.objects.filter(bulk_batch=batch).count() == 3
    page = c.get(applied.url)
    assert page.content.count(b'data-action="annotation.bulk"') == 3
    c.post(reverse("explore:batch-undo", args=[project.pk, batch.pk]))
    assert not Annotation.objects.exists()
    assert set(Document.objects.filter(pk__in=[d.pk for d in documents]).values_list("status", flat=True)) == {"queued"}
    assert c.get(applied.url).content.count(b'data-action="annotation.bulk_undo"') == 3


def test_another_projects_batch_is_not_found(client, project, lead):
    other_lead = UserFactory()
    other = DocumentFactory()
    MembershipFactory(project=other.project, user=other_lead, role="lead")
    from annotation.services.bulk import bulk_label_apply
    from tests.factories import LabelFactory, TaxonomyFactory

    LabelFactory(taxonomy=TaxonomyFactory(project=other.project), key="x")
    batch = bulk_label_apply(actor=other_lead, project=other.project, document_ids=[other.pk], label_keys=["x"])
    response = _client(client, lead).get(reverse("explore:batch", args=[project.pk, batch.pk]))
    assert response.status_code == 404


def test_review_next_from_the_page(client, project, lead, reviewer):
    document = DocumentFactory(project=project)
    c = _client(client, lead)
    c.post(
        reverse("explore:review-next", args=[project.pk]),
        {"selected": [document.pk], "reviewer": str(reviewer.pk), "query": ""},
    )
    assert QueueBoost.objects.filter(document=document, reviewer=reviewer).exists()


def test_an_admin_lets_reviewers_bulk_label_on_the_settings_page_audited(client, project):
    from annotation.models import AuditEvent
    from tests.annotation.test_manage_pages import settings_form

    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    _client(client, admin).post(
        reverse("manage:settings", args=[project.pk]), settings_form(project, reviewers_bulk_label="on")
    )
    project.refresh_from_db()
    assert project.reviewers_bulk_label
    assert AuditEvent.objects.get(action="project.updated").after == {"reviewers_bulk_label": True}


def test_the_batch_page_measures_the_batch_against_later_individual_review(client, project, lead, reviewer):
    from annotation.services.bulk import bulk_label_apply
    from annotation.services.labeling import annotation_submit

    agreed, disputed, unreviewed = DocumentFactory.create_batch(3, project=project)
    batch = bulk_label_apply(
        actor=lead, project=project, document_ids=[agreed.pk, disputed.pk, unreviewed.pk], label_keys=["first_party"]
    )
    annotation_submit(reviewer=reviewer, document=agreed, label_keys=["first_party"])
    annotation_submit(reviewer=reviewer, document=disputed, label_keys=["third_party"])
    page = _client(client, lead).get(reverse("explore:batch", args=[project.pk, batch.pk]))
    assert (page.context["agreement"].reviewed, page.context["agreement"].agreeing) == (2, 1)
