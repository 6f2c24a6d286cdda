"""Writes the API needs: keys and service accounts, and thin adapters onto the annotation services."""

import hashlib
import hmac
import io
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify

from annotation import permissions, statements
from annotation.exceptions import ImportRejected, InvalidLabels, NotAllowed
from annotation.models import Annotation, Document, ImportBatch, Label, Membership, Project
from annotation.services.audit import audit_record
from annotation.services.imports import ImportOptions, content_hash, import_batch_create, import_batch_run
from annotation.services.labeling import SubmissionResult, annotation_submit
from annotation.services.retries import retrying_deadlocks
from api.exceptions import Conflict, IdempotencyMismatch, KeyInvalid, UnknownLabels
from api.models import ALL_SCOPES, ApiKey, ServiceAccount

TOKEN_PREFIX = "dk"
# Writing last_used_at on every request would turn reads into writes; once a minute says enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


# --- Keys ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret. The secret exists only here: show it once, it cannot be recovered."""

    key: ApiKey
    token: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def _key_summary(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "kind": key.kind,
        "prefix": key.prefix,
        "user": key.user.get_username(),
        "scopes": key.scopes,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


def service_account_for(*, name: str, actor: AbstractBaseUser, project: Project) -> ServiceAccount:
    """The project's service account called `name`, created (a user with no usable password) if it does not exist.

    Names are the project's own: another project's account of the same name is a different account, and the
    username carries the project (svc-p<id>-<name>) so the audit log never confuses the two.
    """
    slug = slugify(name)[:90]
    if not slug:
        raise ValidationError({"service_account": "Give the service account a name of letters, digits or dashes."})
    account = ServiceAccount.objects.select_related("user").filter(project=project, name=slug).first()
    if account is not None:
        return account
    User = get_user_model()
    username = f"svc-p{project.pk}-{slug}"[:150]
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"service_account": f"The name {username} is taken by another account."})
    user = User(username=username)
    user.set_unusable_password()
    user.save()
    account = ServiceAccount(user=user, project=project, name=slug, created_by=actor)
    account.full_clean()
    account.save()
    audit_record(
        action="service_account.created", actor=actor, project=project, target=account, after={"name": username}
    )
    return account


