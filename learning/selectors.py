"""What the rest of Docket may read from the learning side: queue order, suggestions, predictions."""

from collections.abc import Iterable

from django.db.models import F, QuerySet

from learning.models import QueuePriority


def order_by_priority(documents: QuerySet) -> QuerySet:
    """Most informative first, as scored by the active model; documents with no score follow in random order."""
    return documents.order_by(F("queue_priority__score").desc(nulls_last=True), "random_key", "id")


def predictions_for(document_ids: Iterable[int]) -> dict[int, dict]:
    """The active model's probabilities per document id, for exports and suggestions."""
    rows = QueuePriority.objects.filter(document_id__in=list(document_ids), model_version__isnull=False).values(
        "document_id", "model_version", "probabilities"
    )
    return {
        row["document_id"]: {"model_version": row["model_version"], "probabilities": row["probabilities"]}
        for row in rows
    }
