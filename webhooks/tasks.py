"""Celery tasks of webhooks: thin, idempotent, take ids."""

from celery import shared_task

from webhooks.models import Delivery
from webhooks.services import delivery_attempt, labeled_flush, retry_delay


@shared_task(bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def webhook_deliver(self, delivery_id: int) -> str:
    """One attempt; a failure is tried again later with a doubling delay until DOCKET_WEBHOOK_MAX_ATTEMPTS.
    Safe to run twice: a delivered or failed delivery is not sent again."""
    status = delivery_attempt(delivery_id)
    if status == Delivery.Status.RETRYING:
        attempts = Delivery.objects.values_list("attempts", flat=True).get(pk=delivery_id)
        raise self.retry(countdown=retry_delay(attempts))
    return status


@shared_task
def webhook_labeled_flush(project_id: int) -> int:
    return labeled_flush(project_id)
