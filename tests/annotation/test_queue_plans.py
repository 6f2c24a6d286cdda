"""The queue's claim statement on PostgreSQL: the unscored route reads the queue index in the order it serves
documents, so the first free entry ends the scan (no sort of a batch of candidates per get-next)."""

import pytest
from django.db import connection

from annotation import statements
from annotation.services import queue
from annotation.services.queue import next_document_for
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db


def test_the_unscored_route_reads_the_queue_index_in_order_without_sorting(project, reviewer, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    first = [DocumentFactory(project=project, random_key=key / 100) for key in (30, 10, 20)][1]
    plans = []
    offered = queue._offered_document

    def explained(sql, params):
        if "claimed AS" in sql:
            with connection.cursor() as cursor:
                cursor.execute("SAVEPOINT plan")
                cursor.execute("SET LOCAL enable_seqscan = off")  # as at scale, where the table is too big to read
                cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
                plans.append("\n".join(line for (line,) in cursor.fetchall()))
                cursor.execute("ROLLBACK TO SAVEPOINT plan")
        return offered(sql, params)

    monkeypatch.setattr(queue, "_offered_document", explained)
    assert next_document_for(reviewer=reviewer, project=project).document == first

    assert plans, "no claim statement ran"
    # Routes in order: boosted (r0c0), scored (r1c0), unscored (r2c0).
    unscored = next(part for part in plans[0].split("CTE ") if part.startswith("r2c0"))
    assert "Index Scan using document_queue_order_idx" in unscored, plans[0]
    assert "Sort" not in unscored, plans[0]


def test_the_claims_generic_plan_reads_the_queue_indexes(project, reviewer, monkeypatch):
    """Prepared on the server (annotation.statements.execute), the claim runs a generic plan after five calls, one
    made without the project's or the reviewer's values: its unscored route walks the queue index as the plans
    made for the values do."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    for key in (30, 10, 20):
        DocumentFactory(project=project, random_key=key / 100)
    claims = []
    offered = queue._offered_document

    def captured(sql, params):
        if "claimed AS" in sql:
            claims.append((sql, params))
        return offered(sql, params)

    monkeypatch.setattr(queue, "_offered_document", captured)
    next_document_for(reviewer=reviewer, project=project)
    sql, params = claims[0]
    claim = statements._server_statement(connection.connection, sql, params)
    assert claim is not None
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        cursor.execute("SET LOCAL enable_seqscan = off")  # as at scale, where the table is too big to read
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("EXPLAIN (COSTS OFF) " + claim.execute_sql, [params[i] for i in claim.varying])
        plan = "\n".join(line for (line,) in cursor.fetchall())
        cursor.execute("ROLLBACK TO SAVEPOINT plan")

    assert "project_id = $" in plan, plan  # generic: the project is a parameter
    unscored = next(part for part in plan.split("CTE ") if part.startswith("r2c0"))
    assert "Index Scan using document_queue_order_idx" in unscored, plan
    assert "Sort" not in unscored, plan