@transaction.atomic
def api_key_create(
    *,
    actor: AbstractBaseUser,
    projects: Iterable[Project],
    name: str,
    scopes: Iterable[str],
    kind: str = ApiKey.Kind.PERSONAL,
    expires_at: datetime | None = None,
    service_account: str = "",
    role: str = Membership.Role.REVIEWER,
    scopes_allowed: Iterable[str] | None = None,
) -> IssuedKey:
    """Issue a key limited to `projects` and `scopes`.

    A personal token acts as `actor`, who must be a member of every project, with scopes their role allows
    there (reviewers: predict and read). A service key acts as the named service account, which becomes a
    member of each project with `role` if it is not one already; issuing one takes a project admin. A key
    created with a key (`scopes_allowed`) can never hold more scopes than the key that made it.
    """
    projects = list(projects)
    scopes = sorted(set(scopes))
    if not projects:
        raise ValidationError({"projects": "A key must be limited to at least one project."})
    unknown = set(scopes) - ALL_SCOPES
    if not scopes or unknown:
        raise ValidationError({"scopes": f"Choose one or more of: {', '.join(sorted(ALL_SCOPES))}."})
    if kind == ApiKey.Kind.SERVICE and len(projects) != 1:
        raise ValidationError(
            {"projects": "A service key acts as a service account of one project; issue one key per project."}
        )
    if kind == ApiKey.Kind.PERSONAL and permissions.is_service_account(actor):
        raise NotAllowed("Service accounts use the keys their project's admins issue; they hold no personal tokens.")
    for project in projects:
        if kind == ApiKey.Kind.PERSONAL:
            # Any member may hold a personal token, with the scopes their role allows.
            allowed = permissions.personal_token_scopes(actor, project)
            if not allowed:
                raise NotAllowed(f"You are not a member of {project.name}.")
            if not set(scopes) <= allowed:
                raise ValidationError(
                    {"scopes": f"Your role in {project.name} allows only: {', '.join(sorted(allowed))}."}
                )
        elif not permissions.can(actor, project, "manage_keys"):
            raise NotAllowed(f"Only a project admin may issue keys for {project.name}.")
    if scopes_allowed is not None and not set(scopes) <= set(scopes_allowed):
        raise NotAllowed("A key cannot issue a key with scopes it does not hold itself.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must lie in the future."})
    if kind == ApiKey.Kind.SERVICE:
        if role not in Membership.Role.values:
            raise ValidationError({"role": "Role must be admin or reviewer."})
        user = service_account_for(name=service_account or name, actor=actor, project=projects[0]).user
        for project in projects:
            _, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
            if created:
                audit_record(
                    action="membership.created", actor=actor, project=project, target=user, after={"role": role}
                )
    elif kind == ApiKey.Kind.PERSONAL:
        user = actor
    else:
        raise ValidationError({"kind": "Kind must be personal or service."})

    prefix, token = _new_token()
    while ApiKey.objects.filter(prefix=prefix).exists():
        prefix, token = _new_token()
    key = ApiKey(
        kind=kind,
        name=name.strip()[:100],
        user=user,
        prefix=prefix,
        secret_hash=_hash(token),
        scopes=scopes,
        created_by=actor,
        expires_at=expires_at,
    )
    key.full_clean()
    key.save()
    key.projects.set(projects)
    for project in projects:
        audit_record(action="api_key.created", actor=actor, project=project, target=key, after=_key_summary(key))
    return IssuedKey(key=key, token=token)


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: AbstractBaseUser) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise Conflict(f"The key {key.prefix} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC.")
    key.revoked_at = timezone.now()
    key.revoked_by = actor
    key.save(update_fields=["revoked_at", "revoked_by"])
    for project in key.projects.all():
        audit_record(action="api_key.revoked", actor=actor, project=project, target=key, after=_key_summary(key))
    return key


def _key_by_prefix(*, prefix: str) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(prefix=prefix)[:1]


