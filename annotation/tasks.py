"""Celery tasks of the labeling side: thin, idempotent, take ids."""

from celery import shared_task

from annotation.services.imports import import_batch_run_stored


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_documents_task(batch_id: int) -> dict:
    """Run an uploaded import. Safe to run twice: a finished batch is left alone, a half-run one restarts
    from nothing because its rows were rolled back with its transaction."""
    batch = import_batch_run_stored(batch_id)
    return {"batch": batch.pk, "status": batch.status, "created": batch.created_count}
