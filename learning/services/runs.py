"""Training runs: asking for one, coalescing requests, claiming a run for a worker, ending it, and starting it
again when its worker was lost. One fast and one slow lane per project.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Project, Taxonomy
from annotation.services.audit import audit_record
from annotation.services.liveness import stale_seconds
from learning.exceptions import RunAbandoned
from learning.ml.checkpoint import FineTuneCheckpoint
from learning.models import ModelVersion, TrainingRun
from learning.services.evaluation import _state_lock
from learning.services.pool import pool_needs_scoring
from learning.services.projects import artifact_root
from learning.services.snapshots import label_event_count

logger = logging.getLogger(__name__)


Kind = ModelVersion.Kind
RunStatus = TrainingRun.Status
VersionStatus = ModelVersion.Status

# A queued run older than this with nothing running is enqueued again (its message may have been lost).
REKICK_QUEUED_AFTER = timedelta(seconds=30)

# Progress is written at most this often, so a fast encoder does not hammer the database.
PROGRESS_EVERY_SECONDS = 1.0


def stale_after() -> timedelta:
    """A running run whose heartbeat is older than this lost its worker."""
    return timedelta(seconds=stale_seconds())


def max_attempts() -> int:
    """How often a run is started in all when its worker is lost or its database connection drops."""
    return int(getattr(settings, "DOCKET_TRAINING_MAX_ATTEMPTS", 3))


# Errors that say nothing about the run itself: the database connection went away under it. Such a run is
# started again (up to max_attempts()); any other error ends it "failed" with that error.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


def training_run_request(
    *,
    project: Project,
    kind: str,
    trigger: str,
    requested_by: AbstractBaseUser | None = None,
    label_events: int | None = None,
    max_steps: int | None = None,
) -> TrainingRun:
    """Ask for a training run; a queued run of the same kind absorbs the request (coalescing), else one is queued.

    Fast and slow runs have a lane each: a head refit never waits for a body fine-tune of the same project (it
    trains on the serving body meanwhile), and whichever finishes later is compared with what serves by then.
    In each lane one run trains and at most one follow-up waits (partial unique indexes enforce both); the
    follow-up's task is enqueued when the running one ends.
    """
    if label_events is None:
        label_events = label_event_count(project)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    with transaction.atomic():
        _state_lock(project.pk)
        lane = TrainingRun.objects.filter(project=project, kind=kind)
        queued = lane.select_for_update().filter(status=RunStatus.QUEUED).first()
        running = lane.filter(status=RunStatus.RUNNING).exists()
        if queued is not None:
            changed = []
            if trigger == TrainingRun.Trigger.ADMIN and queued.trigger != trigger:
                queued.trigger, queued.requested_by = trigger, user
                changed += ["trigger", "requested_by"]
            if label_events > queued.label_events:
                queued.label_events = label_events
                changed.append("label_events")
            if max_steps is not None and queued.max_steps != max_steps:
                queued.max_steps = max_steps
                changed.append("max_steps")
            if changed:
                queued.save(update_fields=changed)
            if not running and _resend_due(queued, timezone.now()):
                _enqueue_on_commit(queued)
            return queued
        run = TrainingRun.objects.create(
            project=project,
            kind=kind,
            trigger=trigger,
            requested_by=user,
            label_events=label_events,
            max_steps=max_steps,
            phase=f"Waiting for the {kind} run in progress to end" if running else "Waiting for a worker",
        )
        if user is not None:
            audit_record(action="model.train_requested", actor=user, project=project, target=run, after={"kind": kind})
        if not running:
            _enqueue_on_commit(run)
    return run


def training_due(project: Project, label_events: int) -> str | None:
    """Which run the new labels call for: slow every `slow_retrain_every` events, fast every `fast_retrain_every`.

    Events are counted since the last run that did not fail (queued, running, succeeded or refused runs cover
    the events they saw), so a burst of labels asks once and a refused run does not ask again at once.
    """
    covering = TrainingRun.objects.filter(project=project).exclude(status=RunStatus.FAILED)
    last_any = covering.aggregate(m=Max("label_events"))["m"] or 0
    last_slow = covering.filter(kind=Kind.SLOW).aggregate(m=Max("label_events"))["m"] or 0
    if label_events - last_slow >= project.slow_retrain_every:
        return Kind.SLOW
    if label_events - last_any >= project.fast_retrain_every:
        return Kind.FAST
    return None


def training_on_labels_changed(*, project_id: int) -> TrainingRun | None:
    """What `labels_changed` does: fail dead runs, ask for a run if one is due, keep the queue scored."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    training_runs_fail_stale(project_id=project.pk)
    events = label_event_count(project)
    kind = training_due(project, events) or _taxonomy_retrain_due(project)
    run = None
    if kind is not None:
        run = training_run_request(project=project, kind=kind, trigger=TrainingRun.Trigger.LABELS, label_events=events)
    else:
        training_runs_rekick(project_id=project.pk)
    # The run check first: it is one indexed row, while finding an unscored queued document reads the whole
    # queue (seconds at 1,000,000 documents), and a run that trains rescores the pool anyway.
    if not TrainingRun.objects.filter(
        project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    ).exists() and pool_needs_scoring(project):
        _enqueue_rescore_on_commit(project.pk)
    return run


