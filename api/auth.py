"""Who is calling and what they may touch: key authentication, per-key throttling, project access with scopes.

Roles are decided by annotation/permissions.py as for every page; a key only narrows them further, to its
scopes and its projects. A browser session (the browsable API) carries every scope of its user's roles.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Exists, OuterRef, QuerySet
from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request
from rest_framework.settings import api_settings

from annotation import permissions
from annotation.exceptions import NotAllowed, ProjectNotFound
from annotation.models import Document, ImportBatch, Project
from api import rate_log, services
from api.exceptions import KeyInvalid, ScopeMissing
from api.models import ApiKey

BEARER = b"bearer"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer dk_<prefix>_<secret>`; a request without that header falls through to sessions."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != BEARER:
            return None
        if len(header) != 2:
            raise KeyInvalid("Send exactly one key: Authorization: Bearer <key>.")
        failures = InvalidKeyFailures(request)
        failures.refuse_when_exceeded()
        try:
            key = services.api_key_authenticate(token=header[1].decode("latin-1"))
        except KeyInvalid:
            failures.count_one()
            raise
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class InvalidKeyFailures:
    """Invalid keys sent from one address, counted per fixed window in the shared cache.

    Past DOCKET_API_KEY_FAILURES (e.g. 20/min) every further request with a key from that address gets 429 with
    Retry-After until the window ends, before its key is even looked up: an address busy guessing learns nothing
    more. Valid keys from other addresses are untouched; each key also has its own budget (ApiKeyRateThrottle).
    """

    def __init__(self, request: Request) -> None:
        self.limit, self.window = throttling.SimpleRateThrottle.parse_rate(None, settings.DOCKET_API_KEY_FAILURES)
        now = time.time()
        bucket = int(now // self.window)
        self.retry_after = max(1, int((bucket + 1) * self.window - now))
        address = request.META.get("REMOTE_ADDR", "") or "unknown"
        self.cache_key = f"docket:api-key-failures:{address}:{bucket}"

    def refuse_when_exceeded(self) -> None:
        if (cache.get(self.cache_key) or 0) >= self.limit:
            raise exceptions.Throttled(
                wait=self.retry_after,
                detail=f"Too many invalid API keys from your address; try again in {self.retry_after} seconds.",
            )

    def count_one(self) -> None:
        if cache.add(self.cache_key, 1, timeout=self.window + 1):
            return
        try:
            cache.incr(self.cache_key)
        except ValueError:  # expired between add and incr: this failure starts the next count
            cache.add(self.cache_key, 1, timeout=self.window + 1)


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """One budget per key (per user for a browser session): a sliding window counted in the default cache, in
    one round trip when that is Redis (api/rate_log.py)."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        # Read on every request, so the rate follows settings changes (and tests' override_settings).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def __init__(self) -> None:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def allow_request(self, request: Request, view) -> bool:
        self.period = self._requests_in_period(request, record=True)
        request.rate_limit = self._state()
        return self.period.allowed

    def peek(self, request: Request) -> "RateLimit":
        """The budget as it stands, counting nothing: for answers given before the throttle ran (a bad key)."""
        self.period = self._requests_in_period(request, record=False)
        return self._state()

    def _requests_in_period(self, request: Request, *, record: bool) -> rate_log.Period:
        self.now = self.timer()
        return rate_log.requests_in_period(
            self.cache,
            self.get_cache_key(request, None),
            now=self.now,
            period=self.duration,
            limit=self.num_requests,
            record=record,
        )

    def wait(self) -> float:
        """Seconds until one more request fits. DRF's own answer is None (no Retry-After) when the log holds
        more than the rate allows, as it does right after the rate was lowered."""
        return self._seconds_to_free_slot()

    def _seconds_to_free_slot(self) -> float:
        if self.period.nth_newest is None:
            return 0.0
        # Once the num_requests-th newest request leaves the period, a slot is free.
        return max(self.period.nth_newest + self.duration - self.now, 0.0)

    def _state(self) -> "RateLimit":
        remaining = max(self.num_requests - self.period.count, 0)
        if remaining == 0:
            reset = self._seconds_to_free_slot()
        elif self.period.oldest is not None:
            reset = self.period.oldest + self.duration - self.now
        else:
            reset = self.duration
        return RateLimit(limit=self.num_requests, remaining=remaining, reset=max(1, math.ceil(reset)))

    def get_cache_key(self, request: Request, view) -> str:
        if not hasattr(request, "_user"):
            # Authentication failed (a bad key): reading request.user would try, and fail, again.
            return self.cache_format % {"scope": self.scope, "ident": f"ip-{self.get_ident(request)}"}
        key = api_key_of(request)
        if key is not None:
            ident = f"key-{key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