def api_key_authenticate(*, token: str) -> ApiKey:
    """The live key for `token`, or KeyInvalid. Records the use (at most once a minute per key)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise KeyInvalid("That is not a Docket API key.")
    # Every request asks this: compiled once, only the prefix changes (annotation.statements).
    found = statements.prepared_objects(
        "api.key_by_prefix",
        ApiKey,
        _key_by_prefix,
        related=("user", "user__service_account"),
        prefix=statements.Text(parts[1]),
    )
    key = found[0] if found else None
    # Compare even for an unknown prefix, so timing does not say which prefixes exist.
    expected = key.secret_hash if key is not None else "0" * 64
    if not hmac.compare_digest(expected, _hash(token)) or key is None:
        raise KeyInvalid("Unknown API key.")
    now = timezone.now()
    if key.revoked_at is not None:
        raise KeyInvalid("This API key has been revoked.")
    if key.is_expired(now):
        raise KeyInvalid("This API key has expired.")
    if not key.user.is_active:
        raise KeyInvalid("The account behind this API key is disabled.")
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


# --- Projects, documents, annotations ------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentOutcome:
    index: int
    status: str  # created, duplicate or rejected
    id: int | None = None
    external_id: str = ""
    reason: str = ""


def documents_bulk_create(
    *, actor: AbstractBaseUser, project: Project, items: list[dict[str, Any]]
) -> tuple[ImportBatch, list[DocumentOutcome]]:
    """Add documents through the import pipeline (same checks, dedup by content hash, audit) as one batch.

    Returns the batch and one outcome per item, in order: created, duplicate (of an existing document, or of
    an earlier item) or rejected with the reason.
    """
    lines = []
    for item in items:
        record = {"text": item["text"], "id": item.get("external_id", "")}
        if item.get("metadata"):
            record["metadata"] = item["metadata"]
        if item.get("labels"):
            record["labels"] = item["labels"]
        lines.append(json.dumps(record, ensure_ascii=False))
    stream = io.BytesIO(("\n".join(lines) + "\n").encode("utf-8"))
    batch = import_batch_create(
        project=project,
        file_name=f"api-{timezone.now():%Y%m%dT%H%M%S}.jsonl",
        options=ImportOptions(format="jsonl"),
        user=actor,
    )
    try:
        import_batch_run(batch=batch, stream=stream)
    except ImportRejected:
        pass  # nothing was usable: the batch is failed and its row errors give each item's reason
    return batch, _outcomes(batch, items)


def _outcomes(batch: ImportBatch, items: list[dict[str, Any]]) -> list[DocumentOutcome]:
    reasons = dict(batch.row_errors.values_list("line", "reason"))
    digests = [content_hash(item["text"]) for item in items]
    documents = {
        digest: (pk, batch_id)
        for digest, pk, batch_id in Document.objects.filter(
            project=batch.project, content_hash__in=digests
        ).values_list("content_hash", "pk", "import_batch_id")
    }
    seen: set[str] = set()
    outcomes = []
    for index, digest in enumerate(digests):
        external_id = items[index].get("external_id", "")  # the caller's own, echoed whatever became of it
        if index + 1 in reasons or digest not in documents:
            outcomes.append(
                DocumentOutcome(
                    index=index, status="rejected", external_id=external_id, reason=reasons.get(index + 1, "")
                )
            )
            continue
        pk, batch_id = documents[digest]
        created = batch_id == batch.pk and digest not in seen
        seen.add(digest)
        outcomes.append(
            DocumentOutcome(index=index, status="created" if created else "duplicate", id=pk, external_id=external_id)
        )
    return outcomes


@retrying_deadlocks  # around the transaction: a deadlock's victim is rolled back whole, then made again
@transaction.atomic
def annotation_create(
    *,
    actor: AbstractBaseUser,
    document: Document,
    label_keys: list[str],
    submission_id: uuid.UUID | None = None,
) -> SubmissionResult:
    """Store automation's labels through the reviewers' own use case, then mark them as coming from the API.

    Like a reviewer's answer it is one annotation per account and document (a second call edits it), a retried
    `submission_id` is a replay, and the learning loop hears of the change.
    """
    if submission_id is not None:
        earlier = Annotation.objects.filter(submission_id=submission_id).first()
        if earlier is not None and (earlier.document_id != document.pk or earlier.reviewer_id != actor.pk):
            raise IdempotencyMismatch(
                f"The submission_id {submission_id} was used for another document; choose one per submission."
            )
    try:
        result = annotation_submit(
            reviewer=actor, document=document, label_keys=label_keys, submission_id=submission_id
        )
    except InvalidLabels as error:
        raise _with_valid_keys(error, document.project, label_keys) from error
    if result.replayed and set(result.label_keys) != {key.strip() for key in label_keys}:
        raise IdempotencyMismatch(
            f"The submission_id {submission_id} was stored with the labels {', '.join(result.label_keys)}; "
            "choose a new one to change them."
        )
    if result.created:
        # annotation_submit records every answer as a reviewer's; provenance matters for exports and metrics.
        Annotation.objects.filter(pk=result.annotation.pk).update(source=Annotation.Source.API)
        result.annotation.source = Annotation.Source.API
    return result


def _with_valid_keys(error: InvalidLabels, project: Project, label_keys: list[str]) -> Exception:
    """The labeling service's error about unknown keys, naming the keys that would do (automation has no page
    to reload); other label errors (a changed taxonomy, the wrong count) as they are."""
    if type(error) is not InvalidLabels:
        return error
    valid = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False)
        .order_by("order", "id")
        .values_list("key", flat=True)
    )
    unknown = sorted({key.strip() for key in label_keys} - set(valid))
    if not unknown:
        return error
    return UnknownLabels(
        f"Not a current label of {project.name}: {', '.join(unknown)}. Use one of: {', '.join(valid)}.",
        unknown=unknown,
        valid=valid,
    )
