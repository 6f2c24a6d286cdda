"""Celery tasks of the learning loop: thin, idempotent, take ids, call learning/services.py.

Training tasks acknowledge late and are re-queued when their worker dies: running one twice is safe because
a run is claimed in the database first (a second delivery of the same message takes over a run its dead
worker left running; any other copy finds the run taken and does nothing). A worker asked to stop mid
fine-tune saves a checkpoint and hands the message back, and the next delivery resumes from it.
"""

from celery import shared_task
from celery.exceptions import Reject

from learning import services
from learning.ml.checkpoint import stop_requested
from learning.ml.exceptions import FineTuneInterrupted


@shared_task(acks_late=True, reject_on_worker_lost=True)
def labels_changed(project_id: int) -> dict:
    """A project's labels changed: ask for a fast or slow run if one is due (bursts coalesce into one)."""
    run = services.training_on_labels_changed(project_id=project_id)
    return {"project": project_id, "run": run.pk if run else None, "kind": run.kind if run else None}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def train_fast(self, run_id: int) -> dict:
    """Refit the head on cached embeddings and, if promoted, rescore the pool."""
    return _train(run_id, self.request.id or "")


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def train_slow(self, run_id: int) -> dict:
    """Fine-tune the body (capped steps), re-embed the pool in chunks, then switch if promoted."""
    return _train(run_id, self.request.id or "")


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rescore_pool(project_id: int) -> dict:
    """Write queue priorities for every queued document under the active model (or cold-start picks)."""
    return {"project": project_id, "written": services.pool_rescore(project_id=project_id)}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def refresh_label_errors(project_id: int, limit: int = 100) -> dict:
    """Rank the likely label errors of a project too large to rank inside a page request."""
    from learning.quality import label_errors_refresh

    return {"project": project_id, "computed": label_errors_refresh(project_id=project_id, limit=limit)}


def _train(run_id: int, task_id: str) -> dict:
    # One body for both speeds: the run row says which kind it is.
    if stop_requested.is_set():
        raise Reject("this worker is stopping; another takes the run", requeue=True)
    try:
        run = services.training_run_execute(run_id=run_id, task_id=task_id)
    except FineTuneInterrupted as stop:
        raise Reject(str(stop), requeue=True) from stop
    return {"run": run_id, "status": run.status if run else "not claimed"}
