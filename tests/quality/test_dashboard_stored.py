"""The insights dashboard off the request: readers get stored figures at once, a worker task recomputes them."""

import pytest

from annotation.models import Label
from annotation.services.labeling import annotation_submit
from quality import dashboard
from quality.models import DashboardFigures
from quality.tasks import refresh_dashboard, refresh_stale_dashboards
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, reviewer):
    documents = [DocumentFactory(project=project, metadata={"product": ["Mail", "Maps"][i % 2]}) for i in range(6)]
    for i, document in enumerate(documents[:4]):
        annotation_submit(reviewer=reviewer, document=document, label_keys=[["first_party", "third_party"][i % 2]])
    return documents


@pytest.fixture
def large(monkeypatch):
    """Every project counts as large: no reader may compute; each request for a worker is recorded."""
    monkeypatch.setattr(dashboard, "DASHBOARD_INLINE_ANSWERS", 0)
    asked = []
    monkeypatch.setattr(refresh_dashboard, "apply_async", lambda args, **options: asked.append((args, options)))
    return asked


@pytest.fixture
def readers_never_compute(monkeypatch):
    """The figures' computation as only the worker task may run it: a reader's request calling it fails."""
    real = dashboard._dashboard_compute
    state = {"worker": False}

    def compute(project, field):
        assert state["worker"], "a reader's request computed the dashboard"
        return real(project, field)

    monkeypatch.setattr(dashboard, "_dashboard_compute", compute)

    def as_worker(project_id, field=""):
        state["worker"] = True
        try:
            return refresh_dashboard(project_id, field)
        finally:
            state["worker"] = False

    return as_worker


def page(client, project, query="?field=product"):
    response = client.get(f"/projects/{project.pk}/quality/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_first_reader_of_a_large_project_gets_a_page_that_reloads_and_asks_a_worker_once(
    client, project, project_admin, labeled, large, readers_never_compute
):
    client.force_login(project_admin)
    html = page(client, project)
    assert 'id="dashboard-computing"' in html and 'http-equiv="refresh"' in html
    assert 'id="chart-labels"' not in html
    assert large == [((project.pk, "product"), {"countdown": 0.0})]
    page(client, project)  # a second reader while the first request is pending asks nothing more
    assert len(large) == 1
    # A table asked for before there is one leads back to the page, not to a 404 or an empty file.
    response = client.get(f"/projects/{project.pk}/quality/?field=product&csv=labels")
    assert response.status_code == 302


def test_the_task_stores_the_figures_and_readers_get_them_without_computing(
    client, project, project_admin, labeled, large, readers_never_compute
):
    assert readers_never_compute(project.pk, "product") == {"project": project.pk, "field": "product", "computed": True}
    stored = DashboardFigures.objects.get(project=project, field="product")
    assert stored.computed_at is not None and stored.version == dashboard.dashboard_version(project)
    assert stored.refresh_requested_at is None
    assert readers_never_compute(project.pk, "product")["computed"] is False  # current: nothing to do
    client.force_login(project_admin)
    html = page(client, project)
    for chart in ("labels", "batches", "weeks", "field", "burndown", "throughput", "agreement", "confusion", "models"):
        assert f'id="chart-{chart}"' in html
    assert "Not enough overlap yet" in html and 'id="stale"' not in html and "dashboard-computing" not in html
    assert large == []
    csv = client.get(f"/projects/{project.pk}/quality/?field=product&csv=field").content.decode()
    assert "Mail,First Party,2" in csv.splitlines()


def test_a_change_outdates_the_figures_readers_keep_them_marked_updating_and_a_recompute_is_asked(
    client, project, project_admin, reviewer, labeled, large, readers_never_compute
):
    readers_never_compute(project.pk, "product")
    client.force_login(project_admin)
    assert 'id="stale"' not in page(client, project)

    annotation_submit(reviewer=reviewer, document=labeled[4], label_keys=["data_security"])
    html = page(client, project)
    assert 'id="stale"' in html and "updating" in html
    assert 'id="stat-labeled">4<' in html  # the stored figures, at once
    assert large == [
        ((project.pk, "product"), {"countdown": pytest.approx(dashboard.DASHBOARD_MIN_INTERVAL_SECONDS, abs=5)})
    ]
    assert DashboardFigures.objects.get(project=project, field="product").refresh_requested_at is not None

    assert readers_never_compute(project.pk, "product")["computed"] is True  # the worker's turn
    html = page(client, project)
    assert 'id="stale"' not in html and 'id="stat-labeled">5<' in html


def test_the_scheduler_asks_for_a_recompute_of_outdated_dashboards_only_once(
    project, reviewer, labeled, large, readers_never_compute
):
    readers_never_compute(project.pk, "product")
    assert refresh_stale_dashboards() == {"asked": 0}  # current
    annotation_submit(reviewer=reviewer, document=labeled[4], label_keys=["data_security"])
    assert refresh_stale_dashboards() == {"asked": 1}
    assert refresh_stale_dashboards() == {"asked": 0}  # already pending
    assert [args for args, _ in large] == [(project.pk, "product")]


def test_a_small_project_is_computed_once_in_the_request_and_stored(
    client, project, project_admin, labeled, monkeypatch
):
    calls = []
    real = dashboard._dashboard_compute
    monkeypatch.setattr(dashboard, "_dashboard_compute", lambda p, f: calls.append(p.pk) or real(p, f))
    client.force_login(project_admin)
    assert 'id="chart-labels"' in page(client, project)
    assert 'id="chart-labels"' in page(client, project)
    assert calls == [project.pk]
    assert DashboardFigures.objects.filter(project=project).count() == 1


def test_another_projects_stored_figures_never_show(
    client, project, project_admin, labeled, large, readers_never_compute
):
    other = project_with_labels(keys=("zebra_secret", "okapi_secret"), name="Other office")
    other_reviewer = UserFactory()
    MembershipFactory(project=other, user=other_reviewer, role="reviewer")
    Label.objects.filter(taxonomy__project=other, key="zebra_secret").update(name="Zebra Secret")
    for _ in range(3):
        document = DocumentFactory(project=other, metadata={"product": "Zoo"})
        annotation_submit(reviewer=other_reviewer, document=document, label_keys=["zebra_secret"])
    readers_never_compute(other.pk, "product")
    readers_never_compute(other.pk, "")
    client.force_login(project_admin)
    for query in ("?field=product", "", "?field=nonexistent"):
        html = page(client, project, query)  # nothing stored for this project yet
        assert "dashboard-computing" in html and "Zebra" not in html and "Zoo" not in html
    readers_never_compute(project.pk, "product")
    html = page(client, project)
    assert 'id="chart-labels"' in html and "Zebra" not in html and "Zoo" not in html
    assert set(DashboardFigures.objects.filter(project=other).values_list("field", flat=True)) == {"product", ""}
