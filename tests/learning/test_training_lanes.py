"""On real workers: a head refit never waits for a fine-tune of the same project, and a fine-tune stopped by
its service manager resumes from its checkpoint instead of step 0."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from learning import services, tasks
from learning.ml.checkpoint import STATE_FILE
from learning.models import ModelVersion, TrainingRun
from tests.conftest import _worker_env
from tests.learning.conftest import build_labelled_project, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LABELS = TrainingRun.Trigger.LABELS


def start_worker(name: str, queues: str, log: Path, *, pool: str = "solo", **env_extra: str) -> subprocess.Popen:
    """A worker as deploy/ runs it, in a process group of its own so SIGTERM reaches its pool as systemd's does."""
    env = _worker_env()
    env.update(DOCKET_ARTIFACT_DIR=str(settings.ARTIFACT_DIR), **env_extra)
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", f"--pool={pool}", "--concurrency=1"]
    command += ["-Q", queues, "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel=INFO"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def worker_answers(name: str) -> bool:
    from config.celery import app

    return bool(app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=1.0))


def stop_group(worker: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
        worker.wait(timeout=60)


def serving_model(project) -> ModelVersion:
    """A first model trained in this process, so the project has a serving body for head refits."""
    run = TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS)
    services.training_run_execute(run_id=run.pk, task_id="first")
    return ModelVersion.objects.get(project=project, status="active")


def test_a_head_refit_finishes_while_a_fine_tune_of_the_same_project_runs(tmp_path):
    from config.celery import app

    app.control.purge()
    project, _ = build_labelled_project()
    first = serving_model(project)
    training_queue = f"docket-training-{uuid.uuid4().hex[:8]}"
    trainer = start_worker(training_queue, training_queue, tmp_path / "training.log")
    # The default worker serves the default queue, where head refits go in this set-up (DOCKET_FAST_QUEUE).
    default = start_worker(f"default-{training_queue}", "celery", tmp_path / "default.log")
    try:
        wait_for(lambda: worker_answers(training_queue), timeout=120, what="the training worker")
        wait_for(lambda: worker_answers(f"default-{training_queue}"), timeout=120, what="the default worker")
        fine_tune = TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS, max_steps=400)
        tasks.train_slow.apply_async((fine_tune.pk,), queue=training_queue)
        wait_for(
            lambda: TrainingRun.objects.filter(pk=fine_tune.pk, phase="Fine-tuning the body", progress_done__gte=1),
            timeout=240,
            what=f"the fine-tune's first step (log {tmp_path / 'training.log'})",
        )

        refit = services.training_run_request(project=project, kind="fast", trigger=LABELS, label_events=99)
        assert refit.phase == "Waiting for a worker"  # not "waiting for the run in progress"
        wait_for(
            lambda: TrainingRun.objects.filter(pk=refit.pk, status="succeeded"),
            timeout=240,
            what=f"the head refit (log {tmp_path / 'default.log'})",
        )
        fine_tune.refresh_from_db()
        assert fine_tune.status == "running" and fine_tune.progress_done < fine_tune.progress_total
        refit.refresh_from_db()
        promoted = ModelVersion.objects.get(project=project, status="active")
        assert promoted.pk == refit.model_version_id and promoted.number > first.number
        assert promoted.body_id == first.body_id  # trained on the serving body, not the one being tuned
    finally:
        stop_group(trainer)
        stop_group(default)
        services._run_end(fine_tune.pk, task_id=None, status="failed", error="test over")
        app.control.purge()


def test_a_fine_tune_stopped_by_its_service_manager_resumes_from_its_checkpoint(tmp_path):
    from config.celery import app

    app.control.purge()
    project, _ = build_labelled_project()
    run = TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS, max_steps=8)
    queue = f"docket-resume-{uuid.uuid4().hex[:8]}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    worker = start_worker(queue, queue, first_log, pool="prefork", DOCKET_FINE_TUNE_CHECKPOINT_STEPS="2")
    try:
        wait_for(lambda: worker_answers(queue), timeout=120, what="the training worker")
        tasks.train_slow.apply_async((run.pk,), queue=queue)
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, phase="Fine-tuning the body", progress_done__gte=3),
            timeout=300,
            what=f"three fine-tuning steps (log {first_log})",
        )
        stopping = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)  # what `systemctl stop` sends to every process of the unit
        worker.wait(timeout=120)
        assert time.monotonic() - stopping < 120, "the worker did not stop within TimeoutStopSec"
        run.refresh_from_db()
        assert run.status == "running" and run.phase.startswith("Paused after"), first_log.read_text()[-3000:]
        state = json.loads((services.fine_tune_checkpoint(run.pk).directory / STATE_FILE).read_text())
        paused_at = state["steps_done"]
        assert 3 <= paused_at < 8

        worker = start_worker(queue, queue, second_log, pool="prefork", DOCKET_FINE_TUNE_CHECKPOINT_STEPS="2")
        # The worker removes the checkpoint just after the run's last commit: wait for both before stopping it.
        checkpoint = services.fine_tune_checkpoint(run.pk).directory
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status="succeeded").exists() and not checkpoint.exists(),
            timeout=400,
            what=f"the resumed fine-tune and its checkpoint's removal (log {second_log})",
        )
    finally:
        stop_group(worker)
        app.control.purge()
    log = second_log.read_text()
    assert f"Resuming a fine-tune at step {paused_at} of 8" in log, log[-3000:]
    run.refresh_from_db()
    assert run.attempts == 2
    assert ModelVersion.objects.get(pk=run.model_version_id).status == "active"
    assert not services.fine_tune_checkpoint(run.pk).directory.exists()  # removed once the run ended
