"""Bulk labeling from Explore: preview, apply as one batch, undo as a whole; and "review these next"."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import permissions
from annotation.exceptions import BatchAlreadyUndone, InvalidLabels, NothingToLabel
from annotation.models import (
    Annotation,
    AnnotationRevision,
    AuditEvent,
    Document,
    GoldAnswer,
    Label,
    Lease,
    Membership,
)
from annotation.services.bulk import bulk_batch_undo, bulk_label_apply, bulk_label_preview, queue_boost_add
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="lead")
    return user


def _keys(document, reviewer):
    annotation = Annotation.objects.get(document=document, reviewer=reviewer)
    return sorted(annotation.labels.values_list("key", flat=True))


def test_leads_and_admins_may_bulk_label_reviewers_only_when_the_project_says_so(project, lead, reviewer):
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    assert permissions.can(lead, project, "bulk_label")
    assert permissions.can(admin, project, "bulk_label")
    assert not permissions.can(reviewer, project, "bulk_label")
    project.reviewers_bulk_label = True
    project.save(update_fields=["reviewers_bulk_label"])
    project.refresh_from_db()
    assert permissions.can(reviewer, project, "bulk_label")


def test_preview_sorts_the_selection_by_what_would_happen(project, lead, reviewer):
    new, changed, same, leased, gold, held = DocumentFactory.create_batch(6, project=project)
    first, second = Label.objects.filter(taxonomy__project=project).order_by("order")[:2]
    AnnotationFactory(document=changed, reviewer=lead, label_list=[second])
    AnnotationFactory(document=same, reviewer=lead, label_list=[first])
    now = timezone.now()
    Lease.objects.create(
        document=leased, project=project, reviewer=reviewer, acquired_at=now, expires_at=now + timedelta(minutes=5)
    )
    GoldAnswer.objects.create(document=gold, project=project, label_keys=[second.key])
    held.status = Document.Status.FLAGGED
    held.save()
    other_project_document = DocumentFactory()

    preview = bulk_label_preview(
        actor=lead,
        project=project,
        document_ids=[d.pk for d in (new, changed, same, leased, gold, held, other_project_document)],
        label_keys=[first.key],
    )

    assert (preview.new, preview.changed, preview.unchanged) == ([new.pk], [changed.pk], [same.pk])
    assert (preview.leased, preview.gold, preview.held) == ([leased.pk], [gold.pk], [held.pk])
    assert not Annotation.objects.filter(document=new).exists()  # a preview writes nothing


def test_apply_gives_each_document_its_own_bulk_answer_and_audit_event_in_one_batch(project, lead):
    documents = DocumentFactory.create_batch(20, project=project)
    label = Label.objects.filter(taxonomy__project=project).first()

    batch = bulk_label_apply(
        actor=lead, project=project, document_ids=[d.pk for d in documents], label_keys=[label.key]
    )

    answers = Annotation.objects.filter(bulk_batch=batch)
    assert answers.count() == 20
    assert set(answers.values_list("source", flat=True)) == {Annotation.Source.BULK}
    assert all(_keys(d, lead) == [label.key] for d in documents)
    events = AuditEvent.objects.filter(action="annotation.bulk", after__batch=str(batch.pk))
    assert events.count() == 20
    assert AuditEvent.objects.filter(action="bulk.apply", after__batch=str(batch.pk)).count() == 1
    assert set(Document.objects.filter(pk__in=[d.pk for d in documents]).values_list("status", flat=True)) == {
        Document.Status.LABELED
    }
    assert AnnotationRevision.objects.filter(reason="bulk").count() == 20


def test_apply_never_touches_gold_documents(project, lead):
    plain, gold = DocumentFactory.create_batch(2, project=project)
    GoldAnswer.objects.create(document=gold, project=project, label_keys=["third_party"])
    bulk_label_apply(actor=lead, project=project, document_ids=[plain.pk, gold.pk], label_keys=["first_party"])
    assert not Annotation.objects.filter(document=gold).exists()


def test_apply_with_nothing_to_change_writes_no_batch(project, lead):
    gold = DocumentFactory(project=project)
    GoldAnswer.objects.create(document=gold, project=project, label_keys=["third_party"])
    with pytest.raises(NothingToLabel):
        bulk_label_apply(actor=lead, project=project, document_ids=[gold.pk], label_keys=["first_party"])
    assert not AuditEvent.objects.filter(action="bulk.apply").exists()


def test_apply_refuses_a_label_the_project_does_not_offer(project, lead):
    document = DocumentFactory(project=project)
    with pytest.raises(InvalidLabels):
        bulk_label_apply(actor=lead, project=project, document_ids=[document.pk], label_keys=["no_such_label"])


def test_undo_removes_new_answers_restores_changed_ones_and_requeues(project, lead):
    new, changed = DocumentFactory.create_batch(2, project=project)
    AnnotationFactory(document=changed, reviewer=lead, label_list=[Label.objects.get(key="third_party")])
    Document.objects.filter(pk=changed.pk).update(status=Document.Status.LABELED)
    batch = bulk_label_apply(actor=lead, project=project, document_ids=[new.pk, changed.pk], label_keys=["first_party"])
    assert _keys(changed, lead) == ["first_party"]

    result = bulk_batch_undo(actor=lead, batch=batch)

    assert (result.removed, result.restored, result.kept) == (1, 1, [])
    assert not Annotation.objects.filter(document=new).exists()
    assert Document.objects.get(pk=new.pk).status == Document.Status.QUEUED
    assert _keys(changed, lead) == ["third_party"]
    assert Annotation.objects.get(document=changed, reviewer=lead).source == Annotation.Source.REVIEWER
    assert AuditEvent.objects.filter(action="bulk.undo", after__batch=str(batch.pk)).count() == 1
    assert AuditEvent.objects.filter(action="annotation.bulk_undo", after__batch=str(batch.pk)).count() == 2
    with pytest.raises(BatchAlreadyUndone):
        bulk_batch_undo(actor=lead, batch=batch)


def test_undo_keeps_an_answer_revised_after_the_batch(project, lead):
    document = DocumentFactory(project=project)
    batch = bulk_label_apply(actor=lead, project=project, document_ids=[document.pk], label_keys=["first_party"])
    annotation_submit(reviewer=lead, document=document, label_keys=["data_security"])

    result = bulk_batch_undo(actor=lead, batch=batch)

    assert result.kept == [document.pk]
    assert _keys(document, lead) == ["data_security"]


def test_undo_leaves_a_document_answered_by_someone_else_since_out_of_the_queue(project, lead, reviewer):
    document = DocumentFactory(project=project)
    batch = bulk_label_apply(actor=lead, project=project, document_ids=[document.pk], label_keys=["first_party"])
    annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])
    bulk_batch_undo(actor=lead, batch=batch)
    assert Document.objects.get(pk=document.pk).status == Document.Status.LABELED


def test_review_these_next_puts_documents_at_the_front_for_one_reviewer(project, lead, reviewer):
    project.gold_rate = 0
    project.overlap_rate = 0
    project.save()
    documents = DocumentFactory.create_batch(5, project=project)
    other = UserFactory()
    Membership.objects.create(project=project, user=other, role="reviewer")
    wanted = documents[3]

    assert queue_boost_add(actor=lead, project=project, document_ids=[wanted.pk], reviewer=reviewer) == 1

    assert next_document_for(reviewer=reviewer, project=project).document.pk == wanted.pk
    assert next_document_for(reviewer=other, project=project).document.pk != wanted.pk


def test_review_these_next_for_everyone_skips_documents_not_in_the_queue(project, lead, reviewer):
    project.gold_rate = 0
    project.overlap_rate = 0
    project.save()
    queued, labeled = DocumentFactory.create_batch(2, project=project)
    Document.objects.filter(pk=labeled.pk).update(status=Document.Status.LABELED)
    assert queue_boost_add(actor=lead, project=project, document_ids=[queued.pk, labeled.pk], reviewer=None) == 1
    assert next_document_for(reviewer=reviewer, project=project).document.pk == queued.pk
