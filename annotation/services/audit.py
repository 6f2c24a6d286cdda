"""The append-only audit log: one writer every service calls, and the filtered reads and exports admins use."""

import io
import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import AuditEvent, Project
from annotation.spreadsheet_cells import csv_dict_writer


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_label: str = "",
    project: Project | None = None,
    target: Any = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event. `action` is dotted, e.g. "taxonomy.merge" or "import.completed".

    Call it inside the same transaction as the change it records, so the log and the data never disagree.
    """
    event = audit_event(
        action=action, actor=actor, actor_label=actor_label, project=project, target=target, before=before, after=after
    )
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_label: str = "",
    project: Project | None = None,
    target: Any = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """The event `audit_record` appends, not yet saved: for a writer that inserts it in the same statement as
    the change it records (annotation.services.labeling)."""
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    return AuditEvent(
        action=action,
        actor=user,
        actor_label=label,
        project=project,
        project_label=project.name if project is not None else "",
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=str(getattr(target, "pk", "") or "") if target is not None else "",
        before=before,
        after=after,
    )


def audit_record_many(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None,
    project: Project,
    events: list[tuple[Any, Any, Any]],
) -> int:
    """Append one event per (target, before, after), all with the same action, actor and project, in one insert.

    For writes that touch many rows at once (bulk labeling); the same rows `audit_record` writes one by one.
    """
    rows = [
        audit_event(action=action, actor=actor, project=project, target=target, before=before, after=after)
        for target, before, after in events
    ]
    AuditEvent.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


AUDIT_EXPORT_FORMATS = ("csv", "jsonl")
AUDIT_COLUMNS = ["id", "created_at", "actor", "action", "target_type", "target_id", "before", "after"]


def audit_events(
    *,
    project: Project,
    action: str = "",
    actor: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    """A project's events, newest first. `action` matches a prefix ("taxonomy" or "taxonomy.merge"), `actor`
    the name recorded at the time; `since` and `until` are days in the server's time zone, both included."""
    events = AuditEvent.objects.filter(project=project)
    if action:
        events = events.filter(action__startswith=action)
    if actor:
        events = events.filter(actor_label__iexact=actor)
    tz = timezone.get_current_timezone()
    if since:
        events = events.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=tz))
    if until:
        events = events.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz))
    return events.order_by("-created_at", "-id")


def audit_actions(project: Project) -> list[str]:
    events = AuditEvent.objects.filter(project=project)
    return list(events.values_list("action", flat=True).distinct().order_by("action"))


def audit_actors(project: Project) -> list[str]:
    events = AuditEvent.objects.filter(project=project)
    return list(events.values_list("actor_label", flat=True).distinct().order_by("actor_label"))


def _as_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": event.created_at,
        "actor": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "before": event.before,
        "after": event.after,
    }


def audit_export(events: QuerySet[AuditEvent], fmt: str) -> Iterator[str]:
    """The events as CSV (before/after as JSON text) or JSON Lines, a chunk at a time so memory stays flat."""
    rows = (_as_row(event) for event in events.iterator(chunk_size=1000))
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, ensure_ascii=False, cls=DjangoJSONEncoder) + "\n"
        return
    if fmt != "csv":
        raise ValueError(f"Unknown audit export format {fmt!r}.")
    buffer = io.StringIO()
    writer = csv_dict_writer(buffer, fieldnames=AUDIT_COLUMNS)
    writer.writeheader()
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
        for column in ("before", "after"):
            value = row[column]
            row[column] = "" if value is None else json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
