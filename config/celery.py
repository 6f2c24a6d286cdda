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
}
app.conf.beat_schedule = {**BEAT_SCHEDULE, **(app.conf.beat_schedule or {})}


@signals.worker_ready.connect
def log_worker_start(sender=None, **_kwargs) -> None:
    """One line at start that says what this worker serves, so an operator can tell the two workers apart."""
    from django.conf import settings

    consumer = getattr(sender, "consumer", None)
    queues = sorted(q.name for q in consumer.task_consumer.queues) if consumer and consumer.task_consumer else []
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


_main_pid: list[int] = []


@signals.worker_init.connect
def remember_main_process(**_kwargs) -> None:
    _main_pid.append(os.getpid())


@signals.worker_process_init.connect
def stop_fine_tunes_gently_on_sigterm(**_kwargs) -> None:
    """A pool process asked to stop (systemd sends SIGTERM to every process of the unit) finishes its current
    fine-tuning step, saves a checkpoint and hands its task back to the broker, instead of dying mid-step.

    Celery would otherwise reset SIGTERM to "die now" in pool processes.
    """
    import signal

    from learning.ml.checkpoint import stop_requested

    if os.getpid() in _main_pid:
        return  # the solo pool runs tasks in the main process, whose SIGTERM is Celery's warm shutdown
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop_requested.set())
