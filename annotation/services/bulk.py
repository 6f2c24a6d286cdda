"""Label many documents at once from Explore, undo such a batch as a whole, and put documents at the front of
the review queue. Each document keeps its own annotation, revision and audit event; the batch ties them."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.exceptions import BatchAlreadyUndone, NothingToLabel
from annotation.models import (
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    BulkBatch,
    BulkBatchItem,
    Document,
    GoldAnswer,
    Label,
    Lease,
    Project,
    QueueBoost,
)
from annotation.selectors import annotation_label_keys
from annotation.services.audit import audit_record, audit_record_many
from annotation.services.labeling import labels_for_submission, notify_learning
from annotation.services.taxonomy import taxonomy_hold

# One batch labels at most this many documents: enough for "all matching" of any sensible search, small enough
# that one transaction (and its undo) stays a few seconds.
MAX_BULK_DOCUMENTS = 10_000

HELD = (Document.Status.FLAGGED, Document.Status.CLOSED)


@dataclass
class BulkPreview:
    """What applying these labels to these documents would do, document ids by outcome."""

    label_keys: list[str]
    new: list[int] = field(default_factory=list)  # the actor has not answered them: a new answer each
    changed: list[int] = field(default_factory=list)  # the actor's earlier answer changes to these labels
    unchanged: list[int] = field(default_factory=list)  # the actor's answer is these labels already
    leased: list[int] = field(default_factory=list)  # another reviewer holds them now: left alone
    gold: list[int] = field(default_factory=list)  # gold documents: never touched
    held: list[int] = field(default_factory=list)  # held for legal review or closed: left alone
    # The actor's current answer per document to change, {document: (annotation id, sorted label keys)}.
    _mine: dict[int, tuple[int, list[str]]] = field(default_factory=dict, repr=False)

    @property
    def to_apply(self) -> list[int]:
        return self.new + self.changed

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.label_keys,
            **{name: len(getattr(self, name)) for name in ("new", "changed", "unchanged", "leased", "gold", "held")},
        }


def _selection(project: Project, document_ids: Iterable[int]) -> list[int]:
    ids = sorted({int(pk) for pk in document_ids})
    if len(ids) > MAX_BULK_DOCUMENTS:
        raise NothingToLabel(f"At most {MAX_BULK_DOCUMENTS:,} documents at once; narrow the search.")
    return ids


def _classify(*, actor: AbstractBaseUser, project: Project, ids: list[int], labels: list[Label]) -> BulkPreview:
    keys = sorted(label.key for label in labels)
    preview = BulkPreview(label_keys=[label.key for label in labels])
    documents = dict(Document.objects.filter(project=project, pk__in=ids).values_list("pk", "status"))
    gold = set(GoldAnswer.objects.filter(document_id__in=list(documents)).values_list("document_id", flat=True))
    leased = set(
        Lease.objects.filter(document_id__in=list(documents), expires_at__gt=timezone.now())
        .exclude(reviewer=actor)
        .values_list("document_id", flat=True)
    )
    mine = dict(
        Annotation.objects.filter(document_id__in=list(documents), reviewer=actor).values_list("document", "id")
    )
    mine_keys = annotation_label_keys(mine.values())
    for pk in sorted(documents):
        if pk in gold:
            preview.gold.append(pk)
        elif documents[pk] in HELD:
            preview.held.append(pk)
        elif pk in leased:
            preview.leased.append(pk)
        elif pk not in mine:
            preview.new.append(pk)
        elif sorted(mine_keys.get(mine[pk], [])) == keys:
            preview.unchanged.append(pk)
        else:
            preview.changed.append(pk)
            preview._mine[pk] = (mine[pk], sorted(mine_keys.get(mine[pk], [])))
    return preview


def bulk_label_preview(
    *, actor: AbstractBaseUser, project: Project, document_ids: Iterable[int], label_keys: Iterable[str]
) -> BulkPreview:
    """What `bulk_label_apply` would do now, changing nothing. Raises InvalidLabels for labels not offered."""
    labels = labels_for_submission(project, label_keys)
    return _classify(actor=actor, project=project, ids=_selection(project, document_ids), labels=labels)


def bulk_label_apply(
    *,
    actor: AbstractBaseUser,
    project: Project,
    document_ids: Iterable[int],
    label_keys: Iterable[str],
    query: dict[str, Any] | None = None,
) -> BulkBatch:
    """Give these labels, as the actor's answer, to every selected document they may change, as one batch.

    Gold documents, documents held for legal review and documents another reviewer holds now are left alone;
    so are documents the actor answered with these labels already. Every other one gets its own annotation
    (source "bulk", tied to the batch), revision and audit event; a queued one leaves the queue. Nothing is
    written when nothing would change (NothingToLabel).
    """
    ids = _selection(project, document_ids)
    with transaction.atomic():
        taxonomy_hold(project)
        labels = labels_for_submission(project, label_keys)
        # Documents in id order, as every other bulk writer would lock them, so two batches never deadlock.
        list(Document.objects.select_for_update().filter(project=project, pk__in=ids).order_by("pk").values("pk"))
        preview = _classify(actor=actor, project=project, ids=ids, labels=labels)
        if not preview.to_apply:
            raise NothingToLabel("None of these documents would change: they are gold, held, leased or labeled so.")
        batch = BulkBatch(
            project=project,
            actor=actor,
            label_keys=preview.label_keys,
            query=query or {},
            created_count=len(preview.new),
            changed_count=len(preview.changed),
        )
        batch.full_clean()
        batch.save()
        statuses = dict(Document.objects.filter(pk__in=preview.to_apply).values_list("pk", "status"))
        created = Annotation.objects.bulk_create(
            [
                Annotation(document_id=pk, reviewer=actor, source=Annotation.Source.BULK, bulk_batch=batch)
                for pk in preview.new
            ]
        )
        annotations = {a.document_id: a for a in created}
        previous: dict[int, tuple[list[int], str]] = {}
        if preview.changed:
            changed = list(Annotation.objects.filter(pk__in=[a for a, _ in preview._mine.values()]))
            previous_ids: dict[int, list[int]] = {}
            for annotation_id, label_id in AnnotationLabel.objects.filter(annotation__in=changed).values_list(
                "annotation_id", "label_id"
            ):
                previous_ids.setdefault(annotation_id, []).append(label_id)
            for annotation in changed:
                previous[annotation.document_id] = (sorted(previous_ids.get(annotation.pk, [])), annotation.source)
                annotation.source = Annotation.Source.BULK
                annotation.bulk_batch = batch
                annotation.updated_at = timezone.now()
                annotations[annotation.document_id] = annotation
            Annotation.objects.bulk_update(changed, ["source", "bulk_batch", "updated_at"])
            AnnotationLabel.objects.filter(annotation__in=changed).delete()
        AnnotationLabel.objects.bulk_create(
            [AnnotationLabel(annotation=a, label=label) for a in annotations.values() for label in labels]
        )
        order = preview.to_apply
        revisions = AnnotationRevision.objects.bulk_create(
            [
                AnnotationRevision(
                    annotation=annotations[pk],
                    label_keys=preview.label_keys,
                    label_ids=[label.pk for label in labels],
                    changed_by=actor,
                    reason="bulk",
                )
                for pk in order
            ]
        )
        BulkBatchItem.objects.bulk_create(
            [
                BulkBatchItem(
                    batch=batch,
                    document_id=pk,
                    annotation=annotations[pk],
                    revision=revision,
                    created=pk not in previous,
                    previous_label_ids=previous.get(pk, ([], ""))[0],
                    previous_source=previous.get(pk, ([], ""))[1],
                    previous_status=statuses[pk],
                )
                for pk, revision in zip(order, revisions, strict=True)
            ]
        )
        Document.objects.filter(pk__in=order, status=Document.Status.QUEUED).update(status=Document.Status.LABELED)
        Lease.objects.filter(document_id__in=order, reviewer=actor).delete()
        batch_id = str(batch.pk)
        audit_record_many(
            action="annotation.bulk",
            actor=actor,
            project=project,
            events=[
                (
                    annotations[pk],
                    {"document": pk, "labels": preview._mine[pk][1]} if pk in previous else None,
                    {"document": pk, "labels": preview.label_keys, "batch": batch_id},
                )
                for pk in order
            ],
        )
        audit_record(
            action="bulk.apply",
            actor=actor,
            project=project,
            target=batch,
            after={"batch": batch_id, **preview.as_dict(), "query": batch.query},
        )
        project_id = project.pk
        transaction.on_commit(lambda: notify_learning(project_id))
    return batch


@dataclass(frozen=True)
class UndoResult:
    batch: BulkBatch
    removed: int  # answers the batch had created, deleted
    restored: int  # answers the batch had changed, back to their earlier labels
    kept: list[int]  # documents whose answer was revised after the batch: that later answer stays


def bulk_batch_undo(*, actor: AbstractBaseUser, batch: BulkBatch) -> UndoResult:
    """Take a whole batch back: answers it created go, answers it changed get their earlier labels back, and
    documents it took out of the queue return to it when nobody else has answered them. An answer revised
    after the batch (its owner reviewed that document again) is kept. One audit event per document and one
    for the undo, all with the batch id."""
    with transaction.atomic():
        taxonomy_hold(batch.project)
        batch = BulkBatch.objects.select_for_update().select_related("project").get(pk=batch.pk)
        if batch.undone_at is not None:
            raise BatchAlreadyUndone("This batch was undone already.")
        project = batch.project
        items = list(batch.items.order_by("document_id"))
        list(
            Document.objects.select_for_update()
            .filter(pk__in=[i.document_id for i in items])
            .order_by("pk")
            .values("pk")
        )
        latest = dict(
            AnnotationRevision.objects.filter(annotation_id__in=[i.annotation_id for i in items if i.annotation_id])
            .values("annotation_id")
            .annotate(last=Max("id"))
            .values_list("annotation_id", "last")
        )
        kept = [i.document_id for i in items if i.annotation_id is None or latest.get(i.annotation_id) != i.revision_id]
        undo = [i for i in items if i.document_id not in set(kept)]
        removed = [i for i in undo if i.created]
        restored = [i for i in undo if not i.created]
        batch_id = str(batch.pk)
        events = []
        annotations = {a.pk: a for a in Annotation.objects.filter(pk__in=[i.annotation_id for i in undo])}
        for item in removed:
            events.append((annotations[item.annotation_id], {"document": item.document_id}, {"batch": batch_id}))
        Annotation.objects.filter(pk__in=[i.annotation_id for i in removed]).delete()
        if restored:
            labels = {label.pk: label for label in Label.objects.filter(pk__in=_ids(restored))}
            AnnotationLabel.objects.filter(annotation_id__in=[i.annotation_id for i in restored]).delete()
            AnnotationLabel.objects.bulk_create(
                [
                    AnnotationLabel(annotation_id=i.annotation_id, label=labels[pk])
                    for i in restored
                    for pk in i.previous_label_ids
                    if pk in labels
                ]
            )
            for item in restored:
                annotation = annotations[item.annotation_id]
                annotation.source = item.previous_source or Annotation.Source.REVIEWER
                annotation.bulk_batch = None
                annotation.updated_at = timezone.now()
                back = [labels[pk] for pk in item.previous_label_ids if pk in labels]
                AnnotationRevision.objects.create(
                    annotation=annotation,
                    label_keys=[label.key for label in back],
                    label_ids=[label.pk for label in back],
                    changed_by=actor,
                    reason="bulk_undo",
                )
                events.append(
                    (
                        annotation,
                        {"document": item.document_id, "labels": batch.label_keys},
                        {"document": item.document_id, "labels": [label.key for label in back], "batch": batch_id},
                    )
                )
            Annotation.objects.bulk_update(
                [annotations[i.annotation_id] for i in restored], ["source", "bulk_batch", "updated_at"]
            )
        # Back to the queue: documents the batch took from it that nobody has answered since.
        requeue = [i.document_id for i in removed if i.previous_status == Document.Status.QUEUED]
        answered = set(Annotation.objects.filter(document_id__in=requeue).values_list("document_id", flat=True))
        Document.objects.filter(
            pk__in=[pk for pk in requeue if pk not in answered], status=Document.Status.LABELED
        ).update(status=Document.Status.QUEUED)
        audit_record_many(action="annotation.bulk_undo", actor=actor, project=project, events=events)
        batch.undone_at = timezone.now()
        batch.undone_by = actor
        batch.save(update_fields=["undone_at", "undone_by"])
        audit_record(
            action="bulk.undo",
            actor=actor,
            project=project,
            target=batch,
            before={"batch": batch_id, "labels": batch.label_keys},
            after={"batch": batch_id, "removed": len(removed), "restored": len(restored), "kept": len(kept)},
        )
        project_id = project.pk
        transaction.on_commit(lambda: notify_learning(project_id))
    return UndoResult(batch=batch, removed=len(removed), restored=len(restored), kept=kept)


def _ids(items: list[BulkBatchItem]) -> set[int]:
    return {pk for item in items for pk in item.previous_label_ids}


def queue_boost_add(
    *, actor: AbstractBaseUser, project: Project, document_ids: Iterable[int], reviewer: AbstractBaseUser | None
) -> int:
    """Put the selection's queued documents at the front of the queue, for one reviewer or (None) for everyone.

    Returns how many queued documents were put there; documents already labeled, held or closed are not
    queued and are left alone. Asking twice changes nothing.
    """
    ids = _selection(project, document_ids)
    with transaction.atomic():
        queued = list(
            Document.objects.filter(project=project, pk__in=ids, status=Document.Status.QUEUED)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        QueueBoost.objects.bulk_create(
            [QueueBoost(document_id=pk, project=project, reviewer=reviewer, created_by=actor) for pk in queued],
            ignore_conflicts=True,
        )
        audit_record(
            action="queue.boost",
            actor=actor,
            project=project,
            target=project,
            after={
                "documents": queued[:1000],
                "count": len(queued),
                "reviewer": reviewer.get_username() if reviewer else None,
            },
        )
    return len(queued)