def _taxonomy_retrain_due(project: Project) -> str | None:
    """A fast run when the taxonomy changed under the active model and no run has started since the change."""
    taxonomy = Taxonomy.objects.filter(project=project).first()
    active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
    if taxonomy is None or active is None or active.taxonomy_version == taxonomy.version:
        return None
    since = TrainingRun.objects.filter(project=project, created_at__gte=taxonomy.updated_at)
    if since.exclude(status=RunStatus.FAILED).exists():
        return None
    return Kind.FAST


def training_request_now(*, project: Project, actor: AbstractBaseUser, max_steps: int | None = None) -> TrainingRun:
    """An admin's "Train now": a slow run (body fine-tuned), after clearing runs whose worker died."""
    training_runs_fail_stale(project_id=project.pk)
    return training_run_request(
        project=project, kind=Kind.SLOW, trigger=TrainingRun.Trigger.ADMIN, requested_by=actor, max_steps=max_steps
    )


def pool_rescore_request(*, project: Project) -> None:
    """Ask a worker to rescore the queue (after an import, or to lay out cold-start picks)."""
    _enqueue_rescore_on_commit(project.pk)


def _resend_due(run: TrainingRun, now: datetime) -> bool:
    """Whether a queued run's message may be lost, so that sending it again is due: it waited
    REKICK_QUEUED_AFTER since it was last sent, and then twice as long after each send. Every label knocks, so
    without the wait a run that cannot start yet was sent once per label."""
    sent = run.enqueued_at or run.created_at
    return now - run.created_at > REKICK_QUEUED_AFTER and now - sent >= max(REKICK_QUEUED_AFTER, sent - run.created_at)


def _enqueue_on_commit(run: TrainingRun) -> None:
    run_id, kind = run.pk, run.kind
    transaction.on_commit(lambda: _enqueue(run_id, kind))


def _enqueue(run_id: int, kind: str) -> None:
    from learning import tasks

    task = tasks.train_slow if kind == Kind.SLOW else tasks.train_fast
    try:
        task.delay(run_id)
    except Exception:  # the broker is down: the run stays queued and the sweeper sends it again
        logger.exception("Could not enqueue training run %s", run_id)
        return
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(enqueued_at=timezone.now())


def _enqueue_rescore_on_commit(project_id: int) -> None:
    def enqueue() -> None:
        from learning import tasks

        try:
            tasks.rescore_pool.delay(project_id)
        except Exception:  # as above: the next trigger asks again
            logger.exception("Could not enqueue rescoring of project %s", project_id)

    transaction.on_commit(enqueue)


