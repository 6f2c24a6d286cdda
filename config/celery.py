"""The Celery application; tasks live in each app's tasks.py, the periodic ones in BEAT_SCHEDULE below."""

import logging
import os

from celery import Celery, signals
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger("docket.worker")

app = Celery("docket")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# What the scheduler (`celery -A config beat`, deploy/docket-scheduler.service) sends, by name. Add an entry
# here for a new periodic task; every worker that serves its queue runs it.
BEAT_SCHEDULE = {
    # Task results older than CELERY_RESULT_EXPIRES are deleted from the result backend every night.
    "task-results-cleanup": {"task": "celery.backend_cleanup", "schedule": crontab(hour=3, minute=30)},
    # Insights dashboards a change outdated are recomputed within a minute, before their next reader asks.
    "dashboards-refresh": {"task": "quality.tasks.refresh_stale_dashboards", "schedule": 60.0},
    # Explore's search vectors of documents not written by an import (which asks for them itself), within a minute.
    "search-vectors-fill": {"task": "annotation.tasks.fill_search_vectors_task", "schedule": 60.0},
}
app.conf.beat_schedule = {**BEAT_SCHEDULE, **(app.conf.beat_schedule or {})}


@signals.worker_ready.connect
def log_worker_start(sender=None, **_kwargs) -> None:
    """One line at start that says what this worker serves, so an operator can tell the two workers apart."""
    from django.conf import settings

    # The sender is the worker's consumer.
    task_consumer = getattr(sender, "task_consumer", None)
    queues = sorted(q.name for q in task_consumer.queues) if task_consumer is not None else []
    logger.info(
        "Docket worker %s ready: queues=%s concurrency=%s broker=%s artifacts=%s fine-tune max steps=%s, "
        "checkpoint every %s steps",
        getattr(sender, "hostname", "?"),
        ",".join(queues) or "?",
        getattr(getattr(sender, "controller", None), "concurrency", "?"),
        app.connection_for_write().as_uri(),  # the password is masked
        settings.ARTIFACT_DIR,
        settings.DOCKET_FINE_TUNE_MAX_STEPS,
        settings.DOCKET_FINE_TUNE_CHECKPOINT_STEPS,
    )


@signals.worker_ready.connect
def start_sweeper(**_kwargs) -> None:
    """Every worker ends the work of dead workers within seconds (learning/recovery.py)."""
    from learning.recovery import sweeper_start

    sweeper_start()


@signals.worker_shutting_down.connect
def stop_sweeper(**_kwargs) -> None:
    """A stopping worker sweeps no more. Its own fine-tunes are pausing at a checkpoint and leave their heartbeat
    old on purpose, for the next worker to take them over; its sweeper must not end them as lost meanwhile."""
    from learning.recovery import sweeper_stop

    sweeper_stop()
