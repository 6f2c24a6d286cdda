"""A reviewer's answer for a document: stored once, kept whole through edits, and announced to the learning loop."""

import importlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation import statements
from annotation.exceptions import DocketError, InvalidLabels, LabelsChanged, NotServed
from annotation.models import (
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    Document,
    Label,
    Lease,
    Project,
    Taxonomy,
    TaxonomyVersion,
)
from annotation.services.audit import audit_event, audit_record
from annotation.services.knocks import knocks, send_now
from annotation.services.retries import retrying_deadlocks
from annotation.services.taxonomy import taxonomy_hold
from webhooks.events import labeled_note

logger = logging.getLogger(__name__)

# Longer than this is a tab left open over lunch, not time spent reading.
MAX_SECONDS_SPENT = 4 * 3600


# Signs the ticket that comes with every document the labeling page is handed (see `serve_ticket_issue`).
SERVE_TICKET_SALT = "annotation.labeling.served"


def serve_ticket_issue(*, reviewer: AbstractBaseUser, document: Document) -> str:
    """A signed note that this document was handed to this reviewer's page now; the page sends it back with
    its answer. The server can then refuse an answer for a document the page was never given (a stale tab, a
    script, a page that mixed up its documents) and knows when the document was served. It is not tied to the
    lease: an answer that arrives after the lease expired is still wanted."""
    return signing.dumps(
        {"d": document.pk, "r": reviewer.pk, "t": round(time.time(), 3)}, salt=SERVE_TICKET_SALT, compress=False
    )


def serve_ticket_read(*, ticket: str, reviewer: AbstractBaseUser, document: Document) -> datetime:
    """When the document was served to this reviewer's page, or NotServed when the ticket is not for it."""
    try:
        note = signing.loads(ticket, salt=SERVE_TICKET_SALT)
        matches = note["d"] == document.pk and note["r"] == reviewer.pk
        served_at = datetime.fromtimestamp(float(note["t"]), tz=UTC)
    except (signing.BadSignature, KeyError, TypeError, ValueError) as error:
        raise NotServed("This answer does not come from a labeling page Docket served; reload the page.") from error
    if not matches:
        raise NotServed(
            f"This answer is for document {document.pk}, which this page was not shown; nothing was saved. "
            "Reload the page."
        )
    return served_at


@dataclass(frozen=True)
class SubmissionResult:
    annotation: Annotation
    label_keys: list[str]
    created: bool  # a new annotation (False: an edit of the reviewer's earlier one, or a replay)
    changed: bool  # the stored labels differ from before this call
    replayed: bool  # this submission_id was stored already: a double submit or a retried request
    lease_lost: bool  # saved although the reviewer's lease had expired or was taken by another reviewer


def labels_for_submission(project: Project, label_keys: Iterable[str]) -> list[Label]:
    """The project's current labels named by `label_keys`, or InvalidLabels saying what is wrong."""
    keys = list(dict.fromkeys(k.strip() for k in label_keys if k and k.strip()))
    # With the taxonomy (its version: what `_first_answer_insert` stores the answer under); every submission
    # asks, so the query is compiled once (annotation.statements).
    labels = statements.prepared_objects(
        "labeling.labels_named", Label, _labels_named, related=("taxonomy",), project_id=project.pk, keys=tuple(keys)
    )
    unknown = sorted(set(keys) - {label.key for label in labels})
    if unknown and _were_labels(project, unknown):
        raise LabelsChanged(
            f"The labels changed while you answered ({', '.join(unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} no longer offered): reload the page and answer again."
        )
    if unknown:
        raise InvalidLabels(
            f"Not a current label of {project.name}: {', '.join(unknown)}. Reload the page to see the labels in use."
        )
    if project.multi_label and not labels:
        raise InvalidLabels("Choose at least one label.")
    if not project.multi_label and len(labels) != 1:
        raise InvalidLabels(f"{project.name} takes exactly one label per document; you chose {len(labels)}.")
    return labels


