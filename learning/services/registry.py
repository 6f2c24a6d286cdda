"""Switching the serving model: promotion and rollback by an admin, and the switch a finished run makes."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from annotation.services.audit import audit_record
from learning import selectors
from learning.exceptions import ActiveVersionChanged, ModelSwitchRefused
from learning.models import ModelVersion
from learning.services.evaluation import _state_lock
from learning.services.runs import _enqueue_rescore_on_commit
from webhooks.events import event_emit

VersionStatus = ModelVersion.Status


def _switch(
    *, project: Project, version: ModelVersion, actor: AbstractBaseUser | None, action: str, reason: str
) -> ModelVersion | None:
    """Retire the active version and activate `version` (caller holds the project's learning lock)."""
    previous = ModelVersion.objects.select_for_update().filter(project=project, status=VersionStatus.ACTIVE).first()
    if previous is not None:
        previous.status = VersionStatus.RETIRED
        previous.save(update_fields=["status"])
    version.status = VersionStatus.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    audit_record(
        action=action,
        actor=actor,
        actor_label="" if actor is not None else "learning loop",
        project=project,
        target=version,
        before={"active_version": previous.number if previous else None},
        after={"active_version": version.number, "reason": reason},
    )
    event_emit(
        project_id=project.pk,
        event="model.rolled_back" if action == "model.rollback" else "model.promoted",
        data={
            "model_version": version.number,
            "previous": previous.number if previous else None,
            "reason": reason,
            "by": actor.get_username() if actor is not None else "learning loop",
        },
    )
    return previous


def model_version_promote(
    *, version: ModelVersion, actor: AbstractBaseUser, from_version: int | None = None
) -> ModelVersion:
    """An admin makes a ready or retired version serve; the queue is rescored under it right after.

    With `from_version`, only while that version serves (ActiveVersionChanged otherwise): a retried call that
    finds its own version active already is answered with it, any other change of the serving one is refused.
    """
    with transaction.atomic():
        _state_lock(version.project_id)
        version = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
        if version.status == VersionStatus.ACTIVE:
            return version
        _refuse_unless_serving(version.project_id, from_version)
        if version.pruned_at is not None:
            raise ModelSwitchRefused(
                f"The files of version {version.number} were pruned on {version.pruned_at:%Y-%m-%d}; "
                "it can no longer serve. Train a new version instead."
            )
        if version.status not in (VersionStatus.READY, VersionStatus.RETIRED):
            raise ModelSwitchRefused(
                f"Version {version.number} is {version.get_status_display().lower()}; only a ready or retired "
                "version can be promoted."
            )
        _switch(project=version.project, version=version, actor=actor, action="model.promote", reason="manual")
        _enqueue_rescore_on_commit(version.project_id)
    return version


def model_version_rollback(
    *, project: Project, actor: AbstractBaseUser, from_version: int | None = None
) -> ModelVersion:
    """Go back to the newest retired version older than the active one; the queue is rescored under it.

    With `from_version`, only while that version serves (ActiveVersionChanged otherwise), so a retried rollback
    never goes back a second version.
    """
    with transaction.atomic():
        _state_lock(project.pk)
        _refuse_unless_serving(project.pk, from_version)
        active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
        if active is None:
            raise ModelSwitchRefused("No model is active, so there is nothing to roll back from.")
        target = selectors.rollback_candidates(project, active).select_for_update().first()
        if target is None:
            raise ModelSwitchRefused(
                f"No earlier version served before v{active.number}; there is nothing to roll back to."
            )
        _switch(
            project=project,
            version=target,
            actor=actor,
            action="model.rollback",
            reason=f"rolled back from v{active.number}",
        )
        _enqueue_rescore_on_commit(project.pk)
    return target


def _refuse_unless_serving(project_id: int, from_version: int | None) -> None:
    if from_version is None:
        return
    active = (
        ModelVersion.objects.filter(project_id=project_id, status=VersionStatus.ACTIVE)
        .values_list("number", flat=True)
        .first()
    )
    if active != from_version:
        raise ActiveVersionChanged(expected=from_version, active=active)
