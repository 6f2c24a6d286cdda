"""A real Celery worker computes a large project's dashboard while its first reader waits on a page that reloads."""

import time

import pytest

from quality import dashboard
from quality.models import DashboardFigures
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_for(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_computes_the_figures_the_first_reader_asked_for(celery_worker_process, client, monkeypatch):
    monkeypatch.setattr(dashboard, "DASHBOARD_INLINE_ANSWERS", 0)  # this reader's process treats it as large
    project = project_with_labels()
    admin, reviewer = UserFactory(), UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    label = project.taxonomy.labels.get(key="third_party")
    for _ in range(3):
        AnnotationFactory(
            document=DocumentFactory(project=project, status="labeled"), reviewer=reviewer, label_list=[label]
        )
    client.force_login(admin)

    html = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert 'id="dashboard-computing"' in html

    def stored() -> bool:
        return DashboardFigures.objects.filter(project=project, figures__isnull=False).exists()

    assert wait_for(stored), celery_worker_process.log_path.read_text()[-3000:]
    html = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert 'id="chart-labels"' in html and "dashboard-computing" not in html and 'id="stale"' not in html
    assert 'id="stat-labeled">3<' in html