def _labels_named(*, project_id: int, keys: tuple[str, ...]):
    return Label.objects.filter(taxonomy__project=project_id, key__in=keys, deprecated=False).order_by("order", "id")


def _were_labels(project: Project, keys: list[str]) -> bool:
    """Whether all these keys were labels of the project once (deprecated now, or merged or split away)."""
    known = set(Label.objects.filter(taxonomy__project=project, key__in=keys).values_list("key", flat=True))
    for labels in TaxonomyVersion.objects.filter(taxonomy__project=project).values_list("labels", flat=True):
        known.update(label.get("key") for label in labels or [] if isinstance(label, dict))
    return set(keys) <= known


@retrying_deadlocks
def annotation_submit(
    *,
    reviewer: AbstractBaseUser,
    document: Document,
    label_keys: Iterable[str],
    submission_id: uuid.UUID | None = None,
    seconds_spent: float | None = None,
    served_at: datetime | None = None,
    model_version_shown: int | None = None,
    suggested_labels: Iterable[str] = (),
) -> SubmissionResult:
    """Store the reviewer's labels for the document: a new annotation, or an edit of their earlier one.

    Idempotent: a replayed `submission_id` returns the stored annotation unchanged. A submission whose lease
    expired or went to another reviewer is still saved (and says so in `lease_lost`). The document leaves the
    queue, its lease is removed, the change gets a revision and an audit event, and once committed the
    learning loop hears that the project's labels changed. An answer naming a label that a taxonomy change
    removed meanwhile raises LabelsChanged (nothing is stored; the reviewer reloads and answers again).
    """
    project = document.project
    suggested = list(dict.fromkeys(suggested_labels))
    if seconds_spent is not None:
        seconds_spent = min(max(float(seconds_spent), 0.0), MAX_SECONDS_SPENT)
        if served_at is not None:
            # The page cannot have shown the document for longer than it has had it.
            seconds_spent = min(seconds_spent, max((timezone.now() - served_at).total_seconds(), 0.0))

    if connection.vendor == "postgresql":
        labels = labels_for_submission(project, label_keys)
        first = _first_answer_insert(
            reviewer=reviewer,
            project=project,
            document=document,
            labels=labels,
            taxonomy_version=labels[0].taxonomy.version,
            submission_id=submission_id,
            seconds_spent=seconds_spent,
            served_at=served_at,
            model_version_shown=model_version_shown,
            suggested=suggested,
        )
        if first is not None:
            annotation, lease_lost = first
            project_id = project.pk
            transaction.on_commit(lambda: knock_learning(project_id))
            labeled_note(project=project, document_id=document.pk)
            keys = [label.key for label in labels]
            return SubmissionResult(annotation, keys, created=True, changed=True, replayed=False, lease_lost=lease_lost)

    with transaction.atomic():
        # The taxonomy first, then the document: the order taxonomy changes lock in. The labels are read
        # after it, so they are the ones this answer is stored under (a merge waits for it, or went first).
        taxonomy_hold(project)
        labels = labels_for_submission(project, label_keys)
        keys = [label.key for label in labels]
        # One submission per document at a time: a double submit waits here, then finds the first one's row.
        document = Document.objects.select_for_update().get(pk=document.pk)
        # The reviewer's earlier answer to this document and a replay of this very submission, in one query.
        mine = Q(document=document, reviewer=reviewer)
        found = list(Annotation.objects.filter(mine | Q(submission_id=submission_id) if submission_id else mine))
        replay = next((a for a in found if submission_id is not None and a.submission_id == submission_id), None)
        if replay is not None:
            if replay.document_id != document.pk or replay.reviewer_id != reviewer.pk:
                raise DocketError("This submission id belongs to another answer; reload the page and try again.")
            stored = sorted(replay.labels.values_list("key", flat=True))
            return SubmissionResult(replay, stored, created=False, changed=False, replayed=True, lease_lost=False)

        annotation = next((a for a in found if a.document_id == document.pk and a.reviewer_id == reviewer.pk), None)
        if annotation is None:
            lease = Lease.objects.filter(document=document).first()
            lease_lost = lease is None or lease.reviewer_id != reviewer.pk or lease.expires_at <= timezone.now()
            annotation = _annotation_create(
                reviewer=reviewer,
                project=project,
                document=document,
                labels=labels,
                submission_id=submission_id,
                seconds_spent=seconds_spent,
                served_at=served_at,
                model_version_shown=model_version_shown,
                suggested=suggested,
            )
            result = SubmissionResult(
                annotation, keys, created=True, changed=True, replayed=False, lease_lost=lease_lost
            )
        else:
            changed = _annotation_change(
                annotation=annotation, project=project, labels=labels, reviewer=reviewer, reason="edit"
            )
            result = SubmissionResult(
                annotation, keys, created=False, changed=changed, replayed=False, lease_lost=False
            )

        # A document held for legal review stays held; a late answer for it is kept all the same.
        if document.status == Document.Status.QUEUED:
            document.status = Document.Status.LABELED
            document.save(update_fields=["status"])
        # Only this reviewer's own hold ends here. A late answer for a document whose lease expired and went to
        # another reviewer must leave that reviewer's live lease alone: they are reading the document now, and
        # their answer is wanted too (it is saved as a second opinion).
        Lease.objects.filter(document=document, reviewer=reviewer).delete()
        if result.changed:
            project_id = project.pk
            transaction.on_commit(lambda: knock_learning(project_id))
            labeled_note(project=project, document_id=document.pk)
    return result


