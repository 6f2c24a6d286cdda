"""The review queue: which document a reviewer gets next, and the leases that keep two reviewers apart."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import (
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Floor
from django.utils import timezone

from annotation import statements
from annotation.models import Annotation, Document, Flag, GoldAnswer, Lease, Project, QueueBoost, Skip
from annotation.services.audit import audit_record
from annotation.services.retries import retrying_deadlocks

# How many candidates one request tries before giving up; each miss means another reviewer won that document.
CLAIM_ATTEMPTS = 8


@dataclass(frozen=True)
class QueueOffer:
    document: Document
    expires_at: datetime
    resumed: bool  # the reviewer already held this document (a reload, or the page's prefetched next one)


@retrying_deadlocks
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
    if connection.vendor == "postgresql":
        return _offer_in_two_statements(
            reviewer=reviewer,
            project=project,
            now=now,
            expires_at=expires_at,
            after_document_id=after_document_id,
        )
    resumable = _resumable(reviewer=reviewer, project=project, now=now, after_document_id=after_document_id)
    with transaction.atomic():
        if after_document_id is not None:
            Lease.objects.filter(
                project=project, reviewer=reviewer, expires_at__gt=now, document_id=after_document_id
            ).update(expires_at=expires_at)
        lease = resumable.select_related("document").first()
        if lease is not None:
            Lease.objects.filter(pk=lease.pk).update(expires_at=expires_at)
            return QueueOffer(document=lease.document, expires_at=expires_at, resumed=True)
        tried: list[int] = [after_document_id] if after_document_id is not None else []
        for _ in range(CLAIM_ATTEMPTS):
            document = _first_routed(_routes(reviewer=reviewer, project=project, now=now, exclude_ids=tried))
            if document is None:
                return None
            if _claim(document=document, reviewer=reviewer, now=now, expires_at=expires_at):
                return QueueOffer(document=document, expires_at=expires_at, resumed=False)
            tried.append(document.pk)
    return None


def _resumable(
    *, reviewer: AbstractBaseUser | int, project: Project, now: datetime, after_document_id: int | None
) -> QuerySet[Lease]:
    """The reviewer's live leases other than the document on screen whose document is still theirs to label."""
    held = Lease.objects.filter(project=project, reviewer=reviewer, expires_at__gt=now)
    if after_document_id is not None:
        held = held.exclude(document_id=after_document_id)
    # An overlapped or gold document is labeled already (by someone else); it is still this reviewer's to do.
    answered = Annotation.objects.filter(document=OuterRef("document"), reviewer=reviewer)
    return held.filter(
        Q(document__status=Document.Status.QUEUED) | Q(document__status=Document.Status.LABELED) & ~Exists(answered)
    ).order_by("acquired_at", "document_id")


def _offer_in_two_statements(
    *,
    reviewer: AbstractBaseUser,
    project: Project,
    now: datetime,
    expires_at: datetime,
    after_document_id: int | None,
) -> QueueOffer | None:
    """`next_document_for` on PostgreSQL: one statement renews and resumes, one claims (repeated only when
    another reviewer won the document). Each is atomic on its own, so no transaction spans them: two round trips
    where the general path takes six to nine, and none of them a BEGIN or COMMIT.

    Both statements are compiled once per shape (annotation.statements): building and compiling their querysets
    took more CPU time than PostgreSQL takes to run them.
    """
    values = {
        "project_id": project.pk,
        "reviewer_id": reviewer.pk,
        "now": now,
        "expires_at": expires_at,
        "after_document_id": after_document_id,
    }
    sql, params = statements.prepared("queue.renew_and_resume", _renew_and_resume_sql, **values)
    document = _offered_document(sql, params)[0]
    if document is not None:
        return QueueOffer(document=document, expires_at=expires_at, resumed=True)
    tried: list[int] = [after_document_id] if after_document_id is not None else []
    settings = {
        "gold_rate": float(project.gold_rate),
        "overlap_rate": float(project.overlap_rate),
        "overlap_reviewers": project.overlap_reviewers,
    }
    for _ in range(CLAIM_ATTEMPTS):
        sql, params = statements.prepared("queue.claim_first", _claim_first_sql, **values, **settings, tried=tried)
        document, claimed = _offered_document(sql, params)
        if document is None:
            return None
        if claimed:
            return QueueOffer(document=document, expires_at=expires_at, resumed=False)
        tried = [*tried, document.pk]
    return None


def _stand_in_project(project_id: int, **settings) -> Project:
    """The project as the queue's querysets need it: its id and the settings that decide the routes."""
    return Project(pk=project_id, **settings)


