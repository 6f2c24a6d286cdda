"""Webhook deliveries through a real Celery worker to a real HTTP receiver: signed, retried with backoff,
logged, replayable, and sent for each event where it happens."""

import hashlib
import hmac
import time

import pytest
from django.urls import reverse

from annotation.services import taxonomy
from api.services import annotation_create
from tests.annotation.test_worker_import import wait_for
from tests.factories import PASSWORD, DocumentFactory
from webhooks.models import Delivery
from webhooks.services import webhook_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def verify(secret: str, request: dict) -> bool:
    fields = dict(part.split("=", 1) for part in request["headers"]["X-Docket-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def test_taxonomy_change_reaches_the_receiver_signed(webhook_worker, receiver, admin_project):
    project, admin = admin_project
    created = webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])

    taxonomy.label_add(project=project, actor=admin, key="biometrics", name="Biometrics")

    assert wait_for(lambda: Delivery.objects.filter(status="delivered").exists()), list(Delivery.objects.values())
    (request,) = receiver.requests
    assert request["headers"]["X-Docket-Event"] == "taxonomy.changed"
    assert verify(created.secret, request)
    assert not verify("another-secret", request)
    body = receiver.bodies()[0]
    assert body["data"]["operation"] == "add" and body["project"]["id"] == project.pk
    delivery = Delivery.objects.get()
    assert (delivery.attempts, delivery.response_status, str(delivery.delivery_id)) == (
        1,
        200,
        request["headers"]["X-Docket-Delivery"],
    )


def test_failing_endpoint_is_retried_with_growing_pauses_then_delivered(webhook_worker, receiver, admin_project):
    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])
    receiver.failures = 2

    taxonomy.label_add(project=project, actor=admin, key="location", name="Location")

    assert wait_for(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=90)
    delivery = Delivery.objects.get()
    assert (delivery.attempts, delivery.response_status) == (3, 200)
    assert len(receiver.requests) == 3
    assert len({r["headers"]["X-Docket-Delivery"] for r in receiver.requests}) == 1  # one event, three tries


def test_replay_from_the_page_sends_the_logged_delivery_again(webhook_worker, receiver, admin_project, client):
    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])
    taxonomy.label_add(project=project, actor=admin, key="children", name="Children")
    assert wait_for(lambda: Delivery.objects.filter(status="delivered").exists())
    first = Delivery.objects.get()

    client.login(username=admin.username, password=PASSWORD)
    page = client.get(reverse("webhooks:page", args=[project.pk])).content.decode()
    assert f'id="delivery-{first.pk}"' in page and "Delivered" in page
    client.post(reverse("webhooks:replay", args=[project.pk, first.pk]))

    assert wait_for(lambda: Delivery.objects.filter(replay_of=first, status="delivered").exists())
    assert [r["headers"]["X-Docket-Delivery"] for r in receiver.requests] == [str(first.delivery_id)] * 2
    assert receiver.bodies()[0] == receiver.bodies()[1]


def test_labels_given_close_together_arrive_as_one_batch(webhook_worker, receiver, admin_project):
    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["documents.labeled"])
    documents = [DocumentFactory(project=project) for _ in range(3)]

    for document in documents:
        annotation_create(actor=admin, document=document, label_keys=["third_party"])

    assert wait_for(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=60)
    time.sleep(2)  # a second batch, if any, would have gone out by now
    (body,) = receiver.bodies()
    assert body["event"] == "documents.labeled"
    assert sorted(d["id"] for d in body["data"]["documents"]) == sorted(d.pk for d in documents)
    assert all(d["labels"] == ["third_party"] for d in body["data"]["documents"])


def test_export_tells_the_receiver_who_exported_what(webhook_worker, receiver, admin_project, client):
    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["labels.exported"])
    client.login(username=admin.username, password=PASSWORD)

    response = client.get(reverse("manage:documents-export", args=[project.pk, "label-studio"]))
    b"".join(response.streaming_content)

    assert wait_for(lambda: Delivery.objects.filter(status="delivered").exists())
    assert receiver.bodies()[0]["data"] == {"format": "label-studio", "by": "hook-admin"}


def test_unsubscribed_events_send_nothing(webhook_worker, receiver, admin_project):
    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["labels.exported"])

    taxonomy.label_add(project=project, actor=admin, key="health", name="Health")

    time.sleep(2)
    assert receiver.requests == [] and not Delivery.objects.exists()


def test_promotion_and_rollback_are_sent_with_the_versions(webhook_worker, receiver, admin_project):
    from learning.models import ModelVersion
    from learning.services.registry import model_version_promote, model_version_rollback

    project, admin = admin_project
    webhook_create(project=project, actor=admin, url=receiver.url, events=["model.promoted", "model.rolled_back"])

    def version(number, status):
        return ModelVersion.objects.create(
            project=project,
            number=number,
            status=status,
            kind="fast",
            taxonomy_version=1,
            label_keys=[],
            artifact_path=f"m/{number}",
        )

    version(1, "active")
    ready = version(2, "ready")
    model_version_promote(version=ready, actor=admin)
    model_version_rollback(project=project, actor=admin)

    assert wait_for(lambda: Delivery.objects.filter(status="delivered").count() == 2)
    sent = sorted((b["event"], b["data"]["model_version"], b["data"]["previous"]) for b in receiver.bodies())
    assert sent == [("model.promoted", 2, 1), ("model.rolled_back", 1, 2)]
