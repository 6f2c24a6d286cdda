"""Webhooks: registering endpoints, recording events after their transaction commits, signed deliveries with
retries, and replays. Events come from where they happen (taxonomy changes, exports, labeling, promotions)
through webhooks.events."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from annotation import selectors as annotation_selectors
from annotation.exceptions import InputRejected
from annotation.models import Document, Project
from annotation.services.audit import audit_record
from webhooks.encryption import SecretUnreadable
from webhooks.events import event_emit
from webhooks.models import Delivery, Event, LabeledNotice, Webhook

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Docket-Signature"
# A receiver keeps what it needs from the response; the log keeps this much of it.
RESPONSE_KEPT = 1000
LABELED_BATCH_MAX = 1000


class WebhookRejected(InputRejected):
    """The endpoint cannot be registered or reached as given (scheme, host, private network)."""


@dataclass(frozen=True)
class Created:
    webhook: Webhook
    secret: str  # shown once, on the page that created it


# --- Registering -------------------------------------------------------------------------------------------


def webhook_target_check(url: str, *, resolve: bool = True) -> None:
    """HTTPS only; plain http only to this machine (127.0.0.1, localhost) where DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL
    allows it (development and tests). A host on a private, loopback or link-local network is refused unless
    DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS is set, so a webhook cannot be aimed at the services beside Docket."""
    host, port = _target_host(url)
    if settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS or not resolve:
        return
    try:
        addresses = _addresses(host, port)
    except socket.gaierror as error:
        raise WebhookRejected(f"The host {host} cannot be found ({error.strerror}).") from error
    _refuse_private(host, addresses)


def _target_host(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookRejected("The webhook address needs a host name.")
    local = host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "http":
        if not (local and settings.DOCKET_WEBHOOK_ALLOW_HTTP_LOCAL):
            raise WebhookRejected("Webhooks are sent over HTTPS only: use an https:// address.")
    elif parts.scheme != "https":
        raise WebhookRejected("Webhooks are sent over HTTPS only: use an https:// address.")
    if parts.username or parts.password:
        raise WebhookRejected("Put no user name or password in the address; deliveries are signed instead.")
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[str]:
    """The host's addresses in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _refuse_private(host: str, addresses: list[str]) -> None:
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise WebhookRejected(
                f"{host} is on a private network ({ip}); Docket sends webhooks to public addresses only "
                f"(DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS lets an operator allow it)."
            )


def webhook_create(
    *, project: Project, actor: AbstractBaseUser, url: str, events: Iterable[str], description: str = ""
) -> Created:
    events = sorted(set(events))
    unknown = [e for e in events if e not in Event.values or e == Event.PING]
    if not events or unknown:
        raise WebhookRejected(
            f"Choose the events to send from: {', '.join(e for e in Event.values if e != Event.PING)}."
        )
    webhook_target_check(url)
    secret = secrets.token_hex(32)
    with transaction.atomic():
        webhook = Webhook(project=project, url=url, events=events, description=description, created_by=actor)
        webhook.signing_secret_set(secret)
        webhook.full_clean()
        webhook.save()
        _project_events_refresh(project)
        audit_record(
            action="webhook.created",
            actor=actor,
            project=project,
            target=webhook,
            after={"url": url, "events": events},
        )
    return Created(webhook, secret)


def webhook_delete(*, webhook: Webhook, actor: AbstractBaseUser) -> None:
    with transaction.atomic():
        audit_record(
            action="webhook.deleted",
            actor=actor,
            project=webhook.project,
            target=webhook,
            before={"url": webhook.url, "events": webhook.events},
        )
        webhook.delete()
        _project_events_refresh(webhook.project)


def _project_events_refresh(project: Project) -> None:
    """Project.webhook_events: the events some active hook of the project receives (labeling reads it)."""
    events = sorted({e for hook in Webhook.objects.filter(project=project, active=True) for e in hook.events})
    project.webhook_events = events
    Project.objects.filter(pk=project.pk).update(webhook_events=events)


@dataclass(frozen=True)
class Rotation:
    rotated: int  # tokens stored again under SECRET_KEY
    current: int  # already under SECRET_KEY
    unreadable: list[int]  # webhook ids no configured key opens


