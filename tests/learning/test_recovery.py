"""Recovery in seconds on real workers: a killed worker, a dropped database connection, a killed import.

A worker of the module (`celery_worker_process`) runs the sweeper; the work it must recover from is broken
for real: a second worker SIGKILLed mid fine-tune, the database connections cut with pg_terminate_backend,
an import process SIGKILLed inside its transaction.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from annotation.models import Document, ImportBatch
from annotation.services.imports import ImportOptions, documents_import
from learning import tasks
from learning.models import ModelVersion, TrainingRun
from tests.conftest import ROOT, _worker_env
from tests.learning.conftest import build_labelled_project, wait_for
from tests.learning.test_worker import start_worker

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# "Retried or failed with the real error within 60 s" (heartbeat 5 s, stale after 30 s, sweep every 5 s).
RECOVERY_LIMIT = 60
# Enough rows that the import is still inserting when the test takes hold of its batch row.
ROWS = 15_000


def run_state(run_id: int) -> TrainingRun:
    return TrainingRun.objects.get(pk=run_id)


def fine_tuning(run_id: int):
    return TrainingRun.objects.filter(
        pk=run_id, status="running", phase="Fine-tuning the body", progress_done__gte=1
    ).first()


def stop_training(run_id: int) -> None:
    """The second attempt has started, which is what the test is about: end it so the module's worker is free
    (its next heartbeat or progress report finds the run taken away and stops)."""
    TrainingRun.objects.filter(pk=run_id).update(status="failed", error="ended by the test", celery_task_id="")


def test_a_run_whose_worker_is_killed_starts_again_within_a_minute_without_a_new_label(celery_worker_process, tmp_path):
    from config.celery import app

    project, _ = build_labelled_project()
    run = TrainingRun.objects.create(project=project, kind="slow", trigger="admin", max_steps=4)
    queue = f"docket-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "doomed-worker.log"
    doomed = start_worker(queue, log)
    try:
        wait_for(
            lambda: doomed.poll() is None and app.control.ping(destination=[f"{queue}@{os.uname().nodename}"]),
            timeout=90,
            what="the worker to be killed to answer",
        )
        tasks.train_slow.apply_async((run.pk,), queue=queue)
        wait_for(lambda: fine_tuning(run.pk), timeout=180, what=f"the first fine-tuning step ({log})")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
        killed_at = time.monotonic()
    finally:
        if doomed.poll() is None:
            doomed.kill()

    # The module's worker notices the silence and starts the run again: nobody labels anything meanwhile.
    wait_for(
        lambda: run_state(run.pk).attempts >= 2,
        timeout=RECOVERY_LIMIT + 30,
        what=f"the run to start again (worker log: {celery_worker_process.log_path})",
    )
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < RECOVERY_LIMIT, f"the run started again only after {recovered_in:.0f} s"
    assert "stopped sending heartbeats" in run_state(run.pk).error
    assert ModelVersion.objects.get(project=project, number=1).status == "failed"  # the killed attempt's
    stop_training(run.pk)


def test_a_run_whose_database_connection_is_cut_starts_again_on_a_fresh_connection(celery_worker_process):
    project, _ = build_labelled_project()
    run = TrainingRun.objects.create(project=project, kind="slow", trigger="admin", max_steps=4)
    tasks.train_slow.delay(run.pk)
    wait_for(lambda: fine_tuning(run.pk), timeout=180, what="the first fine-tuning step")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    cut_at = time.monotonic()

    wait_for(
        lambda: run_state(run.pk).attempts >= 2,
        timeout=RECOVERY_LIMIT + 30,
        what=f"the run to start again (worker log: {celery_worker_process.log_path})",
    )
    assert time.monotonic() - cut_at < RECOVERY_LIMIT
    # The real error, not "stopped reporting": the worker marked it on a fresh connection itself.
    assert "OperationalError" in run_state(run.pk).error or "InterfaceError" in run_state(run.pk).error
    stop_training(run.pk)


def test_an_import_killed_half_way_is_failed_by_the_sweeper_and_runs_again_cleanly(celery_worker_process, tmp_path):
    project, _ = build_labelled_project(pool=0)
    before = Document.objects.filter(project=project).count()
    path = tmp_path / "notes.jsonl"
    rows = [
        {"id": f"note-{i}", "text": f"Privacy review note {i}: the vendor keeps logs for {i % 90} days."}
        for i in range(ROWS)
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    importer = subprocess.Popen(
        [sys.executable, "manage.py", "import_documents", str(project.pk), str(path), "--no-progress"],
        cwd=ROOT,
        env=_worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held = threading.Event()
    release = threading.Event()

    def hold_the_batch_row():
        # The import's last step saves its batch row: holding that row keeps every document it inserted
        # uncommitted, so the kill below lands inside its transaction, after the rows, before the commit.
        try:
            with transaction.atomic():
                batch = wait_for(
                    lambda: ImportBatch.objects.filter(project=project, status="running").first(),
                    timeout=60,
                    what="the import to start",
                )
                ImportBatch.objects.select_for_update().get(pk=batch.pk)
                held.set()
                release.wait(120)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_batch_row, daemon=True)
    holder.start()
    try:
        assert held.wait(90), "the import never started"
        wait_for(lambda: waiting_on_a_lock(), timeout=120, what="the import to reach its last step")
        importer.send_signal(signal.SIGKILL)
        importer.wait(timeout=30)
        killed_at = time.monotonic()
    finally:
        release.set()
        holder.join(30)
        if importer.poll() is None:
            importer.kill()

    batch = ImportBatch.objects.get(project=project)
    failed = wait_for(
        lambda: ImportBatch.objects.filter(pk=batch.pk, status="failed").first(),
        timeout=RECOVERY_LIMIT + 30,
        what="the sweeper to fail the dead import",
    )
    assert time.monotonic() - killed_at < RECOVERY_LIMIT
    assert "stopped part-way" in failed.error and "run the import again" in failed.error
    assert (failed.created_count, failed.rows_seen) == (0, 0)
    assert Document.objects.filter(project=project).count() == before  # nothing half-stored

    again = documents_import(project=project, path=path, options=ImportOptions())
    assert (again.status, again.created_count) == ("completed", ROWS)
    assert Document.objects.filter(project=project).count() == before + ROWS


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query ILIKE 'UPDATE%annotation_importbatch%rows_seen%'"
        )
        return cursor.fetchone()[0] > 0
