"""The review queue: which document a reviewer gets next, and the leases that keep two reviewers apart."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Annotation, Document, Flag, GoldAnswer, Lease, Project, QueueBoost, Skip
from annotation.services.audit import audit_record

# How many candidates one request tries before giving up; each miss means another reviewer won that document.
CLAIM_ATTEMPTS = 8


@dataclass(frozen=True)
class QueueOffer:
    document: Document
    expires_at: datetime
    resumed: bool  # the reviewer already held this document (a reload, or the page's prefetched next one)


def next_document_for(
    *, reviewer: AbstractBaseUser, project: Project, after_document_id: int | None = None
) -> QueueOffer | None:
    """The document the reviewer should label now, leased to them; None when the queue has nothing for them.

    A reviewer who already holds a live lease gets that document back, so reloading the page is safe.
    `after_document_id` is the document the page shows now: its lease is renewed and the answer is a
    different document (the one the page prefetches), so a reviewer holds at most two documents at a time.
    """
    now = timezone.now()
    expires_at = now + timedelta(seconds=project.lease_ttl_seconds)
    held = Lease.objects.filter(project=project, reviewer=reviewer, expires_at__gt=now)
    with transaction.atomic():
        _lease_writes_need_no_flush()
        if after_document_id is not None:
            held.filter(document_id=after_document_id).update(expires_at=expires_at)
            held = held.exclude(document_id=after_document_id)
        # An overlapped or gold document is labeled already (by someone else); it is still this reviewer's to do.
        answered = Annotation.objects.filter(document=OuterRef("document"), reviewer=reviewer)
        lease = (
            held.filter(
                Q(document__status=Document.Status.QUEUED)
                | Q(document__status=Document.Status.LABELED) & ~Exists(answered)
            )
            .select_related("document")
            .order_by("acquired_at", "document_id")
            .first()
        )
        if lease is not None:
            Lease.objects.filter(pk=lease.pk).update(expires_at=expires_at)
            return QueueOffer(document=lease.document, expires_at=expires_at, resumed=True)

        tried: list[int] = [after_document_id] if after_document_id is not None else []
        for _ in range(CLAIM_ATTEMPTS):
            document = _next_routed_document(reviewer=reviewer, project=project, now=now, exclude_ids=tried)
            if document is None:
                return None
            if _claim(document=document, reviewer=reviewer, now=now, expires_at=expires_at):
                return QueueOffer(document=document, expires_at=expires_at, resumed=False)
            tried.append(document.pk)
    return None


def _lease_writes_need_no_flush() -> None:
    """Let this transaction commit without waiting for its WAL to reach the disk (PostgreSQL only).

    It writes only leases. Should the database crash within the next moment and lose them, those documents
    simply return to the queue, which is what an expired lease does anyway; answers are committed in full
    elsewhere. Waiting for the flush was the single largest cost of asking for the next document.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _available(*, reviewer: AbstractBaseUser, project: Project, now: datetime) -> QuerySet[Document]:
    """Queued documents nobody holds and this reviewer has not skipped."""
    live_lease = Lease.objects.filter(document=OuterRef("pk"), expires_at__gt=now)
    skipped = Skip.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    return Document.objects.filter(project=project, status=Document.Status.QUEUED).filter(
        ~Exists(live_lease), ~Exists(skipped)
    )


