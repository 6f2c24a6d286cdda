"""Review quality writes: adjudicating disputed documents, gold answers, sending a document back for re-review."""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.exceptions import DocketError
from annotation.models import Adjudication, Document, GoldAnswer, Lease, Project
from annotation.selectors import annotations_by_document
from annotation.services.audit import audit_record
from annotation.services.labeling import labels_for_submission, notify_learning


class NothingToAdjudicate(DocketError):
    """The document has fewer than two reviewer answers, so there is no dispute to settle."""


def adjudication_decide(
    *, actor: AbstractBaseUser, document: Document, label_keys: Iterable[str], note: str = ""
) -> Adjudication:
    """Settle a document's labels. The reviewers' own answers stay untouched; the decision is added beside them
    with a copy of what each had answered, and becomes the document's final label."""
    project = document.project
    labels = labels_for_submission(project, label_keys)
    keys = [label.key for label in labels]
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        answers = [a for a in annotations_by_document([document.pk]).get(document.pk, []) if a["reviewer"]]
        if len(answers) < 2:
            raise NothingToAdjudicate("Only documents that two or more reviewers labeled can be adjudicated.")
        previous = Adjudication.objects.filter(document=document).order_by("-created_at", "-id").first()
        adjudication = Adjudication(
            document=document,
            project=project,
            label_keys=keys,
            answers_seen={a["reviewer"]: a["labels"] for a in answers},
            decided_by=actor,
            note=note.strip(),
        )
        adjudication.full_clean(exclude=["document", "project", "decided_by"])
        adjudication.save()
        audit_record(
            action="document.adjudicate",
            actor=actor,
            project=project,
            target=document,
            before={"labels": previous.label_keys if previous else None, "answers": adjudication.answers_seen},
            after={"labels": keys, "adjudication": adjudication.pk},
        )
        project_id = project.pk
        transaction.on_commit(lambda: notify_learning(project_id))
    return adjudication


def gold_answer_set(*, actor: AbstractBaseUser, document: Document, label_keys: Iterable[str]) -> GoldAnswer:
    """Mark the document's known answer. It leaves the ordinary queue and is served as a gold check instead."""
    project = document.project
    keys = [label.key for label in labels_for_submission(project, label_keys)]
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        existing = GoldAnswer.objects.filter(document=document).first()
        gold, _created = GoldAnswer.objects.update_or_create(
            document=document, defaults={"project": project, "label_keys": keys, "created_by": actor}
        )
        if document.status == Document.Status.QUEUED:
            # Labeled so that the ordinary queue passes it by; gold checks reach it through their own route.
            document.status = Document.Status.LABELED
            document.save(update_fields=["status"])
            Lease.objects.filter(document=document).delete()
        audit_record(
            action="gold.set",
            actor=actor,
            project=project,
            target=document,
            before={"labels": existing.label_keys} if existing else None,
            after={"labels": keys},
        )
    return gold


def gold_answer_remove(*, actor: AbstractBaseUser, document: Document) -> None:
    with transaction.atomic():
        gold = GoldAnswer.objects.select_for_update().filter(document=document).first()
        if gold is None:
            return
        before = {"labels": gold.label_keys}
        gold.delete()
        if not document.annotations.exists():
            Document.objects.filter(pk=document.pk).update(status=Document.Status.QUEUED)
        audit_record(action="gold.remove", actor=actor, project=document.project, target=document, before=before)


def document_send_back(*, actor: AbstractBaseUser, document: Document, reason: str) -> Document:
    """Return a labeled document to the queue for another look (e.g. a likely label error); answers are kept,
    and the reviewer who gets it edits or confirms theirs."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        if document.status != Document.Status.LABELED:
            raise DocketError("Only a labeled document can be sent back for re-review.")
        document.status = Document.Status.QUEUED
        document.rereview_reason = reason[:255]
        document.save(update_fields=["status", "rereview_reason"])
        audit_record(
            action="document.send_back",
            actor=actor,
            project=document.project,
            target=document,
            before={"status": Document.Status.LABELED},
            after={"status": document.status, "reason": document.rereview_reason},
        )
    return document


def quality_settings_update(
    *, actor: AbstractBaseUser, project: Project, overlap_rate: float, overlap_reviewers: int, gold_rate: float
) -> Project:
    before = {"overlap_rate": project.overlap_rate, "overlap_reviewers": project.overlap_reviewers}
    before["gold_rate"] = project.gold_rate
    project.overlap_rate = overlap_rate
    project.overlap_reviewers = overlap_reviewers
    project.gold_rate = gold_rate
    project.full_clean()
    with transaction.atomic():
        project.save(update_fields=["overlap_rate", "overlap_reviewers", "gold_rate"])
        audit_record(
            action="project.quality_settings",
            actor=actor,
            project=project,
            target=project,
            before=before,
            after={"overlap_rate": overlap_rate, "overlap_reviewers": overlap_reviewers, "gold_rate": gold_rate},
        )
    return project