def _new_annotation(
    *,
    reviewer: AbstractBaseUser,
    document: Document,
    labels: list[Label],
    submission_id: uuid.UUID | None,
    seconds_spent: float | None,
    served_at: datetime | None,
    model_version_shown: int | None,
    suggested: list[str],
) -> Annotation:
    keys = [label.key for label in labels]
    annotation = Annotation(
        document=document,
        reviewer=reviewer,
        source=Annotation.Source.REVIEWER,
        seconds_spent=seconds_spent,
        served_at=served_at,
        model_version_shown=model_version_shown,
        suggested_labels=suggested,
        suggestion_accepted=(set(suggested) == set(keys)) if suggested else None,
        submission_id=submission_id,
    )
    # Uniqueness is settled by the document lock or the insert's ON CONFLICT and, last, by the database's
    # constraints; the document and reviewer were loaded by the caller, so they need no second look either.
    annotation.full_clean(exclude=["document", "reviewer"], validate_unique=False, validate_constraints=False)
    return annotation


def _annotation_create(
    *,
    reviewer: AbstractBaseUser,
    project: Project,
    document: Document,
    labels: list[Label],
    submission_id: uuid.UUID | None,
    seconds_spent: float | None,
    served_at: datetime | None,
    model_version_shown: int | None,
    suggested: list[str],
) -> Annotation:
    annotation = _new_annotation(
        reviewer=reviewer,
        document=document,
        labels=labels,
        submission_id=submission_id,
        seconds_spent=seconds_spent,
        served_at=served_at,
        model_version_shown=model_version_shown,
        suggested=suggested,
    )
    annotation.save()
    AnnotationLabel.objects.bulk_create([AnnotationLabel(annotation=annotation, label=label) for label in labels])
    _revision(annotation=annotation, labels=labels, reviewer=reviewer, reason="create")
    audit_record(**_create_event(annotation=annotation, project=project, labels=labels, reviewer=reviewer))
    return annotation


def _create_event(*, annotation: Annotation, project: Project, labels: list[Label], reviewer: AbstractBaseUser) -> dict:
    keys = [label.key for label in labels]
    after = {"document": annotation.document_id, "labels": keys, "suggested": annotation.suggested_labels}
    return {"action": "annotation.create", "actor": reviewer, "project": project, "target": annotation, "after": after}