def _next_routed_document(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> Document | None:
    """A document put at the front of the queue from Explore, else a gold document when the reviewer is due one,
    else an overlapped document waiting for another reviewer, else the next document of the queue (see
    docs/quality.md)."""
    document = _next_boosted_document(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids)
    if document is not None:
        return document
    if project.gold_rate > 0 and _gold_due(reviewer=reviewer, project=project):
        document = _next_gold_document(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids)
        if document is not None:
            return document
    if project.overlap_rate > 0:
        document = _next_overlap_document(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids)
        if document is not None:
            return document
    return _next_unheld_document(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids)


def _next_boosted_document(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> Document | None:
    """The queued document put at the front longest ago, for this reviewer or for everyone (Explore's "review
    these next"). Asked from the few boost rows first, so a project with none pays one index lookup."""
    boosted = list(
        QueueBoost.objects.filter(project=project, document__status=Document.Status.QUEUED)
        .filter(Q(reviewer=reviewer) | Q(reviewer__isnull=True))
        .exclude(document_id__in=exclude_ids)
        .order_by("created_at", "id")
        .values_list("document_id", flat=True)[:50]
    )
    if not boosted:
        return None
    candidates = _available(reviewer=reviewer, project=project, now=now).filter(pk__in=boosted)
    return candidates.order_by("pk").select_for_update(skip_locked=True, of=("self",)).first()


def _gold_due(*, reviewer: AbstractBaseUser, project: Project) -> bool:
    """Whether gold documents are below `gold_rate` of what this reviewer will have answered after this one."""
    counts = Annotation.objects.filter(document__project=project, reviewer=reviewer).aggregate(
        total=Count("id"), gold=Count("id", filter=Q(document__gold_answer__isnull=False))
    )
    return counts["gold"] < int(project.gold_rate * (counts["total"] + 1))


def _second_look_candidates(*, reviewer: AbstractBaseUser, project: Project, now: datetime) -> QuerySet[Document]:
    """Labeled documents nobody holds that this reviewer has neither answered nor skipped."""
    live_lease = Lease.objects.filter(document=OuterRef("pk"), expires_at__gt=now)
    skipped = Skip.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    answered = Annotation.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    return Document.objects.filter(project=project, status=Document.Status.LABELED).filter(
        ~Exists(live_lease), ~Exists(skipped), ~Exists(answered)
    )


def _next_gold_document(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> Document | None:
    gold = GoldAnswer.objects.filter(document=OuterRef("pk"))
    candidates = (
        _second_look_candidates(reviewer=reviewer, project=project, now=now)
        .filter(Exists(gold))
        .exclude(pk__in=exclude_ids)
        .order_by("random_key", "id")
    )
    return candidates.select_for_update(skip_locked=True, of=("self",)).first()


def _next_overlap_document(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> Document | None:
    """An overlapped document that has fewer reviewers than `overlap_reviewers`, oldest answer first.

    The overlap set is the documents whose fixed `random_key` falls below `overlap_rate`: a random share,
    decided without a stored flag, that the queue index (project, status, random_key) reaches directly.
    Imported labels and gold documents are not overlapped: their answer is known already.
    """
    reviewer_answers = Subquery(
        Annotation.objects.filter(document=OuterRef("pk"), reviewer__isnull=False)
        .order_by()
        .values("document")
        .annotate(n=Count("id"))
        .values("n"),
        output_field=IntegerField(),
    )
    unattributed = Annotation.objects.filter(document=OuterRef("pk"), reviewer__isnull=True)
    gold = GoldAnswer.objects.filter(document=OuterRef("pk"))
    candidates = (
        _second_look_candidates(reviewer=reviewer, project=project, now=now)
        .filter(random_key__lt=project.overlap_rate)
        .filter(~Exists(unattributed), ~Exists(gold))
        .annotate(reviewers_so_far=Coalesce(reviewer_answers, 0))
        .filter(reviewers_so_far__gte=1, reviewers_so_far__lt=project.overlap_reviewers)
        .exclude(pk__in=exclude_ids)
        .order_by("random_key", "id")
    )
    return candidates.select_for_update(skip_locked=True, of=("self",)).first()


def _next_unheld_document(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> Document | None:
    """The highest-priority available document, locked for this transaction; rows others have locked are skipped.

    This is `learning.selectors.order_by_priority` (scored documents by score, highest first, then unscored
    ones by `random_key`, the overlap set spread out: `_next_unscored_document`), asked as separate queries so
    that PostgreSQL walks an index instead of sorting the pool: scored documents along the priority index
    (project, score DESC), unscored ones along the queue index (project, status, random_key). As one query
    with `score DESC NULLS LAST` it sorts every queued document on every request: 460 ms at 100,000
    documents against about 1 ms this way. Equal scores come in index order rather than by `random_key`, so
    a large tie (a cold-start score) needs no sort either.
    """
    available = _available(reviewer=reviewer, project=project, now=now).exclude(pk__in=exclude_ids)
    scored = available.filter(queue_priority__project=project).order_by(F("queue_priority__score").desc())
    # of=("self",): lock the document row only; the priority row may be missing (outer join).
    document = scored.select_for_update(skip_locked=True, of=("self",)).first()
    if document is not None:
        return document
    return _next_unscored_document(available.filter(queue_priority__isnull=True), overlap_rate=project.overlap_rate)


def _next_unscored_document(unscored: QuerySet[Document], *, overlap_rate: float) -> Document | None:
    """The next document nobody has scored yet (new imports until the rescore ends), by `first_look_position`.

    Walking the queue index by `random_key` alone would hand out the overlap set first (its keys are the lowest),
    and each of those comes back for a second reviewer: right after an import most answers went to overlapped
    documents. The overlap set and the rest are walked side by side instead, each along the index, and the
    candidate further behind in its own range goes first: the two interleave at `overlap_rate` to one.
    """
    locked = unscored.select_for_update(skip_locked=True, of=("self",))
    if not 0 < overlap_rate < 1:
        return locked.order_by("random_key", "id").first()
    candidates = [
        locked.filter(random_key__lt=overlap_rate).order_by("random_key", "id").first(),
        locked.filter(random_key__gte=overlap_rate).order_by("random_key", "id").first(),
    ]
    found = [d for d in candidates if d is not None]
    if not found:
        return None
    return min(found, key=lambda d: (first_look_position(d.random_key, overlap_rate), d.pk))


def first_look_position(random_key: float, overlap_rate: float) -> float:
    """Where a document with this `random_key` comes among unscored ones, from 0 to 1.

    The overlap set's keys [0, overlap_rate) and the rest's [overlap_rate, 1) are each stretched over [0, 1),
    so taking the lowest position first serves overlapped documents at `overlap_rate` of first looks from the
    start, as they are spread over the queue once it is scored. The cold start orders its tail the same way.
    """
    if not 0 < overlap_rate < 1:
        return random_key
    if random_key < overlap_rate:
        return random_key / overlap_rate
    return (random_key - overlap_rate) / (1 - overlap_rate)


def _claim(*, document: Document, reviewer: AbstractBaseUser, now: datetime, expires_at: datetime) -> bool:
    """Insert the lease, or take over an expired one; False when someone else holds it live.

    The row lock on the document does not stop this race: another reviewer may have committed a lease for
    it after our query's snapshot was taken but before we locked the row. The lease table's primary key and
    the `WHERE expired` guard settle it inside the database, whoever commits first.
    """
    table = connection.ops.quote_name(Lease._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    sql = (
        f"INSERT INTO {table} (document_id, project_id, reviewer_id, acquired_at, expires_at) "
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (document_id) DO UPDATE SET project_id = EXCLUDED.project_id, "
        "reviewer_id = EXCLUDED.reviewer_id, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at "
        f"WHERE {table}.expires_at <= EXCLUDED.acquired_at "
        "RETURNING document_id"
    )
    params = [document.pk, document.project_id, reviewer.pk, adapt(now), adapt(expires_at)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def lease_release(*, reviewer: AbstractBaseUser, document: Document) -> None:
    """Give a held document back to the queue at once (the reviewer skipped, flagged or left it)."""
    Lease.objects.filter(document=document, reviewer=reviewer).delete()


def document_skip(*, reviewer: AbstractBaseUser, document: Document) -> None:
    """The reviewer passes on the document: others still get it, this reviewer is not offered it again."""
    with transaction.atomic():
        Skip.objects.bulk_create([Skip(document=document, reviewer=reviewer)], ignore_conflicts=True)
        lease_release(reviewer=reviewer, document=document)


def document_flag(*, reviewer: AbstractBaseUser, document: Document, comment: str) -> Flag:
    """Hold the document for legal review with the reviewer's comment; it leaves the queue until resolved."""
    flag = Flag(document=document, reviewer=reviewer, comment=comment.strip())
    flag.full_clean()
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        flag.save()
        before = document.status
        document.status = Document.Status.FLAGGED
        document.save(update_fields=["status"])
        Lease.objects.filter(document=document).delete()
        audit_record(
            action="document.flag",
            actor=reviewer,
            project=document.project,
            target=document,
            before={"status": before},
            after={"status": document.status, "flag": flag.pk, "comment": flag.comment},
        )
    return flag
