"""Training runs without training: when they are asked for, coalescing, one at a time, refusals, dead workers."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Document
from learning import services, tasks
from learning.exceptions import RunAbandoned
from learning.models import ModelVersion, TrainingRun
from tests.learning.conftest import LABELLED, build_labelled_project, label_document, make_document

pytestmark = pytest.mark.django_db

LABELS = TrainingRun.Trigger.LABELS


@pytest.fixture
def enqueued(monkeypatch):
    """Task names and run ids sent to the broker (on commit), instead of sending them."""
    sent = []
    monkeypatch.setattr(tasks.train_fast, "delay", lambda run_id: sent.append(("fast", run_id)))
    monkeypatch.setattr(tasks.train_slow, "delay", lambda run_id: sent.append(("slow", run_id)))
    monkeypatch.setattr(tasks.rescore_pool, "delay", lambda project_id: sent.append(("rescore", project_id)))
    return sent


def set_running(run: TrainingRun, *, task_id: str = "task-1", heartbeat=None) -> TrainingRun:
    now = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", celery_task_id=task_id, started_at=now, heartbeat_at=heartbeat or now
    )
    run.refresh_from_db()
    return run


def test_two_label_triggers_coalesce_into_one_queued_run(django_capture_on_commit_callbacks, enqueued):
    project, reviewer = build_labelled_project(fast_retrain_every=5)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.training_on_labels_changed(project_id=project.pk)
    for document in Document.objects.filter(project=project, status="queued")[:5]:
        label_document(document, ["first_party"], reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        second = services.training_on_labels_changed(project_id=project.pk)
    assert first is not None and second is not None and first.pk == second.pk
    assert TrainingRun.objects.filter(project=project).count() == 1
    assert second.label_events == 23  # the queued run will read the newer labels too
    assert enqueued == [("fast", first.pk)]


def test_labels_while_a_run_is_queued_do_not_look_through_the_queue_for_unscored_documents(
    monkeypatch, django_capture_on_commit_callbacks, enqueued
):
    # That look reads the whole queue (seconds at 1,000,000 documents); the queued run rescores it anyway.
    project, _ = build_labelled_project(fast_retrain_every=5)
    services.training_run_request(project=project, kind="fast", trigger=LABELS)
    monkeypatch.setattr(
        "learning.services.runs.pool_needs_scoring", lambda project: pytest.fail("the queue was searched")
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.training_on_labels_changed(project_id=project.pk)


def test_labels_during_a_run_schedule_one_follow_up_enqueued_when_it_ends(django_capture_on_commit_callbacks, enqueued):
    project, _ = build_labelled_project()
    running = set_running(services.training_run_request(project=project, kind="fast", trigger=LABELS))
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        follow_up = services.training_run_request(project=project, kind="fast", trigger=LABELS, label_events=40)
        again = services.training_run_request(project=project, kind="fast", trigger=LABELS, label_events=50)
    assert follow_up.pk == again.pk != running.pk
    assert TrainingRun.objects.filter(project=project, status="queued").count() == 1
    assert enqueued == []  # nothing is sent while a run trains
    with django_capture_on_commit_callbacks(execute=True):
        services._run_end(running.pk, task_id="task-1", status="failed", error="boom")
    assert enqueued == [("fast", follow_up.pk)]


def test_the_database_refuses_a_second_running_run_of_the_same_kind_for_a_project():
    project, _ = build_labelled_project()
    TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="running")


def test_a_head_refit_and_a_fine_tune_of_one_project_may_run_side_by_side():
    project, _ = build_labelled_project()
    TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS, status="running")
    TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="running")
    assert TrainingRun.objects.filter(project=project, status="running").count() == 2


def test_the_database_refuses_a_second_queued_run_for_a_project():
    project, _ = build_labelled_project()
    TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="queued")
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="queued")


def test_a_queued_run_does_not_start_while_another_of_its_kind_trains():
    project, _ = build_labelled_project()
    set_running(TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS))
    waiting = TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS)
    assert services.training_run_execute(run_id=waiting.pk, task_id="task-2") is None
    waiting.refresh_from_db()
    assert waiting.status == "queued" and not ModelVersion.objects.filter(project=project).exists()


def test_a_head_refit_asked_for_during_a_fine_tune_is_sent_to_a_worker_at_once(
    django_capture_on_commit_callbacks, enqueued
):
    project, _ = build_labelled_project()
    slow = set_running(services.training_run_request(project=project, kind="slow", trigger=LABELS))
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        fast = services.training_run_request(project=project, kind="fast", trigger=LABELS, label_events=40)
    assert fast.pk != slow.pk and fast.phase == "Waiting for a worker"
    assert enqueued == [("fast", fast.pk)]
    assert services._run_claim(fast.pk, "fast-task") is not None


def test_training_on_one_label_only_is_refused_with_a_message_and_not_retried_at_once(enqueued):
    project, reviewer = build_labelled_project(per_label=0)
    for text in LABELLED["third_party"]:
        label_document(make_document(project, text), ["third_party"], reviewer)
    run = services.training_on_labels_changed(project_id=project.pk)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == "refused"
    assert "same label" in run.error and "Third Party" in run.error
    assert not ModelVersion.objects.filter(project=project).exists()
    assert services.training_on_labels_changed(project_id=project.pk) is None


def test_training_with_too_few_labels_is_refused_and_says_how_many(enqueued):
    project, _ = build_labelled_project(per_label=1)
    run = services.training_run_request(project=project, kind="fast", trigger=LABELS)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == "refused"
    assert "at least 4 labeled documents" in run.error and "there are 3" in run.error


def test_a_run_whose_worker_went_silent_is_queued_again_and_fails_after_its_last_attempt(settings, enqueued):
    settings.DOCKET_STALE_SECONDS = 60
    settings.DOCKET_TRAINING_MAX_ATTEMPTS = 2
    project, _ = build_labelled_project()
    run = services.training_run_request(project=project, kind="slow", trigger=LABELS)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=1)
    set_running(run, heartbeat=timezone.now() - timedelta(minutes=5))
    version = ModelVersion.objects.create(
        project=project, number=1, kind="slow", taxonomy_version=1, status=ModelVersion.Status.TRAINING
    )
    TrainingRun.objects.filter(pk=run.pk).update(model_version=version)
    assert services.training_runs_fail_stale(project_id=project.pk) == 1
    run.refresh_from_db()
    version.refresh_from_db()
    assert run.status == "queued" and "stopped sending heartbeats" in run.error and not run.celery_task_id
    assert version.status == "failed"

    # The second attempt's worker dies too: that was the last attempt, the run fails and says why.
    claimed = services._run_claim(run.pk, "task-2")
    assert claimed.attempts == 2 and "stopped sending heartbeats" in claimed.error
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert services.training_runs_fail_stale(project_id=project.pk) == 1
    run.refresh_from_db()
    assert run.status == "failed" and "Gave up after 2 attempts" in run.error and run.finished_at
    follow = services.training_on_labels_changed(project_id=project.pk)
    assert follow is not None and follow.pk != run.pk and follow.status == "queued"


def test_a_live_run_is_not_taken_for_dead(settings):
    settings.DOCKET_STALE_SECONDS = 60
    project, _ = build_labelled_project()
    set_running(TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS))
    assert services.training_runs_fail_stale(project_id=project.pk) == 0


def test_a_worker_whose_run_was_failed_meanwhile_stops_reporting_progress():
    project, _ = build_labelled_project()
    run = set_running(TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS))
    progress = services._Progress(run)
    progress.phase("Fine-tuning the body", "fine_tune", total=10)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed")
    with pytest.raises(RunAbandoned):
        progress(10, 10)


def test_the_same_message_delivered_again_takes_its_run_over_and_others_do_not():
    project, _ = build_labelled_project()
    run = set_running(TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS), task_id="abc")
    assert services._run_claim(run.pk, "someone-else") is None
    # While its first worker still beats, a second delivery (a visibility timeout shorter than the run) waits.
    assert services._run_claim(run.pk, "abc") is None
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    taken = services._run_claim(run.pk, "abc")
    assert taken is not None and taken.attempts == 1 and taken.status == "running"


def test_labels_ask_for_a_fast_run_every_n_events_and_a_slow_one_every_m():
    project, _ = build_labelled_project(fast_retrain_every=5, slow_retrain_every=30)
    assert services.training_due(project, 4) is None
    assert services.training_due(project, 5) == "fast"
    assert services.training_due(project, 30) == "slow"
    TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, status="succeeded", label_events=18)
    assert services.training_due(project, 22) is None
    assert services.training_due(project, 23) == "fast"
    TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS, status="failed", label_events=30)
    assert services.training_due(project, 30) == "slow"  # a failed run covers nothing


def test_evaluation_documents_take_every_nth_place_in_the_queue():
    learner, evaluation = services.interleaved_scores(170, 30, 0.15)
    merged = sorted([(s, "learner") for s in learner] + [(s, "eval") for s in evaluation], reverse=True)
    first_hundred = [kind for _, kind in merged[:100]]
    assert 13 <= first_hundred.count("eval") <= 17
    assert len(set(np.concatenate([learner, evaluation]))) == 200  # no ties
    assert np.all(np.diff(learner) < 0) and np.all(np.diff(evaluation) < 0)


def test_a_run_that_cannot_start_yet_is_sent_again_only_after_its_wait_however_many_labels_knock(
    monkeypatch, django_capture_on_commit_callbacks
):
    # Every label knocks; a queued run whose message seems lost is sent again, but not once per knock: that
    # filled the broker with thousands of copies of the same run (the embedded soak's broker folder).

    project, _ = build_labelled_project(per_label=1)
    queued = TrainingRun.objects.create(project=project, kind="fast", trigger="labels", status="queued")
    long_ago = timezone.now() - timedelta(minutes=2)
    TrainingRun.objects.filter(pk=queued.pk).update(created_at=long_ago, enqueued_at=long_ago)
    sent = []
    monkeypatch.setattr(tasks.train_fast, "delay", lambda run_id: sent.append(run_id), raising=False)

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            services.training_runs_rekick(project_id=project.pk)
            services.training_run_request(project=project, kind="fast", trigger="labels")

    assert sent == [queued.pk]