def webhook_secrets_rotate() -> Rotation:
    """Store every signing secret written under a SECRET_KEY_FALLBACKS key again under SECRET_KEY, so the old key
    can be dropped from the fallbacks without losing a hook that has not delivered since the rotation."""
    rotated, current, unreadable = 0, 0, []
    for hook in Webhook.objects.only("pk", "secret_token").order_by("pk").iterator():
        before = hook.secret_token
        try:
            hook.signing_secret()  # stores a stale token again under SECRET_KEY
        except SecretUnreadable:
            unreadable.append(hook.pk)
            continue
        if hook.secret_token == before:
            current += 1
        else:
            rotated += 1
    return Rotation(rotated=rotated, current=current, unreadable=unreadable)


# --- Recording events ---------------------------------------------------------------------------------------


def _subscribed(project_id: int, event: str) -> list[Webhook]:
    return [hook for hook in Webhook.objects.filter(project_id=project_id, active=True) if event in hook.events]


def deliveries_create(project_id: int, event: str, data: dict[str, Any]) -> list[Delivery]:
    """One delivery per active webhook of the project that receives `event`, each handed to a worker."""
    hooks = _subscribed(project_id, event)
    if not hooks:
        return []
    project = Project.objects.only("pk", "name").get(pk=project_id)
    payload = _envelope(project, event, data)
    deliveries = Delivery.objects.bulk_create(Delivery(webhook=hook, event=event, payload=payload) for hook in hooks)
    for delivery in deliveries:
        _enqueue(delivery.pk)
    return deliveries


def _envelope(project: Project, event: str, data: dict[str, Any]) -> dict[str, Any]:
    body = {
        "event": event,
        "project": {"id": project.pk, "name": project.name},
        "occurred_at": timezone.now(),
        "data": data,
    }
    return json.loads(json.dumps(body, cls=DjangoJSONEncoder))


def _enqueue(delivery_id: int, countdown: float = 0) -> None:
    from webhooks.tasks import webhook_deliver  # tasks import this module

    webhook_deliver.apply_async((delivery_id,), countdown=countdown)


def labeled_notice_add(project_id: int, document_id: int) -> None:
    if not _subscribed(project_id, Event.DOCUMENTS_LABELED):
        return
    LabeledNotice.objects.create(project_id=project_id, document_id=document_id)
    from webhooks.tasks import webhook_labeled_flush

    # Each note asks for a flush after the batching window; a flush that finds nothing sends nothing.
    webhook_labeled_flush.apply_async((project_id,), countdown=settings.DOCKET_WEBHOOK_LABELED_BATCH_SECONDS)


def labeled_flush(project_id: int) -> int:
    """Send the documents labeled since the last batch as `documents.labeled` deliveries; returns how many
    documents went out. Two flushes at once take different notices (SKIP LOCKED), never the same one."""
    sent = 0
    while True:
        with transaction.atomic():
            notices = list(
                LabeledNotice.objects.filter(project_id=project_id)
                .select_for_update(skip_locked=True)
                .order_by("id")[:LABELED_BATCH_MAX]
            )
            if not notices:
                return sent
            document_ids = list(dict.fromkeys(n.document_id for n in notices))
            LabeledNotice.objects.filter(pk__in=[n.pk for n in notices]).delete()
            finals = annotation_selectors.final_labels_for(document_ids)
            external = dict(Document.objects.filter(pk__in=document_ids).values_list("pk", "external_id"))
            data = {
                "count": len(document_ids),
                "documents": [
                    {"id": pk, "external_id": external.get(pk, ""), "labels": finals[pk].labels}
                    for pk in document_ids
                    if pk in external
                ],
            }
            event_emit(project_id=project_id, event=Event.DOCUMENTS_LABELED, data=data)
            sent += len(document_ids)


# --- Delivering ---------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the receiver recomputes it with its secret and
    refuses a stale timestamp, so a captured delivery cannot be replayed to it later by someone else."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: DOCKET_WEBHOOK_RETRY_SECONDS, doubling each time."""
    return settings.DOCKET_WEBHOOK_RETRY_SECONDS * (2 ** max(attempt - 1, 0))