@dataclass(frozen=True)
class RateLimit:
    """What the RateLimit-Limit, -Remaining and -Reset headers say: the key's budget and seconds to its reset."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


def rate_limit_of(request: Request) -> RateLimit:
    state = getattr(request, "rate_limit", None)
    return state if state is not None else ApiKeyRateThrottle().peek(request)


def api_key_of(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def require_scope(request: Request, scope: str) -> None:
    key = api_key_of(request)
    if key is not None and scope not in key.scopes:
        raise ScopeMissing(f"This key lacks the '{scope}' scope; ask a project admin for a key that has it.")


def key_project_ids(request: Request) -> set[int] | None:
    """Projects the key is limited to, or None for a session (no limit beyond the user's memberships)."""
    key = api_key_of(request)
    if key is None:
        return None
    if not hasattr(key, "_project_ids"):
        key._project_ids = set(key.projects.values_list("pk", flat=True))
    return key._project_ids


def _check_key(request: Request, project_id: int, scope: str) -> None:
    require_scope(request, scope)
    limited_to = key_project_ids(request)
    if limited_to is not None and project_id not in limited_to:
        raise ProjectNotFound("No such project, or this key does not cover it.")
    if not acts_in_own_project(request, project_id):
        raise ProjectNotFound("No such project, or this key does not cover it.")


def acts_in_own_project(request: Request, project_id: int) -> bool:
    """A service account's key acts only in the project the account belongs to, whatever memberships or key
    projects older data may list: one project's automation never acts as another project's."""
    key = api_key_of(request)
    account = getattr(key.user, "service_account", None) if key is not None else None
    if account is None:
        # A session or personal token: a service account reached here some other way is refused too.
        return not permissions.is_service_account(request.user)
    return account.project_id == project_id


def access_project(
    request: Request,
    project_id: int,
    *,
    scope: str,
    action: str = "view",
    columns: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    compiled_as: str | None = None,
) -> Project:
    """The project if the caller's key has `scope`, covers the project, and the user's role allows `action`.

    A project outside the key's list is "not found", exactly like a project the user is not a member of. Whether
    the key covers it is read with the project, role and any `columns` in one query. With `compiled_as`,
    `columns` is a function giving the same expressions every time, and that query is compiled once
    (annotation.statements): only the project, user and key ids change between requests.
    """
    key = api_key_of(request)
    if compiled_as is None or key is None or hasattr(key, "_project_ids"):
        columns = columns() if callable(columns) else columns
    if key is None or hasattr(key, "_project_ids"):
        _check_key(request, project_id, scope)
        return permissions.access_project_by_id(request.user, project_id, action=action, columns=columns)
    require_scope(request, scope)
    if not acts_in_own_project(request, project_id):
        raise ProjectNotFound("No such project, or this key does not cover it.")
    try:
        if compiled_as is not None:
            project = permissions.access_project_by_id(
                request.user,
                project_id,
                action=action,
                columns=partial(_with_key_covers, columns),
                compiled_as=compiled_as,
                column_values={"key_id": key.pk},
            )
        else:
            project = permissions.access_project_by_id(
                request.user, project_id, action=action, columns=_with_key_covers(lambda: columns or {}, key_id=key.pk)
            )
    except NotAllowed:
        # A role without the action in a project the key does not cover: "not found", as before the role.
        _check_key(request, project_id, scope)
        raise
    if not project.key_covers:
        raise ProjectNotFound("No such project, or this key does not cover it.")
    return project


def _with_key_covers(columns: Callable[[], dict[str, Any]], *, key_id: int) -> dict[str, Any]:
    covers = ApiKey.projects.through.objects.filter(apikey_id=key_id, project_id=OuterRef("pk"))
    return {**columns(), "key_covers": Exists(covers)}


def access_document(
    request: Request, project_id: int, document_id: int, *, scope: str, action: str = "view"
) -> Document:
    _check_key(request, project_id, scope)
    return permissions.access_document_by_id(request.user, project_id, document_id, action=action)


def access_import_batch(request: Request, project_id: int, batch_id: int, *, scope: str) -> ImportBatch:
    _check_key(request, project_id, scope)
    return permissions.access_import_batch_by_id(request.user, project_id, batch_id, action="import")


def projects_visible(request: Request, *, scope: str) -> QuerySet[Project]:
    """The projects a list may show: the user's, narrowed to the key's."""
    require_scope(request, scope)
    projects = permissions.projects_for(request.user)
    limited_to = key_project_ids(request)
    if limited_to is not None:
        projects = projects.filter(pk__in=limited_to)
    account = getattr(request.user, "service_account", None) if request.user.is_authenticated else None
    if account is not None:
        projects = projects.filter(pk=account.project_id)
    return projects.distinct()
