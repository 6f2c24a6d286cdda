"""A worker's sweeper: started when the worker is ready, stopped as soon as the worker begins to shut down.

A stopping worker pauses its fine-tunes at a checkpoint and leaves their heartbeats old on purpose, for the next
worker to take them over; if its own sweeper kept running, it would end those runs as lost in the meantime.
"""

import time

import pytest
from celery import signals

from learning import recovery


def test_a_stopping_worker_stops_its_sweeper(monkeypatch):
    passes = []
    monkeypatch.setattr(recovery, "_started", None)
    monkeypatch.setattr(recovery, "sweep_seconds", lambda: 0.05)
    monkeypatch.setattr(
        recovery, "stalled_work_sweep", lambda **_kwargs: passes.append(time.monotonic()) or recovery.SweepResult()
    )

    signals.worker_ready.send(sender=None)
    sweeper = recovery._started
    assert sweeper is not None
    try:
        deadline = time.monotonic() + 10
        while len(passes) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(passes) >= 2, "the sweeper did not run"

        signals.worker_shutting_down.send(sender=None, sig="SIGTERM", how="Warm", exitcode=0)
        sweeper._thread.join(timeout=5)
        assert not sweeper._thread.is_alive()
        after_stop = len(passes)
        time.sleep(0.2)
        assert len(passes) == after_stop
    finally:
        sweeper.stop()  # never leave a sweeper running into the next test


@pytest.mark.django_db
def test_the_catch_up_checks_each_project_once_however_many_answers_it_had(monkeypatch):
    from tests.learning.conftest import build_labelled_project

    project, _ = build_labelled_project(per_label=2)  # six answers in the last minutes
    checked = []
    monkeypatch.setattr(recovery.services, "training_on_labels_changed", lambda project_id: checked.append(project_id))

    result = recovery.stalled_work_sweep(catch_up=True)

    assert checked == [project.pk] and result.projects_checked == 1