def _offered_document(sql: str, params: list) -> tuple[Document | None, bool]:
    """Run a statement of `_renew_and_resume_sql` or `_claim_first_sql`: the document, and whether the row counted
    (a renewal, or a claim that is now this reviewer's)."""
    names, _ = _document_columns("d")
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)
        row = cursor.fetchone()
    if row is None or row[2] is None:
        return None, False
    return _document_from_row(names, row[2:]), bool(row[1])


def _document_columns(alias: str) -> tuple[list[str], str]:
    """The document's field names and its columns, in the order `_document_from_row` reads them back."""
    fields = Document._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in fields)


def _document_from_row(names: list[str], values: tuple) -> Document:
    """A Document from the columns of `_document_columns`, read as a queryset reads them (JSON parsed)."""
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(Document._meta.concrete_fields, values, strict=True)
    ]
    return Document.from_db(connection.alias, names, converted)


def _renew_and_resume_sql(
    *, project_id: int, reviewer_id: int, now: datetime, expires_at: datetime, after_document_id: int | None
) -> tuple[str, list]:
    """One statement (PostgreSQL): renew the lease of the document on screen, find (and renew) another live
    lease of the reviewer's to resume, and let the transaction commit without waiting for its WAL to reach
    the disk. Its row holds the document of the lease resumed (all NULL when there is none).

    One round trip where there were three or four: this runs on every request for the next document. The
    transaction writes only leases; should the database crash within the next moment and lose them, those
    documents simply return to the queue, which is what an expired lease does anyway (answers are committed
    in full elsewhere). Waiting for the flush was the single largest cost of asking for the next document.
    """
    resumable = _resumable(
        reviewer=reviewer_id, project=_stand_in_project(project_id), now=now, after_document_id=after_document_id
    )
    resumable_sql, resumable_params = resumable.values("document_id")[:1].query.sql_with_params()
    table = connection.ops.quote_name(Lease._meta.db_table)
    _, columns = _document_columns("d")
    adapt = connection.ops.adapt_datetimefield_value
    sql = (
        f"WITH resumed AS ({resumable_sql}), "
        f"renewed AS (UPDATE {table} SET expires_at = %s WHERE project_id = %s AND reviewer_id = %s "
        "AND expires_at > %s AND (document_id = %s OR document_id IN (SELECT document_id FROM resumed)) "
        "RETURNING document_id) "
        f"SELECT set_config('synchronous_commit', 'off', true), (SELECT count(*) FROM renewed), {columns} "
        f"FROM (SELECT 1) AS one LEFT JOIN {connection.ops.quote_name(Document._meta.db_table)} AS d "
        "ON d.id = (SELECT document_id FROM resumed)"
    )
    params = [*resumable_params, adapt(expires_at), project_id, reviewer_id, adapt(now), after_document_id]
    return sql, params


def _available(*, reviewer: AbstractBaseUser, project: Project, now: datetime) -> QuerySet[Document]:
    """Queued documents nobody holds and this reviewer has not skipped."""
    live_lease = Lease.objects.filter(document=OuterRef("pk"), expires_at__gt=now)
    skipped = Skip.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    return Document.objects.filter(project=project, status=Document.Status.QUEUED).filter(
        ~Exists(live_lease), ~Exists(skipped)
    )


@dataclass(frozen=True)
class _Route:
    """One place the queue looks for the next document, tried in order until one finds a document.

    `candidates` are ordered querysets of documents; the route offers the first document of the first that has
    one, or, with `interleave_rate`, the one whose document comes first by `first_look_position`. A route with
    a `gate` is tried only when the gate finds a row.
    """

    candidates: list[QuerySet[Document]]
    gate: QuerySet | None = None
    interleave_rate: float | None = None


def _routes(*, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]) -> list[_Route]:
    """Where the next document comes from, in order: a document put at the front of the queue from Explore, else
    a gold document when the reviewer is due one, else an overlapped document waiting for another reviewer, else
    the next document of the queue (docs/quality.md)."""
    routes = [_Route([_boosted_candidates(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids)])]
    if project.gold_rate > 0:
        gold = GoldAnswer.objects.filter(document=OuterRef("pk"))
        candidates = _second_look_candidates(reviewer=reviewer, project=project, now=now).filter(Exists(gold))
        routes.append(
            _Route(
                [candidates.exclude(pk__in=exclude_ids).order_by("random_key", "id")], gate=_gold_due(reviewer, project)
            )
        )
    if project.overlap_rate > 0:
        routes.append(
            _Route([_overlap_candidates(reviewer=reviewer, project=project, now=now).exclude(pk__in=exclude_ids)])
        )
    routes.extend(_unheld_routes(reviewer=reviewer, project=project, now=now, exclude_ids=exclude_ids))
    return routes


