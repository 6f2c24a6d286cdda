"""The sweeper every worker runs: work whose process died is ended or started again within seconds.

A training run or an import writes a heartbeat every few seconds (annotation/services/liveness.py). Every
`DOCKET_SWEEP_SECONDS`, each worker process looks for running work whose heartbeat is older than
`DOCKET_STALE_SECONDS`: a training run is queued again (up to `DOCKET_TRAINING_MAX_ATTEMPTS` in all) or
failed, an import is failed (its transaction rolled back with its process: nothing half-stored, rerun it).
It also sends queued runs whose message the broker lost again, and once a minute asks for the training that
labels stored while the broker was down call for, so training never waits for the next label.

Any number of workers may sweep at once: every change is a conditional update under the project's lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from annotation.models import AnnotationRevision
from annotation.services.imports import import_batches_fail_dead
from learning import services

logger = logging.getLogger(__name__)

# Projects with label events this recent are checked for training their labels call for, once a minute.
CATCH_UP_WINDOW = timedelta(minutes=15)
CATCH_UP_EVERY = timedelta(seconds=60)


def sweep_seconds() -> float:
    return float(getattr(settings, "DOCKET_SWEEP_SECONDS", 5))


@dataclass
class SweepResult:
    runs_ended: int = 0
    runs_resent: int = 0
    imports_failed: int = 0
    projects_checked: int = 0


def stalled_work_sweep(*, now: datetime | None = None, catch_up: bool = False) -> SweepResult:
    """One pass of the sweeper (what each worker runs every few seconds; tests call it directly)."""
    now = now or timezone.now()
    result = SweepResult()
    result.runs_ended = services.training_runs_fail_stale(now=now)
    result.imports_failed = import_batches_fail_dead(now=now)
    result.runs_resent = services.training_runs_rekick(now=now)
    if catch_up:
        # order_by(): the revisions' default ordering would join the DISTINCT and make it one row per revision,
        # so every project was caught up once per answer of the last window (hundreds of passes a minute).
        recent = (
            AnnotationRevision.objects.filter(changed_at__gte=now - CATCH_UP_WINDOW)
            .order_by()
            .values_list("annotation__document__project_id", flat=True)
            .distinct()
        )
        for project_id in list(recent):
            with services.project_may_vanish(project_id):
                services.training_on_labels_changed(project_id=project_id)
            result.projects_checked += 1
    return result


class Sweeper:
    """A daemon thread in a worker process that runs `stalled_work_sweep` every `sweep_seconds()`."""

    def __init__(self, every: float | None = None) -> None:
        self.every = sweep_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docket-sweeper", daemon=True)

    def start(self) -> Sweeper:
        if self.every > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last_catch_up = timezone.now()
        try:
            # The first pass at once: a worker restarted after a crash ends what its previous life left.
            while True:
                now = timezone.now()
                catch_up = now - last_catch_up >= CATCH_UP_EVERY
                try:
                    close_old_connections()
                    result = stalled_work_sweep(now=now, catch_up=catch_up)
                    if result.runs_ended or result.imports_failed or result.runs_resent:
                        logger.warning("Sweeper: %s", result)
                except Exception:  # the database or broker is away: log, drop the connection, try again
                    logger.exception("The sweeper could not finish a pass; trying again")
                    connection.close()
                if catch_up:
                    last_catch_up = now
                if self._stop.wait(self.every):
                    return
        finally:
            connection.close()


_started: Sweeper | None = None


def sweeper_stop() -> None:
    """Stop this process's sweeper (called when a worker begins to shut down)."""
    if _started is not None:
        _started.stop()


def sweeper_start() -> Sweeper | None:
    """Start this process's sweeper once (called when a worker is ready)."""
    global _started
    if _started is None and sweep_seconds() > 0:
        _started = Sweeper().start()
    return _started
