"""What the webhooks page reads: a project's hooks and their recent deliveries, reached only through the
project the caller was already allowed into (annotation.permissions)."""

from django.db.models import QuerySet

from annotation.exceptions import ProjectNotFound
from annotation.models import Project
from webhooks.models import Delivery, Webhook

DELIVERIES_SHOWN = 50


def webhook_in(project: Project, webhook_id: int) -> Webhook:
    webhook = Webhook.objects.filter(project=project, pk=webhook_id).first()
    if webhook is None:
        raise ProjectNotFound("No such webhook in this project.")
    webhook.project = project
    return webhook


def delivery_in(project: Project, delivery_id: int) -> Delivery:
    delivery = Delivery.objects.filter(webhook__project=project, pk=delivery_id).select_related("webhook").first()
    if delivery is None:
        raise ProjectNotFound("No such delivery in this project.")
    delivery.webhook.project = project
    return delivery


def recent_deliveries(project: Project) -> QuerySet[Delivery]:
    return Delivery.objects.filter(webhook__project=project).select_related("webhook")[:DELIVERIES_SHOWN]
