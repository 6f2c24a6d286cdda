"""The one exception handler: every API error leaves as {"error": {"code", "message", "details"}}.

Domain errors from the annotation, learning and API services are mapped to a status here and nowhere else.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response

from annotation.exceptions import (
    DocketError,
    FlagResolved,
    ImportRejected,
    InputRejected,
    InvalidLabels,
    LabelInUse,
    LabelsChanged,
    LastAdmin,
    NotAllowed,
    ProjectNotFound,
    TaxonomyInvalid,
)
from api.exceptions import (
    Conflict,
    IdempotencyMismatch,
    KeyInvalid,
    ModelNotReady,
    RequestInProgress,
    ScopeMissing,
    TooLarge,
    UnknownLabels,
)
from learning.exceptions import ActiveVersionChanged, BundleUnavailable, ModelSwitchRefused, TrainingRefused

server_errors = logging.getLogger("django.request")

# Seconds a client is asked to wait before asking a project without a model again.
MODEL_NOT_READY_RETRY_AFTER = 30

# Domain error -> (status, code). The first matching class wins, so subclasses come before their bases.
DOMAIN_ERRORS: list[tuple[type[Exception], int, str]] = [
    (ProjectNotFound, status.HTTP_404_NOT_FOUND, "not_found"),
    (NotAllowed, status.HTTP_403_FORBIDDEN, "forbidden"),
    (ScopeMissing, status.HTTP_403_FORBIDDEN, "scope_missing"),
    (KeyInvalid, status.HTTP_401_UNAUTHORIZED, "invalid_key"),
    (TooLarge, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large"),
    (Conflict, status.HTTP_409_CONFLICT, "conflict"),
    (IdempotencyMismatch, status.HTTP_422_UNPROCESSABLE_ENTITY, "idempotency_mismatch"),
    (RequestInProgress, status.HTTP_409_CONFLICT, "request_in_progress"),
    (UnknownLabels, status.HTTP_400_BAD_REQUEST, "invalid_labels"),
    (LabelInUse, status.HTTP_409_CONFLICT, "label_in_use"),
    (LabelsChanged, status.HTTP_409_CONFLICT, "labels_changed"),
    (InvalidLabels, status.HTTP_400_BAD_REQUEST, "invalid_labels"),
    (TaxonomyInvalid, status.HTTP_400_BAD_REQUEST, "taxonomy_invalid"),
    (LastAdmin, status.HTTP_409_CONFLICT, "last_admin"),
    (FlagResolved, status.HTTP_409_CONFLICT, "flag_resolved"),
    (ImportRejected, status.HTTP_400_BAD_REQUEST, "import_rejected"),
    (InputRejected, status.HTTP_400_BAD_REQUEST, "invalid"),
    (ModelNotReady, status.HTTP_503_SERVICE_UNAVAILABLE, "model_not_ready"),
    (ActiveVersionChanged, status.HTTP_409_CONFLICT, "version_mismatch"),
    (ModelSwitchRefused, status.HTTP_409_CONFLICT, "model_switch_refused"),
    (TrainingRefused, status.HTTP_409_CONFLICT, "training_refused"),
    (BundleUnavailable, status.HTTP_409_CONFLICT, "bundle_unavailable"),
    # Last: any other error a person can act on is the caller's to fix.
    (DocketError, status.HTTP_400_BAD_REQUEST, "rejected"),
]


# Codes DRF itself gives, by status; with DOMAIN_ERRORS they are every `code` an answer may carry.
FRAMEWORK_ERRORS: dict[int, list[str]] = {
    400: ["invalid", "parse_error"],
    401: ["not_authenticated", "authentication_failed"],
    403: ["permission_denied"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    406: ["not_acceptable"],
    413: ["too_large"],
    415: ["unsupported_media_type"],
    429: ["throttled"],
    500: ["server_error"],
}


def error_codes() -> dict[int, list[str]]:
    """Every error code by HTTP status, for the schema (a generated client can switch on them)."""
    codes = {status_code: list(names) for status_code, names in FRAMEWORK_ERRORS.items()}
    for _, http_status, code in DOMAIN_ERRORS:
        if code not in codes.setdefault(http_status, []):
            codes[http_status].append(code)
    return codes


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def _details_and_headers(exc: Exception, http_status: int) -> tuple[dict[str, Any], dict[str, str]]:
    details: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, TooLarge):
        details = {"limit": exc.limit, "received": exc.received}
    elif isinstance(exc, InputRejected) and exc.where:
        details = {exc.where: [str(exc)]}
    elif isinstance(exc, UnknownLabels):
        details = {"unknown": exc.unknown, "valid": exc.valid}
    elif isinstance(exc, ActiveVersionChanged):
        details = {"expected": exc.expected, "active": exc.active}
    elif isinstance(exc, ModelNotReady):
        details = {"retry_after_seconds": MODEL_NOT_READY_RETRY_AFTER}
        headers["Retry-After"] = str(MODEL_NOT_READY_RETRY_AFTER)
    elif isinstance(exc, RequestInProgress):
        details = {"retry_after_seconds": exc.retry_after}
        headers["Retry-After"] = str(exc.retry_after)
    if http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return details, headers


def exception_handler(exc: Exception, context: dict) -> Response | None:
    for exception_class, http_status, code in DOMAIN_ERRORS:
        if isinstance(exc, exception_class):
            details, headers = _details_and_headers(exc, http_status)
            return Response(error_body(code, str(exc), details), status=http_status, headers=headers)

    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("too_large", "The request body is larger than this server accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    if not isinstance(exc, drf.APIException):
        # A bug. Logged as Django logs one (with the request id), answered in the error shape the schema states.
        request = context.get("request")
        server_errors.error(
            "Internal Server Error: %s", getattr(request, "path", "?"), exc_info=exc, extra={"status_code": 500}
        )
        return Response(
            error_body("server_error", "Docket failed to answer this request; quote its X-Request-ID to report it."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, drf.Throttled):
        exc.wait = max(1, int(exc.wait or 0))  # a throttled answer always says when to come back
        headers["Retry-After"] = str(exc.wait)

    if isinstance(exc, drf.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("invalid", "The request is not valid; see details.", details)
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else exc.default_detail
        details = (
            detail if isinstance(detail, dict) else {"non_field_errors": detail} if isinstance(detail, list) else {}
        )
        if isinstance(exc, drf.Throttled):
            details = {"retry_after_seconds": exc.wait}
        body = error_body(exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code, message, details)
    return Response(body, status=exc.status_code, headers=headers)
