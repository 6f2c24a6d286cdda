"""Writes the append-only audit log. Every service that changes something people care about calls this."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from annotation.models import AuditEvent, Project


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
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = actor_label or (user.get_username() if user else "system")
    return AuditEvent.objects.create(
        action=action,
        actor=user,
        actor_label=label,
        project=project,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=str(getattr(target, "pk", "") or "") if target is not None else "",
        before=before,
        after=after,
    )