def delivery_attempt(delivery_id: int) -> str:
    """Send the delivery once; returns its status afterwards. A delivered or failed one is left alone, so the
    task may run twice; a refused target (its address turned private) fails without retrying."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("webhook").filter(pk=delivery_id).first()
        if delivery is None or delivery.status in (Delivery.Status.DELIVERED, Delivery.Status.FAILED):
            return delivery.status if delivery else "missing"
        delivery.attempts += 1
        delivery.last_attempt_at = timezone.now()
        delivery.save(update_fields=["attempts", "last_attempt_at"])
    hook = delivery.webhook
    body = json.dumps({**delivery.payload, "delivery": str(delivery.delivery_id)}, separators=(",", ":")).encode()
    status_code, response_body, error, permanent = None, "", "", False
    try:
        secret = hook.signing_secret()
        address = _delivery_address(hook.url)
        timestamp = int(time.time())
        response = _post_to(
            hook.url,
            address,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "Docket-Webhooks/1",
                "X-Docket-Event": delivery.event,
                "X-Docket-Delivery": str(delivery.delivery_id),
                SIGNATURE_HEADER: signature(secret, timestamp, body),
            },
        )
        status_code, response_body = response.status_code, response.text[:RESPONSE_KEPT]
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except WebhookRejected as rejected:
        error, permanent = str(rejected), True
    except SecretUnreadable as unreadable:  # no key will open it on a later try either: fail, do not retry
        error, permanent = str(unreadable), True
        logger.error("Webhook %s: delivery %s not sent: %s", hook.pk, delivery.pk, unreadable)
    except socket.gaierror as failure:  # the resolver may answer next time: retried like a refused connection
        error = f"The host cannot be found now ({failure.strerror})."
    except requests.RequestException as failure:
        error = f"{type(failure).__name__}: {failure}"[:RESPONSE_KEPT]
    if not error:
        status = Delivery.Status.DELIVERED
    elif permanent or delivery.attempts >= settings.DOCKET_WEBHOOK_MAX_ATTEMPTS:
        status = Delivery.Status.FAILED
    else:
        status = Delivery.Status.RETRYING
    Delivery.objects.filter(pk=delivery.pk).update(
        status=status,
        response_status=status_code,
        response_body=response_body,
        error=error,
        delivered_at=timezone.now() if status == Delivery.Status.DELIVERED else None,
    )
    return status


def _delivery_address(url: str) -> str:
    """The one address a delivery connects to, resolved and checked here. The connection goes to this address
    and the host is not resolved again: a host whose DNS answer changes between the check and the connection
    (DNS rebinding) cannot steer a delivery to the services beside Docket."""
    host, port = _target_host(url)
    addresses = _addresses(host, port)
    if not settings.DOCKET_WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        _refuse_private(host, addresses)
    return addresses[0]


class _PinnedAdapter(HTTPAdapter):
    """Connects to the address given in the URL while TLS still names and verifies the webhook's host (SNI and
    the certificate's host name), as a connection to the host itself would."""

    def __init__(self, host: str):
        self.pinned_host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        kwargs.update(server_hostname=self.pinned_host, assert_hostname=self.pinned_host)
        super().init_poolmanager(*args, **kwargs)


def _post_to(url: str, address: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST to the webhook's URL at `address`. Through an operator's outgoing proxy (HTTPS_PROXY), the proxy
    resolves and connects, as the proxy's own rules decide."""
    timeout = settings.DOCKET_WEBHOOK_TIMEOUT_SECONDS
    if get_environ_proxies(url):
        return requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    with requests.Session() as session:
        session.mount(f"{parts.scheme}://", _PinnedAdapter(parts.hostname or ""))
        return session.post(
            pinned, data=body, headers={**headers, "Host": parts.netloc}, timeout=timeout, allow_redirects=False
        )


def delivery_replay(*, delivery: Delivery, actor: AbstractBaseUser) -> Delivery:
    """Send a logged delivery again, as a new entry with the same event id (receivers deduplicate on it)."""
    with transaction.atomic():
        replay = Delivery.objects.create(
            webhook=delivery.webhook,
            delivery_id=delivery.delivery_id,
            event=delivery.event,
            payload=delivery.payload,
            replay_of=delivery,
            replayed_by=actor,
        )
        audit_record(
            action="webhook.replayed",
            actor=actor,
            project=delivery.webhook.project,
            target=replay,
            after={"of": delivery.pk, "event": delivery.event},
        )
        transaction.on_commit(lambda: _enqueue(replay.pk))
    return replay


def webhook_ping(*, webhook: Webhook, actor: AbstractBaseUser) -> Delivery:
    """A test delivery to one endpoint, sent from the page."""
    payload = _envelope(webhook.project, Event.PING, {"requested_by": actor.get_username()})
    with transaction.atomic():
        delivery = Delivery.objects.create(webhook=webhook, event=Event.PING, payload=payload)
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery
