"""The model side's tables: per-document scores that order the review queue and feed suggestions."""

from django.db import models


class QueuePriority(models.Model):
    """The latest score of one pool document under a project's active model (higher is asked sooner)."""

    document = models.OneToOneField(
        "annotation.Document", on_delete=models.CASCADE, primary_key=True, related_name="queue_priority"
    )
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    # Number of the model version that produced the score and probabilities (None for a cold-start pick).
    model_version = models.PositiveIntegerField(null=True, blank=True)
    # Label key -> probability under that model, in the project's label order.
    probabilities = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-score"], name="queue_priority_order_idx")]
