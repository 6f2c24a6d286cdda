"""An import's per-chunk statement on PostgreSQL: each row's duplicate and id checks probe an index, whatever the
planner guesses about a project whose rows this very transaction inserted."""

import io
import json

import pytest
from django.db import connection

from annotation.services import imports
from annotation.services.imports import ImportOptions, import_batch_create, import_batch_run

pytestmark = pytest.mark.django_db


def test_each_chunk_checks_its_rows_by_index_probes_not_by_reading_the_project(project, settings, monkeypatch):
    settings.DOCKET_IMPORT_CHUNK = 50
    plans = []
    run_staged = imports._Builder._run_staged

    def explained(self, copy_sql, rows, sql, params):
        with self.database.cursor() as cursor:
            cursor.copy_expert(copy_sql, rows)
            cursor.execute("SAVEPOINT plan")
            *truncate, statement = sql.split("; ", 1)  # the other staging table emptied, then the chunk's statement
            for emptying in truncate:
                cursor.execute(emptying)
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement, params)
            plans.append("\n".join(line for (line,) in cursor.fetchall()))
            cursor.execute("ROLLBACK TO SAVEPOINT plan")
            cursor.execute(f"TRUNCATE {copy_sql.split()[1]}")  # the original copies the chunk again
        rows.seek(0)
        return run_staged(self, copy_sql, rows, sql, params)

    monkeypatch.setattr(imports._Builder, "_run_staged", explained)
    content = "".join(json.dumps({"id": f"c{i}", "text": f"Clause {i} of the policy."}) + "\n" for i in range(200))
    batch = import_batch_create(project=project, file_name="clauses.jsonl", options=ImportOptions())
    batch = import_batch_run(batch=batch, stream=io.BytesIO(content.encode()))

    assert batch.created_count == 200 and len(plans) == 4
    for plan in plans:
        assert "hashed SubPlan" not in plan, plan
        assert "Seq Scan on annotation_document" not in plan, plan
        assert "Bitmap Heap Scan on annotation_document" not in plan, plan
        assert plan.count("SubPlan") == 2 and "loops=50" in plan, plan  # one probe per row and check


def test_the_staging_tables_hold_at_most_two_chunks_however_many_came_before(project, settings, monkeypatch):
    settings.DOCKET_IMPORT_CHUNK = 50
    sizes = []
    run_staged = imports._Builder._run_staged

    def measured(self, copy_sql, rows, sql, params):
        outcomes = run_staged(self, copy_sql, rows, sql, params)
        with self.database.cursor() as cursor:
            cursor.execute(
                "SELECT sum(pg_relation_size(oid)) FROM pg_class WHERE relname LIKE 'docket_import_stage%%' "
                "AND relpersistence = 't' AND pg_table_is_visible(oid)"
            )
            sizes.append(cursor.fetchone()[0])
        return outcomes

    monkeypatch.setattr(imports._Builder, "_run_staged", measured)
    content = "".join(json.dumps({"text": f"Clause {i} of the policy."}) + "\n" for i in range(400))
    batch = import_batch_create(project=project, file_name="clauses.jsonl", options=ImportOptions())
    import_batch_run(batch=batch, stream=io.BytesIO(content.encode()))
    assert connection.vendor == "postgresql" and len(sizes) == 8
    # Emptied as they are reused, dead rows included: no chunk reads past the ones before it.
    assert max(sizes) == sizes[1], sizes
