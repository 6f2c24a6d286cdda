"""The API's own tables: keys (personal tokens and service-account keys) and the service accounts they act as."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Scope(models.TextChoices):
    PREDICT = "predict", "Predict: classify texts with a project's model"
    READ = "read", "Read: projects, taxonomies, documents, annotations, models"
    WRITE = "write", "Write: add documents and annotations, edit labels, start training"
    ADMIN = "admin", "Admin: project settings, keys, promote and roll back models"


ALL_SCOPES = frozenset(Scope.values)


class ServiceAccount(models.Model):
    """A user that is no person: automation acts as it, so permissions, memberships and audit treat it alike.

    It has no usable password and can never sign in (annotation.sign_in refuses it on every login form); it
    authenticates only with its keys. It belongs to the one project whose admin created it: its name is unique
    there only, and its keys act in that project and nowhere else.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    # Null only for an account from before accounts had a project that no membership could place.
    project = models.ForeignKey(
        "annotation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="service_accounts"
    )
    name = models.SlugField(max_length=100)
    description = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="service_account_name_unique_in_project")
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A secret shown once. Only `prefix` (for lookup) and the SHA-256 of the whole key are stored."""

    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal token"
        SERVICE = "service", "Service-account key"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    # The user the key acts as: its owner (personal) or the service account's user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    projects = models.ManyToManyField("annotation.Project", related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["personal", "service"]), name="api_key_kind_valid"),
            models.CheckConstraint(condition=~Q(scopes=[]), name="api_key_has_scopes"),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("created_at")),
                name="api_key_expires_after_creation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        if self.is_expired():
            return "expired"
        return "active"


class StoredResponse(models.Model):
    """The first answer to a POST sent with an `Idempotency-Key`, kept 24 hours so that a retry gets it again.

    Keys belong to one caller (`owner`: an API key, or a signed-in user): one client never reads another's
    answer, and two clients choosing the same key never meet. `status_code` is null while the first request
    still runs.
    """

    owner = models.CharField(max_length=40)
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is refused, not replayed.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="stored_response_unique_key")]
        indexes = [models.Index(fields=["created_at"], name="stored_response_age_idx")]

    def __str__(self) -> str:
        return f"{self.owner} {self.key}"
