"""The learning loop on real workers: Redis broker, PostgreSQL, a Celery worker process that trains."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from annotation.models import Document
from learning import services, tasks
from learning.ml.strategies import get_strategy
from learning.models import EvaluationReservation, ModelVersion, QueuePriority, TrainingRun
from learning.selectors import order_by_priority
from tests.conftest import _worker_env
from tests.factories import project_with_labels
from tests.learning.conftest import KEYS, LABELLED, POOL, build_labelled_project, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def queue_order(project) -> list[int]:
    queued = Document.objects.filter(project=project, status=Document.Status.QUEUED)
    return list(order_by_priority(queued).values_list("pk", flat=True))


def test_a_worker_trains_from_annotations_and_the_reviewers_queue_follows_the_new_model(celery_worker_process):
    project, _ = build_labelled_project(eval_fraction=0.25, fast_retrain_every=5, query_strategy="margin")

    # Before any model: the worker lays out cold-start picks (diverse documents), suggested from the labels' words.
    tasks.rescore_pool.delay(project.pk)
    wait_for(
        lambda: QueuePriority.objects.filter(project=project).count() == 12, timeout=120, what="cold-start priorities"
    )
    before = queue_order(project)
    # Evaluation documents carry no suggestion (None); the others carry the label descriptions' (version 0).
    assert set(QueuePriority.objects.filter(project=project).values_list("model_version", flat=True)) == {None, 0}

    # What the labeling service sends after a committed answer.
    tasks.labels_changed.delay(project.pk)
    version = wait_for(
        lambda: ModelVersion.objects.filter(project=project, status="active").first(),
        timeout=120,
        what="an active model version",
    )
    run = TrainingRun.objects.get(project=project)
    assert (run.status, run.kind, run.model_version_id) == ("succeeded", "fast", version.pk)
    assert version.number == 1 and version.train_label_count + version.eval_label_count == 18
    assert version.artifact_dir.joinpath("model_head.pkl").exists()

    after = queue_order(project)
    assert sorted(after) == sorted(before) and after != before
    rows = {row.document_id: row for row in QueuePriority.objects.filter(project=project)}
    learner = [pk for pk in after if rows[pk].model_version == 1]
    # The rest are evaluation documents (drawn at random, labeled without a suggestion): how many of the 12
    # queued ones were drawn varies from run to run, so count them rather than assume.
    held_out = EvaluationReservation.objects.filter(project=project, document__status=Document.Status.QUEUED).count()
    assert len(learner) == 12 - held_out and len(learner) >= 2
    probabilities = np.array([[rows[pk].label_probabilities()[key] for key in KEYS] for pk in learner])
    uncertainty = get_strategy("margin").scores(probabilities)
    assert np.all(np.diff(uncertainty) <= 2e-3), "the reviewers' queue asks the most uncertain document first"


def test_labels_that_arrive_by_import_train_a_model_like_reviewers_labels(celery_worker_process, tmp_path):
    """An office that brings its earlier decisions gets a model without labeling ten more documents first."""
    import json

    from annotation.services.imports import ImportOptions, documents_import

    project = project_with_labels(KEYS, eval_fraction=0.0, fast_retrain_every=5, slow_retrain_every=1000)
    rows = [
        {"id": f"old-{key}-{i}", "text": text, "labels": [key]} for key in KEYS for i, text in enumerate(LABELLED[key])
    ]
    rows += [{"id": f"new-{i}", "text": text} for i, text in enumerate(POOL)]
    path = tmp_path / "decisions.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")

    batch = documents_import(project=project, path=path, options=ImportOptions(label_field="labels"))
    assert (batch.created_count, batch.annotation_count) == (30, 18)

    version = wait_for(
        lambda: ModelVersion.objects.filter(project=project, status="active").first(),
        timeout=120,
        what="a model trained on the imported labels",
    )
    assert version.train_label_count == 18
    wait_for(
        lambda: QueuePriority.objects.filter(project=project, model_version=version.number).count() == 12,
        timeout=60,
        what="the queue scored by that model",
    )


def start_worker(queue: str, log: Path) -> subprocess.Popen:
    env = _worker_env()
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO"]
    command += ["-Q", queue, "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_a_worker_killed_mid_training_leaves_the_active_model_serving_and_the_run_queued_again(
    django_db_setup, tmp_path, settings, monkeypatch
):
    from config.celery import app

    project, _ = build_labelled_project()
    active = ModelVersion.objects.create(
        project=project, number=1, status="active", kind="fast", taxonomy_version=1, artifact_path="models/x/v1"
    )
    priorities_before = list(QueuePriority.objects.filter(project=project).values_list("document_id", "score"))
    run = TrainingRun.objects.create(project=project, kind="slow", trigger="admin", max_steps=200)

    # A worker of its own, on a queue of its own, so killing it harms no other test.
    queue = f"docket-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker(queue, log)
    try:
        wait_for(
            lambda: worker.poll() is None and app.control.ping(destination=[f"{queue}@{os.uname().nodename}"]),
            timeout=90,
            what="the worker to answer",
        )
        tasks.train_slow.apply_async((run.pk,), queue=queue)
        wait_for(
            lambda: TrainingRun.objects.filter(
                pk=run.pk, status="running", phase="Fine-tuning the body", progress_done__gte=1
            ).exists(),
            timeout=180,
            what=f"the body's first fine-tuning step (worker log: {log})",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()

    run.refresh_from_db()
    assert run.status == "running"  # nobody told the database: the worker died mid-step
    training = ModelVersion.objects.get(project=project, number=2)
    assert training.status == "training"

    settings.DOCKET_STALE_SECONDS = 1
    time.sleep(1.5)
    sent = []
    monkeypatch.setattr(tasks.train_slow, "delay", lambda run_id: sent.append(run_id))
    assert services.training_runs_fail_stale(project_id=project.pk) == 1
    run.refresh_from_db()
    training.refresh_from_db()
    active.refresh_from_db()
    assert run.status == "queued" and "stopped sending heartbeats" in run.error and sent == [run.pk]
    assert training.status == "failed"
    assert active.status == "active" and active.artifact_path == "models/x/v1"
    assert list(QueuePriority.objects.filter(project=project).values_list("document_id", "score")) == priorities_before

    # The run starts again from the beginning: nothing holds the project any more.
    assert services._run_claim(run.pk, "next-task") is not None
