"""Explore's word index kept current: the worker turns pending documents into stored search vectors in batches.

Documents are marked pending by a PostgreSQL trigger as they are inserted (annotation migration 0018), so an
import, the API, the admin and the demo never compute vectors inside their own writes. Until a document's vector
is stored, Explore matches it on its text directly (explore/search.py), so search is never behind.
"""

from __future__ import annotations

from django.db import connection, transaction

from annotation.models import Document, DocumentSearchPending, DocumentSearchVector

# Documents per transaction: a few seconds of to_tsvector on a busy machine, so a deletion or a second worker
# waits at most that long, and a stopped worker loses at most one batch (it stays pending and is taken again).
BATCH = 2_000
TEXT_SEARCH_CONFIG = "english"


def _fill_sql() -> str:
    document = Document._meta.db_table
    pending = DocumentSearchPending._meta.db_table
    vector = DocumentSearchVector._meta.db_table
    # The batch is taken from the pending rows first, then its documents looked up by id: joining the two let
    # PostgreSQL merge-join them from the documents' first id, reading past every document already done for every
    # batch (a backlog of 1,000,000 went at a few hundred documents a second, slower with every batch).
    # SKIP LOCKED on both: a second worker takes other documents; a document being deleted (or its text changed)
    # is left pending for the next run, and one this batch holds waits for it. Only the pending rows of documents
    # locked here are removed. FOR SHARE of the document keeps its text from changing between reading it here and
    # the vector's commit. ON CONFLICT: a document whose text changed after its vector was stored is pending again
    # and gets its vector replaced.
    return f"""
        WITH claimed AS (
            SELECT document_id FROM {pending} ORDER BY document_id LIMIT %s FOR UPDATE SKIP LOCKED
        ), documents AS (
            SELECT d.id, d.project_id, d.text FROM {document} d
            WHERE d.id = ANY (ARRAY (SELECT document_id FROM claimed))
            FOR SHARE SKIP LOCKED
        ), done AS (
            DELETE FROM {pending} WHERE document_id IN (SELECT id FROM documents)
        )
        INSERT INTO {vector} (document_id, project_id, vector)
        SELECT id, project_id, to_tsvector(%s::regconfig, COALESCE(text, '')) FROM documents
        ON CONFLICT (document_id) DO UPDATE SET project_id = EXCLUDED.project_id, vector = EXCLUDED.vector
    """


def search_vectors_fill(*, batch: int = BATCH, limit: int | None = None) -> int:
    """Store the vectors of pending documents, `batch` per transaction, until none is left (or `limit` were
    stored). Idempotent and safe to run in several workers at once; returns how many vectors were stored.
    Does nothing on SQLite, which has no text search."""
    if connection.vendor != "postgresql":
        return 0
    sql = _fill_sql()
    stored = 0
    while limit is None or stored < limit:
        size = batch if limit is None else min(batch, limit - stored)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [size, TEXT_SEARCH_CONFIG])
            count = cursor.rowcount
        stored += count
        if count < size:
            break
    return stored


def search_vectors_pending() -> int:
    """How many documents wait for their search vector (for the operator: near 0 between imports)."""
    return DocumentSearchPending.objects.count()