def _boosted_candidates(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> QuerySet[Document]:
    """Queued documents put at the front longest ago, for this reviewer or for everyone (Explore's "review these
    next"), among the 50 oldest such requests. Asked from the few boost rows, so a project with none pays one
    index lookup."""
    boosted = (
        QueueBoost.objects.filter(project=project, document__status=Document.Status.QUEUED)
        .filter(Q(reviewer=reviewer) | Q(reviewer__isnull=True))
        .exclude(document_id__in=exclude_ids)
        .order_by("created_at", "id")
        .values("document_id")[:50]
    )
    return _available(reviewer=reviewer, project=project, now=now).filter(pk__in=boosted).order_by("pk")


def _gold_due(reviewer: AbstractBaseUser, project: Project) -> QuerySet:
    """A row when gold documents are below `gold_rate` of what this reviewer will have answered after this one.

    A reviewer with no answers yet is never due: `gold_rate` (at most a half) of one answer rounds down to none.
    """
    counts = (
        Annotation.objects.filter(document__project=project, reviewer=reviewer)
        .order_by()
        .values("reviewer")
        .annotate(total=Count("id"), gold=Count("id", filter=Q(document__gold_answer__isnull=False)))
    )
    due = ExpressionWrapper(Value(project.gold_rate) * (F("total") + 1), output_field=FloatField())
    return counts.filter(gold__lt=Floor(due)).values("reviewer")


def _second_look_candidates(*, reviewer: AbstractBaseUser, project: Project, now: datetime) -> QuerySet[Document]:
    """Labeled documents nobody holds that this reviewer has neither answered nor skipped."""
    live_lease = Lease.objects.filter(document=OuterRef("pk"), expires_at__gt=now)
    skipped = Skip.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    answered = Annotation.objects.filter(document=OuterRef("pk"), reviewer=reviewer)
    return Document.objects.filter(project=project, status=Document.Status.LABELED).filter(
        ~Exists(live_lease), ~Exists(skipped), ~Exists(answered)
    )


def _overlap_candidates(*, reviewer: AbstractBaseUser, project: Project, now: datetime) -> QuerySet[Document]:
    """Overlapped documents that have fewer reviewers than `overlap_reviewers`, oldest answer first.

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
    return (
        _second_look_candidates(reviewer=reviewer, project=project, now=now)
        .filter(random_key__lt=project.overlap_rate)
        .filter(~Exists(unattributed), ~Exists(gold))
        .annotate(reviewers_so_far=Coalesce(reviewer_answers, 0))
        .filter(reviewers_so_far__gte=1, reviewers_so_far__lt=project.overlap_reviewers)
        .order_by("random_key", "id")
    )


def _unheld_routes(
    *, reviewer: AbstractBaseUser, project: Project, now: datetime, exclude_ids: list[int]
) -> list[_Route]:
    """The highest-priority available document: scored documents by score, highest first, then unscored ones.

    This is `learning.selectors.order_by_priority` (scored documents by score, highest first, then unscored
    ones by `random_key`, the overlap set spread out: see `first_look_position`), asked as separate queries so
    that PostgreSQL walks an index instead of sorting the pool: scored documents along the priority index
    (project, score DESC), unscored ones along the queue index (project, status, random_key). As one query
    with `score DESC NULLS LAST` it sorts every queued document on every request: 460 ms at 100,000
    documents against about 1 ms this way. Equal scores come in index order rather than by `random_key`, so
    a large tie (a cold-start score) needs no sort either.

    Unscored documents (new imports until the rescore ends) come by `first_look_position`. Walking the queue
    index by `random_key` alone would hand out the overlap set first (its keys are the lowest), and each of
    those comes back for a second reviewer: right after an import most answers went to overlapped documents.
    The overlap set and the rest are walked side by side instead, each along the index, and the candidate
    further behind in its own range goes first: the two interleave at `overlap_rate` to one.
    """
    available = _available(reviewer=reviewer, project=project, now=now).exclude(pk__in=exclude_ids)
    scored = available.filter(queue_priority__project=project).order_by(F("queue_priority__score").desc())
    unscored = available.filter(queue_priority__isnull=True)
    rate = project.overlap_rate
    if not 0 < rate < 1:
        return [_Route([scored]), _Route([unscored.order_by("random_key", "id")])]
    halves = [
        unscored.filter(random_key__lt=rate).order_by("random_key", "id"),
        unscored.filter(random_key__gte=rate).order_by("random_key", "id"),
    ]
    return [_Route([scored]), _Route(halves, interleave_rate=rate)]


def _locked(candidates: QuerySet[Document]) -> QuerySet[Document]:
    # of=("self",): lock the document row only; a joined priority row may be missing (outer join).
    return candidates.select_for_update(skip_locked=True, of=("self",))


def _first_routed(routes: list[_Route]) -> Document | None:
    """The document the routes offer, locked for this transaction, one query per candidate (any database)."""
    for route in routes:
        if route.gate is not None and not route.gate.exists():
            continue
        found = [d for d in (_locked(c).first() for c in route.candidates) if d is not None]
        if found and route.interleave_rate is not None:
            return min(found, key=lambda d: (first_look_position(d.random_key, route.interleave_rate), d.pk))
        if found:
            return found[0]
    return None


def _claim_first_sql(
    *,
    project_id: int,
    reviewer_id: int,
    now: datetime,
    expires_at: datetime,
    after_document_id: int | None,
    gold_rate: float,
    overlap_rate: float,
    overlap_reviewers: int,
    tried: list[int],
) -> tuple[str, list]:
    """`_first_routed` and `_claim` in one statement (PostgreSQL): its row holds whether the lease is now this
    reviewer's (0: another reviewer committed one first; try the next) and the document the routes offer (no
    row: none).

    Each candidate query is a CTE that locks its row with SKIP LOCKED. PostgreSQL evaluates a CTE only as far
    as its reader asks, so `UNION ALL ... LIMIT 1` over the routes runs (and locks) only up to the first route
    that finds a document, exactly as asking them one by one did, in one round trip instead of three to six.
    Like `_renew_and_resume`, it commits without waiting for the flush: it writes only a lease.
    """
    project = _stand_in_project(
        project_id, gold_rate=gold_rate, overlap_rate=overlap_rate, overlap_reviewers=overlap_reviewers
    )
    routes = _routes(reviewer=reviewer_id, project=project, now=now, exclude_ids=tried)
    ctes: list[str] = []
    params: list = []
    branches: list[str] = []
    # Written out rather than by select_for_update(), which Django refuses outside a transaction: the lock
    # lasts as long as the statement, which is all the claim needs.
    lock = connection.ops.for_update_sql(skip_locked=True, of=(connection.ops.quote_name(Document._meta.db_table),))
    for r, route in enumerate(routes):
        names = []
        for c, candidates in enumerate(route.candidates):
            sql, candidate_params = candidates.values("id", "random_key")[:1].query.sql_with_params()
            ctes.append(f"r{r}c{c} AS ({sql} {lock})")
            params.extend(candidate_params)
            names.append(f"r{r}c{c}")
        if route.interleave_rate is not None:
            low, high = names
            ctes.append(
                f"r{r} AS (SELECT id FROM (SELECT id, random_key / %s::float8 AS position FROM {low} UNION ALL "
                f"SELECT id, (random_key - %s::float8) / (1 - %s::float8) AS position FROM {high}) AS both_halves "
                "ORDER BY position, id LIMIT 1)"
            )
            params.extend([route.interleave_rate] * 3)
        elif route.gate is not None:
            gate_sql, gate_params = route.gate.query.sql_with_params()
            ctes.append(f"r{r} AS (SELECT id FROM {names[0]} WHERE EXISTS ({gate_sql}))")
            params.extend(gate_params)
        else:
            ctes.append(f"r{r} AS (SELECT id FROM {names[0]})")
        branches.append(f"SELECT id FROM r{r}")
    lease_table = connection.ops.quote_name(Lease._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    ctes.append(f"candidate AS ({' UNION ALL '.join(branches)} LIMIT 1)")
    ctes.append(
        f"claimed AS (INSERT INTO {lease_table} (document_id, project_id, reviewer_id, acquired_at, expires_at) "
        "SELECT id, %s, %s, %s, %s FROM candidate " + _TAKE_OVER_EXPIRED.format(table=lease_table) + ")"
    )
    params.extend([project_id, reviewer_id, adapt(now), adapt(expires_at)])
    _, columns = _document_columns("d")
    sql = (
        f"WITH {', '.join(ctes)} SELECT set_config('synchronous_commit', 'off', true), "
        f"(SELECT count(*) FROM claimed), {columns} "
        f"FROM {connection.ops.quote_name(Document._meta.db_table)} AS d WHERE d.id = (SELECT id FROM candidate)"
    )
    return sql, params


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


# The end of a lease insert: a live lease of someone else's stays, an expired one is taken over.
_TAKE_OVER_EXPIRED = (
    "ON CONFLICT (document_id) DO UPDATE SET project_id = EXCLUDED.project_id, "
    "reviewer_id = EXCLUDED.reviewer_id, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at "
    "WHERE {table}.expires_at <= EXCLUDED.acquired_at RETURNING document_id"
)


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
        "VALUES (%s, %s, %s, %s, %s) " + _TAKE_OVER_EXPIRED.format(table=table)
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