def training_runs_fail_stale(*, project_id: int | None = None, now: datetime | None = None) -> int:
    """End runs whose worker stopped sending heartbeats: each is started again (while attempts remain) or
    marked failed, so training goes on; returns how many were ended."""
    now = now or timezone.now()
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=now - stale_after())
    if project_id is not None:
        stale = stale.filter(project_id=project_id)
    count = 0
    for run_id, heartbeat, task_id in stale.values_list("pk", "heartbeat_at", "celery_task_id"):
        message = (
            f"The worker training this model stopped sending heartbeats at {heartbeat:%Y-%m-%d %H:%M:%S} UTC: "
            "it was stopped or killed (out of memory, a restart), or its machine went away. The active model "
            "was not changed."
        )
        if _run_retry_or_fail(run_id, task_id=task_id, error=message, retry=True, stale_before=now - stale_after()):
            count += 1
    return count


def _run_retry_or_fail(
    run_id: int, *, task_id: str, error: str, retry: bool, stale_before: datetime | None = None
) -> str | None:
    """End this task's attempt at a running run: queue it again when `retry` and attempts remain (and no other
    run waits), else mark it failed with `error`. Returns "queued", "failed", or None when it was not ours.

    `stale_before`: only if the run's heartbeat is still older than this (a sweeper's view may be outdated).
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    with transaction.atomic():
        _state_lock(project_id)
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
            return None
        if stale_before is not None and run.heartbeat_at is not None and run.heartbeat_at >= stale_before:
            return None
        waiting = TrainingRun.objects.filter(project_id=project_id, kind=run.kind, status=RunStatus.QUEUED).exists()
        if not retry or run.attempts >= max_attempts() or waiting:
            if retry and run.attempts >= max_attempts():
                error = f"{error} Gave up after {run.attempts} attempts."
            _run_end(run_id, task_id=task_id, status=RunStatus.FAILED, error=error)
            return "failed"
        now = timezone.now()
        ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED, error=f"Interrupted: {error}", finished_at=now
        )
        run.status = RunStatus.QUEUED
        run.error = f"Attempt {run.attempts} of {max_attempts()} was interrupted: {error} Started again."
        run.phase = "Starting again after an interruption"
        run.celery_task_id = ""
        run.heartbeat_at = None
        run.progress_done = run.progress_total = 0
        run.model_version = None
        run.save(
            update_fields=[
                "status",
                "error",
                "phase",
                "celery_task_id",
                "heartbeat_at",
                "progress_done",
                "progress_total",
                "model_version",
            ]
        )
        _enqueue_on_commit(run)
    logger.warning("Training run %s was interrupted and queued again: %s", run_id, error)
    return "queued"


def training_runs_rekick(*, now: datetime | None = None, project_id: int | None = None) -> int:
    """Send queued runs (of every project, or of one) to the broker again when nothing runs in their lane and
    their message seems lost (the broker was down when they were asked for, or lost them). Waits double each
    time (`_resend_due`); returns how many."""
    now = now or timezone.now()
    runs = TrainingRun.objects.all() if project_id is None else TrainingRun.objects.filter(project_id=project_id)
    busy = set(runs.filter(status=RunStatus.RUNNING).values_list("project_id", "kind"))
    queued = runs.filter(status=RunStatus.QUEUED, created_at__lt=now - REKICK_QUEUED_AFTER)
    count = 0
    for run in queued:
        if (run.project_id, run.kind) in busy:
            continue  # the running one of its lane enqueues it when it ends
        if not _resend_due(run, now):
            continue
        _enqueue(run.pk, run.kind)
        count += 1
    return count


def _run_claim(run_id: int, task_id: str) -> TrainingRun | None:
    """Move a queued run to running for this task; None when it is not this task's to run (yet or any more).

    The same Celery message delivered again (its worker died or stopped before acknowledging it) takes the run
    over: the half-trained version of the lost attempt is marked failed and training starts again, a fine-tune
    from its last checkpoint.
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    try:
        with transaction.atomic():
            _state_lock(project_id)
            run = TrainingRun.objects.select_for_update().get(pk=run_id)
            if run.status == RunStatus.RUNNING and task_id and run.celery_task_id == task_id:
                # The broker handed this message out again. While its first worker still beats, that worker
                # has it (a visibility timeout shorter than the run); only a silent one is taken over.
                if run.heartbeat_at is not None and run.heartbeat_at >= timezone.now() - stale_after():
                    return None
                ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
                    status=VersionStatus.FAILED, error="Interrupted: the worker was lost; the run was retried."
                )
                run.model_version = None
            elif run.status != RunStatus.QUEUED:
                return None
            elif TrainingRun.objects.filter(project_id=project_id, kind=run.kind, status=RunStatus.RUNNING).exists():
                return None  # the running one of its lane enqueues this run when it ends
            now = timezone.now()
            run.status = RunStatus.RUNNING
            run.started_at = run.heartbeat_at = now
            run.celery_task_id = task_id
            run.attempts += 1
            run.phase, run.progress_done, run.progress_total = "Starting", 0, 0
            if run.attempts == 1:
                run.error = ""  # a retry keeps the note of what interrupted the attempt before
            run.save(
                update_fields=[
                    "status",
                    "started_at",
                    "heartbeat_at",
                    "celery_task_id",
                    "attempts",
                    "phase",
                    "progress_done",
                    "progress_total",
                    "error",
                    "model_version",
                ]
            )
    except IntegrityError:
        return None  # another run became running first; the database said no
    return run


