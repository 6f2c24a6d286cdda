"""Celery tasks of review quality: thin, idempotent, take ids, call quality/label_errors.py and dashboard.py."""

from celery import shared_task

from learning.services import project_may_vanish
from quality.dashboard import dashboard_refresh, dashboards_refresh_stale
from quality.label_errors import label_errors_refresh


# Named as it was when this task lived in learning/tasks.py, so messages queued before an upgrade still run.
@shared_task(name="learning.tasks.refresh_label_errors", acks_late=True, reject_on_worker_lost=True)
def refresh_label_errors(project_id: int, limit: int = 100) -> dict:
    """Rank the likely label errors of a project too large to rank inside a page request."""
    with project_may_vanish(project_id):
        return {"project": project_id, "computed": label_errors_refresh(project_id=project_id, limit=limit)}
    return {"project": project_id, "computed": 0, "project_deleted": True}


@shared_task(name="quality.tasks.refresh_dashboard")
def refresh_dashboard(project_id: int, field: str = "") -> dict:
    """Recompute a project's insights dashboard after a change, so no reader waits for it (quality/dashboard.py)."""
    with project_may_vanish(project_id):
        stored = dashboard_refresh(project_id=project_id, field=field)
        return {"project": project_id, "field": field, "computed": stored is not None}
    return {"project": project_id, "field": field, "computed": False, "project_deleted": True}


@shared_task(name="quality.tasks.refresh_stale_dashboards")
def refresh_stale_dashboards() -> dict:
    """Periodic: ask for a recomputation of every stored dashboard that a change has outdated."""
    return {"asked": dashboards_refresh_stale()}
