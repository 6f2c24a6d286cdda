"""Legal review: the flagged documents waiting for a decision, and resolving a flag with a note.

A reviewer flags a document from the labeling page (`queue.document_flag`); it leaves the queue. A lead or an
admin resolves the flag here: back to the review queue (the note becomes the document's re-review reason), or
closed, which keeps the document out of labeling for good. Both are audited with the note.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.exceptions import FlagResolved, ProjectNotFound
from annotation.models import Document, Flag, Project
from annotation.services.audit import audit_record

NOTE_MAX_CHARS = 4000
REREVIEW_REASON_MAX = 255


class ResolutionInvalid(ValueError):
    """The decision or note cannot be used; the message says why."""


def flags_for(project: Project, *, state: str = "open") -> QuerySet[Flag]:
    """The project's flags, oldest first while open (first come, first decided), newest first once resolved."""
    flags = Flag.objects.filter(document__project=project).select_related("document", "reviewer", "resolved_by")
    if state == "open":
        return flags.filter(resolved_at__isnull=True).order_by("created_at", "id")
    if state == "resolved":
        return flags.filter(resolved_at__isnull=False).order_by("-resolved_at", "-id")
    return flags.order_by("-created_at", "-id")


def earlier_flags(flags: list[Flag]) -> dict[int, list[Flag]]:
    """For each flag, the resolved flags its document had before it (one query for the whole page)."""
    documents = {flag.document_id for flag in flags}
    history: dict[int, list[Flag]] = {}
    resolved = (
        Flag.objects.filter(document_id__in=documents, resolved_at__isnull=False)
        .select_related("reviewer", "resolved_by")
        .order_by("created_at", "id")
    )
    for earlier in resolved:
        history.setdefault(earlier.document_id, []).append(earlier)
    return {
        flag.pk: [e for e in history.get(flag.document_id, []) if e.pk != flag.pk and e.created_at <= flag.created_at]
        for flag in flags
    }


def flag_for(project: Project, flag_id: int) -> Flag:
    """A flag of this project; another project's flag id is simply not found."""
    flag = flags_for(project, state="all").filter(pk=flag_id).first()
    if flag is None:
        raise ProjectNotFound("No such flag in this project.")
    return flag


def flag_resolve(*, actor: AbstractBaseUser, flag: Flag, decision: str, note: str) -> Flag:
    """Resolve an open flag: `requeue` sends the document back to the queue, `close` takes it out of labeling.

    The document leaves the legal-review hold only when no other open flag holds it. Raises FlagResolved when
    the flag was resolved in the meantime, ResolutionInvalid for a missing note or an unknown decision.
    """
    note = (note or "").replace("\r\n", "\n").strip()
    if decision not in Flag.Decision.values:
        raise ResolutionInvalid(f"Choose a decision: {', '.join(Flag.Decision.values)}.")
    if not note:
        raise ResolutionInvalid("Write a note: what was decided and why. It goes into the audit log.")
    if len(note) > NOTE_MAX_CHARS:
        raise ResolutionInvalid(f"The note is {len(note):,} characters; at most {NOTE_MAX_CHARS:,} are kept.")
    with transaction.atomic():
        document = Document.objects.select_for_update().select_related("project").get(pk=flag.document_id)
        flag = Flag.objects.select_for_update().get(pk=flag.pk)
        if flag.resolved_at is not None:
            who = flag.resolved_by.get_username() if flag.resolved_by else "someone"
            raise FlagResolved(f"This flag was resolved already by {who} at {flag.resolved_at:%Y-%m-%d %H:%M} UTC.")
        flag.resolved_at = timezone.now()
        flag.resolved_by = actor
        flag.decision = decision
        flag.resolution_note = note
        flag.save(update_fields=["resolved_at", "resolved_by", "decision", "resolution_note"])
        before = {"status": document.status, "rereview_reason": document.rereview_reason}
        still_held = Flag.objects.filter(document=document, resolved_at__isnull=True).exists()
        if not still_held and document.status == Document.Status.FLAGGED:
            if decision == Flag.Decision.REQUEUE:
                document.status = Document.Status.QUEUED
                document.rereview_reason = f"Legal review: {note}"[:REREVIEW_REASON_MAX]
            else:
                document.status = Document.Status.CLOSED
            document.save(update_fields=["status", "rereview_reason"])
        audit_record(
            action="flag.resolve",
            actor=actor,
            project=document.project,
            target=flag,
            before={"document": document.pk, "flag_comment": flag.comment, **before},
            after={
                "document": document.pk,
                "decision": decision,
                "note": note,
                "status": document.status,
                "rereview_reason": document.rereview_reason,
            },
        )
    return flag
