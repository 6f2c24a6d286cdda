"""Webhooks: the HTTPS endpoints a project tells of its events, and every delivery with its outcome."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from webhooks import encryption


class Event(models.TextChoices):
    MODEL_PROMOTED = "model.promoted", "A model version was promoted"
    MODEL_ROLLED_BACK = "model.rolled_back", "The serving model was rolled back"
    TAXONOMY_CHANGED = "taxonomy.changed", "The taxonomy changed (a new version)"
    LABELS_EXPORTED = "labels.exported", "Labels were exported"
    DOCUMENTS_LABELED = "documents.labeled", "Documents were labeled (sent in batches)"
    PING = "webhook.ping", "A test delivery sent from the page"


class Webhook(models.Model):
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event names this endpoint receives.")
    description = models.CharField(max_length=200, blank=True)
    # The signing secret as a Fernet token under a key derived from SECRET_KEY (webhooks.encryption): a dump or a
    # backup of the database alone cannot sign a delivery. Read it with signing_secret(), never from here. The
    # secret itself is shown once, when the hook is created.
    secret_token = models.TextField()
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "id"]
        constraints = [models.CheckConstraint(condition=~Q(secret_token=""), name="webhook_has_secret")]

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)})"

    def signing_secret_set(self, secret: str) -> None:
        """Store `secret` encrypted under the current SECRET_KEY (the caller saves)."""
        self.secret_token = encryption.secret_encrypt(secret)

    def signing_secret(self) -> str:
        """The clear signing secret: the one way to read it. A token written under a key now in
        SECRET_KEY_FALLBACKS is stored again under SECRET_KEY, so the old key can be dropped once every hook has
        been used or `manage.py rotate_webhook_secrets` has run. Raises encryption.SecretUnreadable when no
        configured key opens it."""
        secret, stale = encryption.secret_decrypt(self.secret_token)
        if stale:
            token = encryption.secret_encrypt(secret)
            # Only if nobody replaced the token meanwhile: a concurrent rotation wrote an equivalent one.
            Webhook.objects.filter(pk=self.pk, secret_token=self.secret_token).update(secret_token=token)
            self.secret_token = token
        return secret


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    # Receivers deduplicate on this id (X-Docket-Delivery): a retry or a replay of one event keeps its id.
    delivery_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=32, choices=Event.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays")
    replayed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "retrying", "delivered", "failed"]), name="delivery_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook.url}: {self.status}"


class LabeledNotice(models.Model):
    """A document labeled since the last `documents.labeled` delivery; gathered into one batch by a worker."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey("annotation.Document", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "id"], name="labeled_notice_project_idx")]