def _first_answer_insert(
    *,
    reviewer: AbstractBaseUser,
    project: Project,
    document: Document,
    labels: list[Label],
    taxonomy_version: int,
    submission_id: uuid.UUID | None,
    seconds_spent: float | None,
    served_at: datetime | None,
    model_version_shown: int | None,
    suggested: list[str],
) -> tuple[Annotation, bool] | None:
    """The reviewer's first answer to the document, stored whole in one statement (PostgreSQL): the
    annotation, its labels, its revision and audit event, the document marked labeled (if it was queued) and
    the reviewer's lease removed. Returns the annotation and whether the lease had been lost.

    The statement first takes the shared hold on the taxonomy (`taxonomy_hold`), and only while the taxonomy
    is still at `taxonomy_version`, the one the labels were read at: every label change bumps it, so the labels
    are those this answer is stored under. None, with nothing written, when it moved on meanwhile, when the
    reviewer answered this document before, or when the submission id is known (a replay; ON CONFLICT DO
    NOTHING waits for a double submit in flight, then sees its row): `annotation_submit` then takes the general
    path, which locks the taxonomy and the document and reads what is there. One statement, and no transaction
    around it, for what is nearly every submission: the general path takes thirteen round trips.
    """
    annotation = _new_annotation(
        reviewer=reviewer,
        document=document,
        labels=labels,
        submission_id=submission_id,
        seconds_spent=seconds_spent,
        served_at=served_at,
        model_version_shown=model_version_shown,
        suggested=suggested,
    )
    revision = AnnotationRevision(
        annotation=annotation,
        label_keys=[label.key for label in labels],
        label_ids=[label.pk for label in labels],
        changed_by=reviewer,
        reason="create",
    )
    event = audit_event(**_create_event(annotation=annotation, project=project, labels=labels, reviewer=reviewer))
    insert_annotation, annotation_params = _insert_sql(annotation, computed={}, source="held")
    insert_revision, revision_params = _insert_sql(revision, computed={"annotation_id": "ann.id"}, source="ann")
    insert_event, event_params = _insert_sql(event, computed={"target_id": "ann.id::text"}, source="ann")
    quote = connection.ops.quote_name
    sql = (
        f"WITH held AS (SELECT 1 FROM {quote(Taxonomy._meta.db_table)} WHERE project_id = %s AND version = %s "
        "FOR SHARE), "
        f"ann AS ({insert_annotation} ON CONFLICT DO NOTHING RETURNING id), "
        f"links AS (INSERT INTO {quote(AnnotationLabel._meta.db_table)} (annotation_id, label_id) "
        "SELECT ann.id, label_id FROM ann, unnest(%s::bigint[]) AS label_id), "
        f"revision AS ({insert_revision}), "
        f"event AS ({insert_event}), "
        f"labeled AS (UPDATE {quote(Document._meta.db_table)} SET status = %s "
        "WHERE id = %s AND status = %s AND EXISTS (SELECT 1 FROM ann)), "
        f"released AS (DELETE FROM {quote(Lease._meta.db_table)} WHERE document_id = %s AND reviewer_id = %s "
        "AND EXISTS (SELECT 1 FROM ann) RETURNING expires_at) "
        "SELECT ann.id, (SELECT expires_at FROM released) FROM ann"
    )
    params = [
        project.pk,
        taxonomy_version,
        *annotation_params,
        [label.pk for label in labels],
        *revision_params,
        *event_params,
        Document.Status.LABELED,
        document.pk,
        Document.Status.QUEUED,
        document.pk,
        reviewer.pk,
    ]
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)  # the same text every time: prepared on the server
        row = cursor.fetchone()
    if row is None:
        return None
    annotation.pk = row[0]
    annotation._state.adding = False
    annotation._state.db = connection.alias
    lease_expires_at = row[1]
    return annotation, lease_expires_at is None or lease_expires_at <= timezone.now()


