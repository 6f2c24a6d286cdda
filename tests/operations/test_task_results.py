"""Task results do not pile up: the scheduler's nightly clean-up deletes those past CELERY_RESULT_EXPIRES."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from config.celery import BEAT_SCHEDULE, app

pytestmark = pytest.mark.django_db


def test_the_scheduler_sends_the_result_clean_up_every_night():
    entries = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "celery.backend_cleanup" in entries
    assert BEAT_SCHEDULE["task-results-cleanup"]["task"] == "celery.backend_cleanup"


def test_the_clean_up_deletes_results_older_than_the_expiry_and_keeps_recent_ones(settings):
    old = TaskResult.objects.create(task_id="old-one", status="SUCCESS")
    recent = TaskResult.objects.create(task_id="recent-one", status="SUCCESS")
    TaskResult.objects.filter(pk=old.pk).update(date_done=timezone.now() - timedelta(days=30))
    backend = app.backend
    if not hasattr(backend, "cleanup") or "django" not in type(backend).__module__:
        pytest.skip("the suite's result backend is not django-db")
    app.tasks["celery.backend_cleanup"]()
    assert not TaskResult.objects.filter(pk=old.pk).exists()
    assert TaskResult.objects.filter(pk=recent.pk).exists()
