"""Celery tasks of the labeling side: thin, idempotent, take ids."""

from celery import shared_task

from annotation.services.imports import import_batch_run_stored
from annotation.services.search_index import search_vectors_fill


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_documents_task(batch_id: int) -> dict:
    """Run an uploaded import. Safe to run twice: a finished batch is left alone, a half-run one restarts
    from nothing because its rows were rolled back with its transaction."""
    batch = import_batch_run_stored(batch_id)
    return {"batch": batch.pk, "status": batch.status, "created": batch.created_count}


@shared_task
def fill_search_vectors_task() -> dict:
    """Store the search vectors of documents inserted since the last run (after each import, and every few
    minutes to catch documents written any other way). Safe to run twice or in parallel."""
    return {"stored": search_vectors_fill()}
