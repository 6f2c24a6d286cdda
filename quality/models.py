"""Review quality's own table: the insights dashboard's figures as a worker last computed them."""

from django.db import models


class DashboardFigures(models.Model):
    """Every figure of one project's dashboard for one metadata breakdown, and what they were computed from.

    Readers are served these at once; a worker recomputes them after a change (quality/dashboard.py). `figures`
    is null until the first computation ends. `refresh_requested_at` says a recomputation was asked for and
    has not stored its figures yet, so readers ask once, not each time.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    field = models.CharField(max_length=255, blank=True)
    # The project's newest audit event and its labeling mode when the computation began: every change writes
    # an audit event, so figures with another version are out of date.
    version = models.CharField(max_length=64, blank=True)
    figures = models.JSONField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "field"], name="dashboard_figures_unique_per_field"),
        ]

    def __str__(self) -> str:
        return f"dashboard of project {self.project_id} ({self.field or 'no field'})"
