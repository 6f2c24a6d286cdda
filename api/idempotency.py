"""`Idempotency-Key` on POSTs: the first answer is stored for 24 hours and a retry with the same key gets it
again instead of running twice; the same key with another request is refused (422).

Keys are scoped to the caller (the API key, or the signed-in user), so no client can read another's answers.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from api.exceptions import IdempotencyMismatch, RequestInProgress
from api.models import ApiKey, StoredResponse

HEADER = "Idempotency-Key"
KEEP_FOR = timedelta(hours=24)
# A first request still marked running after this never finished (its process died; gunicorn's timeout is 60 s):
# a retry runs it again rather than waiting for an answer that will not come.
ABANDONED_AFTER = timedelta(minutes=5)
KEY_PATTERN = r"^[!-~]{1,255}$"  # printable ASCII without spaces, as the schema says
# Answers that say nothing about the request itself are not kept: the retry should be judged afresh.
NOT_STORED = {401, 429}
# Headers a replay repeats; the rest (request id, rate limits) describe the retry, not the first answer.
REPLAYED_HEADERS = ("Location", "Server-Timing", "Retry-After")


@dataclass(frozen=True)
class Replay(Exception):
    """Raised out of the view's checks to answer with the stored response instead of running the view."""

    stored: StoredResponse

    def response(self) -> HttpResponse:
        response = HttpResponse(
            self.stored.body, status=self.stored.status_code, content_type=self.stored.content_type or None
        )
        for name, value in self.stored.headers.items():
            response[name] = value
        response["Idempotent-Replayed"] = "true"
        return response


def owner_of(request: Request) -> str:
    key = request.auth if isinstance(request.auth, ApiKey) else None
    return f"key-{key.pk}" if key is not None else f"user-{request.user.pk}"


def fingerprint_of(request: Request) -> str:
    """The request's method, path and body; a JSON body is compared by content, not by spacing or key order,
    an upload by its fields and files (its body may be larger than Django lets a view read whole)."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.get_full_path().encode()):
        digest.update(part)
        digest.update(b"\0")
    if request.content_type.startswith("multipart/"):
        for name, values in sorted(request.data.lists()):
            for value in values:
                digest.update(name.encode() + b"\0")
                if hasattr(value, "chunks"):
                    for chunk in value.chunks():
                        digest.update(chunk)
                    value.seek(0)
                else:
                    digest.update(str(value).encode())
                digest.update(b"\0")
        return digest.hexdigest()
    try:
        body = request._request.body
    except RawPostDataException:  # a form read by the CSRF check; the API refuses forms with 415 anyway
        body = request.content_type.encode()
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        pass
    digest.update(body)
    return digest.hexdigest()


def claim(request: Request) -> StoredResponse | None:
    """The row this request will store its answer in, or None without the header; raises Replay when a first
    answer is stored, IdempotencyMismatch for another request under the same key, RequestInProgress while the
    first one still runs."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not re.match(KEY_PATTERN, key):
        raise ValidationError({HEADER: ["Give 1 to 255 printable ASCII characters without spaces."]})
    owner, fingerprint, now = owner_of(request), fingerprint_of(request), timezone.now()
    # Answers past their 24 hours go as the next key comes: an indexed range, empty most of the time.
    StoredResponse.objects.filter(created_at__lt=now - KEEP_FOR).delete()
    try:
        with transaction.atomic():
            return StoredResponse.objects.create(owner=owner, key=key, fingerprint=fingerprint, created_at=now)
    except IntegrityError:
        pass
    stored = StoredResponse.objects.get(owner=owner, key=key)
    if stored.fingerprint != fingerprint:
        raise IdempotencyMismatch(
            f"The {HEADER} {key!r} was used for another request (a different path or body); use a new key."
        )
    if stored.status_code is not None:
        raise Replay(stored)
    if stored.created_at > now - ABANDONED_AFTER:
        raise RequestInProgress(f"The first request with the {HEADER} {key!r} is still running; retry shortly.")
    # The first request never finished: this one takes its place.
    StoredResponse.objects.filter(pk=stored.pk).update(created_at=now)
    return stored


def store(stored: StoredResponse, response, *, withhold: tuple[str, ...] = ()) -> None:
    """Keep the first answer (rendered) for replays; forget the claim when the answer should not be replayed.
    Fields in `withhold` (a key's secret) are never kept: Docket stores no secret it has shown."""
    if response.status_code >= 500 or response.status_code in NOT_STORED:
        release(stored)
        return
    if hasattr(response, "render"):
        response.render()
    StoredResponse.objects.filter(pk=stored.pk).update(
        status_code=response.status_code,
        content_type=response.get("Content-Type", ""),
        body=_without(response.content.decode("utf-8"), withhold),
        headers={name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)},
    )


def _without(body: str, fields: tuple[str, ...]) -> str:
    if not fields:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        for field in fields:
            data.pop(field, None)
    return json.dumps(data)


def release(stored: StoredResponse) -> None:
    StoredResponse.objects.filter(pk=stored.pk).delete()
