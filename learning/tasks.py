"""Celery tasks of the learning loop: thin, idempotent, take ids, call learning/services/.

Training tasks acknowledge late and are re-queued when their worker dies: running one twice is safe because
a run is claimed in the database first (a second delivery of the same message takes over a run its dead
worker left running; any other copy finds the run taken and does nothing). A worker asked to stop mid
fine-tune saves a checkpoint and hands the message back, and the next delivery resumes from it. A worker that
dies is noticed sooner by its silence: see learning/recovery.py. A task whose project is deleted under it
stops quietly.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from billiard import current_process
from celery import shared_task
from celery.exceptions import Reject

from learning import services
from learning.ml.checkpoint import stop_requested
from learning.ml.exceptions import FineTuneInterrupted
from learning.services import neighbours


@shared_task(acks_late=True, reject_on_worker_lost=True)
def labels_changed(project_id: int) -> dict:
    """A project's labels changed: ask for a fast or slow run if one is due (bursts coalesce into one)."""
    with services.project_may_vanish(project_id):
        run = services.training_on_labels_changed(project_id=project_id)
        return {"project": project_id, "run": run.pk if run else None, "kind": run.kind if run else None}
    return {"project": project_id, "run": None, "project_deleted": True}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def train_fast(self, run_id: int) -> dict:
    """Refit the head on cached embeddings and, if promoted, rescore the pool."""
    return _train(run_id, self.request.id or "")


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def train_slow(self, run_id: int) -> dict:
    """Fine-tune the body (capped steps), re-embed the pool in chunks, then switch if promoted."""
    with _sigterm_pauses_the_fine_tune():
        return _train(run_id, self.request.id or "")


@contextmanager
def _sigterm_pauses_the_fine_tune() -> Iterator[None]:
    """In a pool process, SIGTERM (systemd stops the unit: every process gets it) asks the fine-tune to save a
    checkpoint after its current step and give the task back, instead of dying mid-step.

    Pool processes otherwise exit on SIGTERM at once (billiard installs that when the process starts, which is
    why this is set here, per task). In the solo pool the task runs in the main process, whose SIGTERM is
    Celery's own warm shutdown; it is left alone there.
    """
    if current_process().name == "MainProcess" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop_requested.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rescore_pool(project_id: int) -> dict:
    """Write queue priorities for every queued document under the active model (or cold-start picks)."""
    with services.project_may_vanish(project_id):
        written = services.pool_rescore(project_id=project_id)
        neighbours.ann_index_request(project_id)
        return {"project": project_id, "written": written}
    return {"project": project_id, "written": 0, "project_deleted": True}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def build_neighbour_index(project_id: int) -> dict:
    """Build the approximate nearest-neighbour index of a large project's serving body (never in a request)."""
    with services.project_may_vanish(project_id):
        return neighbours.ann_index_build(project_id=project_id)
    return {"project": project_id, "built": False, "project_deleted": True}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def embed_shards(plan_path: str) -> dict:
    """Help a run re-embed its pool: encode the plan's shards no other worker holds (services/reembedding.py)."""
    return {"plan": plan_path, "encoded": services.shards_help(plan_path=plan_path)}


def _train(run_id: int, task_id: str) -> dict:
    # One body for both speeds: the run row says which kind it is.
    if stop_requested.is_set():
        raise Reject("this worker is stopping; another takes the run", requeue=True)
    try:
        run = services.training_run_execute(run_id=run_id, task_id=task_id)
    except FineTuneInterrupted as stop:
        raise Reject(str(stop), requeue=True) from stop
    if run is not None and run.status == run.Status.SUCCEEDED:
        # A promoted fine-tune brings a new body, so new embeddings: a large project's index follows it.
        neighbours.ann_index_request(run.project_id)
    return {"run": run_id, "status": run.status if run else "not claimed"}