def _insert_sql(instance, *, computed: dict[str, str], source: str = "") -> tuple[str, list]:
    """`INSERT INTO <table> (<columns>) SELECT <values> [FROM source]` for an unsaved model instance, its fields
    prepared for the database as `save()` prepares them; `computed` gives SQL for some fields instead (an id
    returned by an earlier part of the same statement)."""
    fields = [f for f in instance._meta.concrete_fields if not f.primary_key]
    values, params = [], []
    for field in fields:
        if field.attname in computed:
            values.append(computed[field.attname])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(instance, True), connection))
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"INSERT INTO {quote(instance._meta.db_table)} ({columns}) SELECT {', '.join(values)}"
    return (f"{sql} FROM {source}" if source else sql), params


def _annotation_change(
    *, annotation: Annotation, project: Project, labels: list[Label], reviewer: AbstractBaseUser, reason: str
) -> bool:
    """Replace the annotation's labels, keeping the old state in a revision; False when nothing changed."""
    before = dict(AnnotationLabel.objects.filter(annotation=annotation).values_list("label_id", "label__key"))
    after_ids = {label.pk for label in labels}
    if set(before) == after_ids:
        return False
    AnnotationLabel.objects.filter(annotation=annotation).exclude(label_id__in=after_ids).delete()
    AnnotationLabel.objects.bulk_create(
        [AnnotationLabel(annotation=annotation, label=label) for label in labels if label.pk not in before]
    )
    annotation.save(update_fields=["updated_at"])
    _revision(annotation=annotation, labels=labels, reviewer=reviewer, reason=reason)
    audit_record(
        action="annotation.change",
        actor=reviewer,
        project=project,
        target=annotation,
        before={"document": annotation.document_id, "labels": sorted(before.values())},
        after={"document": annotation.document_id, "labels": [label.key for label in labels]},
    )
    return True


def _revision(*, annotation: Annotation, labels: list[Label], reviewer: AbstractBaseUser, reason: str) -> None:
    AnnotationRevision.objects.create(
        annotation=annotation,
        label_keys=[label.key for label in labels],
        label_ids=[label.pk for label in labels],
        changed_by=reviewer,
        reason=reason,
    )


def notify_learning(project_id: int) -> None:
    """Tell the learning loop that a project's labels changed; it decides whether and when to retrain.

    `learning.tasks.labels_changed(project_id)` coalesces bursts of labels into one retraining, so this is
    called after every committed change and enqueues nothing else. Until that task exists it does nothing.
    The labels are committed by the time this runs, so a broker outage is logged, never raised: the next
    label knocks again.
    """
    send = _labels_changed_sender()
    if send is not None:
        send_now(project_id, send)


def knock_learning(project_id: int) -> None:
    """`notify_learning`, sent from the web process's knock thread (`annotation.services.knocks`): a reviewer's
    answer is acknowledged without waiting for the broker, and the knocks for one project that arrive within
    `knocks.GATHER_SECONDS` (0.2 s) or while one is being sent go out once."""
    send = _labels_changed_sender()
    if send is not None:
        knocks.knock(project_id, send)


def _labels_changed_sender() -> Callable[[int], object] | None:
    try:
        tasks = importlib.import_module("learning.tasks")
    except ModuleNotFoundError as error:
        if error.name != "learning.tasks":
            raise
        return None
    labels_changed = getattr(tasks, "labels_changed", None)
    return None if labels_changed is None else labels_changed.delay


def request_queue_rescore(project_id: int) -> None:
    """Ask a worker to lay out the project's queue again: after an import (new documents need a place) or a
    change of query strategy. Call it once the change is committed; a broker outage is logged, and the next
    label or the models page's "Rescore the queue" lays the queue out instead."""
    from learning.tasks import rescore_pool

    try:
        rescore_pool.delay(project_id)
    except Exception:  # the broker is down: the change itself has succeeded
        logger.exception("Could not ask a worker to rescore the queue of project %s", project_id)
