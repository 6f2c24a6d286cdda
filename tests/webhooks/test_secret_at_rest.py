"""Webhook signing secrets are stored encrypted under a key derived from SECRET_KEY: the column holds no secret,
deliveries are signed with the secret itself, an old key in SECRET_KEY_FALLBACKS still signs, and a secret no
key opens fails its delivery with a reason instead of an error."""

import hashlib
import hmac
import logging

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from tests.factories import PASSWORD
from webhooks.models import Delivery, Event, Webhook
from webhooks.services import delivery_attempt, webhook_create
from webhooks.tasks import webhook_deliver

pytestmark = pytest.mark.django_db

OLD_KEY = "an-earlier-secret-key-of-this-installation-0123456789"
NEW_KEY = "the-current-secret-key-of-this-installation-9876543210"


def stored_token(webhook: Webhook) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_token FROM webhooks_webhook WHERE id = %s", [webhook.pk])
        return cursor.fetchone()[0]


def verify(secret: str, request: dict) -> bool:
    fields = dict(part.split("=", 1) for part in request["headers"]["X-Docket-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


def ping(webhook: Webhook) -> Delivery:
    return Delivery.objects.create(webhook=webhook, event=Event.PING, payload={"event": Event.PING})


def test_the_stored_column_holds_no_clear_secret(admin_project, receiver):
    project, admin = admin_project
    created = webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])

    token = stored_token(created.webhook)
    assert created.secret not in token and created.secret.encode().hex() not in token
    assert len(token) > 64  # a Fernet token, not the 64 hex characters of the secret


def test_a_delivery_is_signed_with_the_clear_secret(admin_project, receiver):
    project, admin = admin_project
    created = webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])

    assert delivery_attempt(ping(created.webhook).pk) == Delivery.Status.DELIVERED
    (request,) = receiver.requests
    assert verify(created.secret, request)
    assert not verify(stored_token(created.webhook), request)


def test_a_secret_under_a_fallback_key_still_signs_and_moves_to_the_current_key(admin_project, receiver, settings):
    project, admin = admin_project
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    created = webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"])
    old_token = stored_token(created.webhook)

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert delivery_attempt(ping(created.webhook).pk) == Delivery.Status.DELIVERED
    assert verify(created.secret, receiver.requests[0])

    assert stored_token(created.webhook) != old_token  # stored again under SECRET_KEY
    settings.SECRET_KEY_FALLBACKS = []  # so the old key may go
    assert Webhook.objects.get(pk=created.webhook.pk).signing_secret() == created.secret


def test_a_secret_no_key_opens_fails_its_delivery_with_a_logged_reason(
    admin_project, receiver, settings, caplog, client
):
    project, admin = admin_project
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    hook = webhook_create(project=project, actor=admin, url=receiver.url, events=["taxonomy.changed"]).webhook
    settings.SECRET_KEY = NEW_KEY  # the old key is lost
    delivery = ping(hook)

    with caplog.at_level(logging.ERROR, logger="webhooks.services"):
        assert webhook_deliver(delivery.pk) == Delivery.Status.FAILED  # the task ends: no retry, no crash

    delivery.refresh_from_db()
    assert delivery.attempts == 1 and "SECRET_KEY_FALLBACKS" in delivery.error
    assert receiver.requests == []
    assert any("SECRET_KEY_FALLBACKS" in record.getMessage() for record in caplog.records)
    client.login(username=admin.username, password=PASSWORD)
    page = client.get(reverse("webhooks:page", args=[project.pk]))
    assert page.status_code == 200 and "SECRET_KEY_FALLBACKS" in page.content.decode()
    assert client.post(reverse("webhooks:ping", args=[project.pk, hook.pk])).status_code == 302


def test_rotate_command_moves_every_secret_to_the_current_key(admin_project, settings, capsys):
    project, admin = admin_project
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    created = [
        webhook_create(project=project, actor=admin, url=f"http://127.0.0.1:830{n}/in", events=["labels.exported"])
        for n in range(2)
    ]
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    call_command("rotate_webhook_secrets")
    assert "2 re-encrypted" in capsys.readouterr().out

    settings.SECRET_KEY_FALLBACKS = []
    assert [Webhook.objects.get(pk=c.webhook.pk).signing_secret() for c in created] == [c.secret for c in created]
    call_command("rotate_webhook_secrets")
    assert "0 re-encrypted with SECRET_KEY, 2 already were" in capsys.readouterr().out


def test_rotate_command_names_the_hooks_no_key_opens(admin_project, settings):
    project, admin = admin_project
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    hook = webhook_create(project=project, actor=admin, url="http://127.0.0.1:8309/in", events=["labels.exported"])
    settings.SECRET_KEY = NEW_KEY

    with pytest.raises(CommandError, match=f"\\({hook.webhook.pk}\\)"):
        call_command("rotate_webhook_secrets")