def _run_end(run_id: int, *, task_id: str | None, status: str, error: str = "") -> bool:
    """Finish a running run as failed or refused (its training version fails with it); False if not ours."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING:
            return False
        if task_id is not None and run.celery_task_id != task_id:
            return False
        run.status = status
        run.error = error
        run.finished_at = timezone.now()
        run.phase = "Refused" if status == RunStatus.REFUSED else "Failed"
        run.progress_done = min(run.progress_done, run.progress_total)
        run.save(update_fields=["status", "error", "finished_at", "phase", "progress_done"])
        ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED, error=error, finished_at=run.finished_at
        )
        _kick_follow_up_on_commit(run.project_id, run.kind)
        transaction.on_commit(lambda: fine_tune_checkpoint(run_id).discard())
    return True


def _kick_follow_up_on_commit(project_id: int, kind: str) -> None:
    follow_up = TrainingRun.objects.filter(project_id=project_id, kind=kind, status=RunStatus.QUEUED).first()
    if follow_up is not None:
        _enqueue_on_commit(follow_up)


class _Progress:
    """Writes a run's phase and progress (throttled) and its heartbeat; stops the work if the run was taken away."""

    def __init__(self, run: TrainingRun) -> None:
        self.run_id = run.pk
        self.task_id = run.celery_task_id
        self._last_write = 0.0
        self._phase = ""
        self._key = ""
        self._phase_started = time.monotonic()
        self.timings: dict[str, float] = {}

    def phase(self, text: str, key: str, total: int = 0) -> None:
        self._close_phase()
        self._phase, self._key = text, key
        self._phase_started = time.monotonic()
        self._write(done=0, total=total)

    def __call__(self, done: int, total: int) -> None:
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_SECONDS or done >= total:
            self._write(done=min(done, total), total=total)

    def close(self) -> dict[str, float]:
        self._close_phase()
        return self.timings

    def _close_phase(self) -> None:
        if self._phase:
            elapsed = time.monotonic() - self._phase_started
            self.timings[self._key] = round(self.timings.get(self._key, 0.0) + elapsed, 3)
            self._phase = ""

    def _write(self, *, done: int, total: int) -> None:
        self._last_write = time.monotonic()
        updated = TrainingRun.objects.filter(
            pk=self.run_id, status=RunStatus.RUNNING, celery_task_id=self.task_id
        ).update(phase=self._phase, progress_done=done, progress_total=total, heartbeat_at=timezone.now())
        if not updated:
            raise RunAbandoned(f"training run {self.run_id} is no longer this worker's")


def fine_tune_checkpoint(run_id: int) -> FineTuneCheckpoint:
    """Where a run's fine-tune saves its progress: on the shared store, so any training worker can resume it."""
    return FineTuneCheckpoint(
        directory=artifact_root() / "checkpoints" / f"run-{run_id}",
        every_steps=int(getattr(settings, "DOCKET_FINE_TUNE_CHECKPOINT_STEPS", 10)),
    )
