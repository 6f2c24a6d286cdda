"""OpenAPI helpers: the key security scheme, the one error shape, the error responses each view declares, and
what the schema says about input that the API refuses (NUL characters, blank text, unknown fields)."""

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from api.errors import error_codes


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "dk_<prefix>_<secret>",
            "description": "A personal token or service-account key, issued on the project's Keys page.",
        }


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable reason, e.g. not_found, scope_missing.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    details = serializers.JSONField(help_text="Field errors, limits, or {} when there is nothing to add.")


ErrorSerializer = inline_serializer("Error", fields={"error": ErrorDetailSerializer()})

_MESSAGES = {
    400: ("invalid", "The request is not valid; see details.", {"texts": ["This field is required."]}),
    401: ("invalid_key", "This API key has been revoked.", {}),
    403: ("scope_missing", "This key lacks the 'write' scope; ask a project admin for a key that has it.", {}),
    404: ("not_found", "No such project, or this key does not cover it.", {}),
    409: ("conflict", "The key dk_1a2b3c4d was already revoked.", {}),
    413: ("too_large", "At most 64 texts per request; split the batch.", {"limit": 64, "received": 100}),
    429: ("throttled", "Request was throttled. Expected available in 12 seconds.", {"retry_after_seconds": 12}),
    503: ("model_not_ready", "Project 3 has no model ready to predict yet; label more documents.", {}),
}
_DESCRIPTIONS = {
    400: "Invalid input",
    401: "No key, or the key is unknown, revoked or expired",
    403: "The key lacks the scope, or the role does not allow this",
    404: "No such object, or not visible to this key",
    409: "Conflicts with the current state",
    413: "Too many items or too long a text in one request",
    429: "Too many requests for this key; retry after Retry-After seconds",
    503: "No model ready",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`; 401, 403 and 429 apply to every endpoint."""
    result = {}
    for status in sorted({401, 403, 429, *statuses}):
        code, message, details = _MESSAGES[status]
        result[status] = OpenApiResponse(
            response=ErrorSerializer,
            description=_DESCRIPTIONS[status],
            examples=[
                OpenApiExample(
                    code,
                    value={"error": {"code": code, "message": message, "details": details}},
                    response_only=True,
                    status_codes=[str(status)],
                )
            ],
        )
    return result


def cursor_page(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The shape of a cursor-paginated list: follow `next` until it is null."""
    return inline_serializer(
        name,
        fields={
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )


PAGE_PARAMETERS = [
    OpenApiParameter(
        "cursor",
        {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9+/=]+$"},
        description="Opaque: take it from a page's `next` or `previous` link; any other value is 400.",
    ),
    OpenApiParameter(
        "page_size", {"type": "integer", "minimum": 1, "maximum": 500}, description="At most 500; default 100."
    ),
]


# --- What the API refuses, said in the schema -----------------------------------------------------------------

# Regex source, not a literal NUL: ECMA and Python read \x00 alike.
NUL_FREE = r"^[^\x00]*$"
NUL_FREE_NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


class TextWithoutNul(OpenApiSerializerFieldExtension):
    """Every text field of a request refuses NUL (PostgreSQL cannot store it; see annotation/untrusted.py), and
    one that trims whitespace and may not be blank refuses whitespace alone: the schema says both."""

    target_class = "rest_framework.fields.CharField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        auto_schema._insert_field_validators(self.target, schema)  # a slug's or colour's own pattern comes first
        if direction != "request" or schema.get("type") != "string" or "pattern" in schema or "format" in schema:
            return schema
        field = self.target
        not_blank = not field.allow_blank and field.trim_whitespace
        schema["pattern"] = NUL_FREE_NOT_BLANK if not_blank else NUL_FREE
        return schema


EXACTLY_ONE_OF: dict[str, list[str]] = {}


def exactly_one_of(*field_names: str):
    """Mark an input serializer whose body must hold exactly one of `field_names` (its validate() enforces it);
    the schema then says so with oneOf, and the body becomes required."""

    def mark(serializer_class):
        EXACTLY_ONE_OF[f"{serializer_class.__name__}Request"] = list(field_names)
        return serializer_class

    return mark


def closed_request_bodies(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Postprocessing hook: request objects refuse unknown fields (api/input.py's JsonInput does), and a body
    that must hold exactly one of several fields is required and is one of a variant per field: each variant
    has that field and not the others, so a generated client gets one typed class per form."""
    components = result.get("components", {}).get("schemas", {})
    for name, component in components.items():
        if name.endswith("Request"):
            _close(component)
    variants = {name: _variants(name, components.pop(name)) for name in EXACTLY_ONE_OF if name in components}
    for forms in variants.values():
        components.update(forms)
    for path in result.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody")
            if not body:
                continue
            for media in body.get("content", {}).values():
                name = media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
                if name in variants:
                    media["schema"] = {"oneOf": [{"$ref": f"#/components/schemas/{form}"} for form in variants[name]]}
                    body["required"] = True
    return result


def _variants(name: str, component: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`PredictInputRequest` with `texts` or `documents` -> PredictInputTextsRequest, PredictInputDocumentsRequest."""
    fields = EXACTLY_ONE_OF[name]
    stem = name.removesuffix("Request")
    forms = {}
    for field in fields:
        form = copy.deepcopy(component)
        form["properties"] = {k: v for k, v in form["properties"].items() if k == field or k not in fields}
        form["required"] = sorted({*form.get("required", []), field})
        form["additionalProperties"] = False
        forms[f"{stem}{field.title()}Request"] = form
    return forms


def _close(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for child in schema.get("properties", {}).values():
        _close(child)
    if isinstance(schema.get("items"), dict):
        _close(schema["items"])


# --- What every answer carries, said in the schema ----------------------------------------------------------------

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: yours if you sent a sane X-Request-ID, else made here. Quote it in reports.",
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {
        "description": "Requests this key may make per period (DOCKET_API_RATE).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the current period.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the oldest counted request leaves the period.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 0}},
    "Server-Timing": {
        "description": (
            "`model;dur=<ms>, app;dur=<ms>`: milliseconds the model itself took, and the whole application "
            "(the model included); the rest is the network and the web server."
        ),
        "schema": {"type": "string", "pattern": r"^model;dur=[0-9.]+(, app;dur=[0-9.]+)?$"},
    },
    "ETag": {
        "description": "Send it back in If-None-Match to hear 304 while nothing changed.",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true`: the stored first answer to an earlier request with this Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Allow": {"description": "The methods this path answers.", "schema": {"type": "string"}},
}

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": (
        "Your id for this request (1 to 255 printable ASCII characters, no spaces). A retry with the same key gets "
        "the first answer again (for 24 hours) instead of running twice; the same key with another path or body "
        "is 422. Keys are your key's (or your account's) own."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[!-~]+$"},
}

# Statuses every operation may answer besides its own, and those of every POST (and body-taking PATCH).
_EXTRA = {
    405: ("method_not_allowed", 'Method "DELETE" not allowed.', {}, "The path does not answer this method"),
    415: ("unsupported_media_type", 'Unsupported media type "text/plain" in request.', {}, "Send application/json"),
    422: (
        "idempotency_mismatch",
        "The Idempotency-Key 'k1' was used for another request (a different path or body); use a new key.",
        {},
        "The Idempotency-Key (or submission_id) was used before for another request",
    ),
    500: ("server_error", "Docket failed to answer this request; quote its X-Request-ID to report it.", {}, "A bug"),
}
_DETAILS: dict[int, dict[str, Any]] = {
    400: {
        "description": "Field name (or `Idempotency-Key`, `non_field_errors`) to its errors; for unknown labels, "
        "`unknown` and `valid` keys.",
        "additionalProperties": {},
    },
    409: {
        "description": "`version_mismatch`: `expected` and `active` versions; `request_in_progress`: "
        "`retry_after_seconds`; otherwise empty.",
        "properties": {
            "expected": {"type": "integer"},
            "active": {"type": "integer", "nullable": True},
            "retry_after_seconds": {"type": "integer"},
        },
    },
    413: {
        "properties": {"limit": {"type": "integer"}, "received": {"type": "integer"}},
        "required": ["limit", "received"],
    },
    429: {"properties": {"retry_after_seconds": {"type": "integer"}}, "required": ["retry_after_seconds"]},
    503: {"properties": {"retry_after_seconds": {"type": "integer"}}, "required": ["retry_after_seconds"]},
}


def _error_component(status: int, codes: list[str]) -> dict[str, Any]:
    details = {"type": "object", **_DETAILS.get(status, {"description": "Empty: nothing to add."})}
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "enum": codes, "description": "Stable, machine-readable reason."},
                    "message": {"type": "string", "description": "What went wrong, for a person."},
                    "details": details,
                },
                "required": ["code", "message", "details"],
            }
        },
        "required": ["error"],
    }


def _headers_of(status: int, operation_id: str) -> tuple[list[str], set[str]]:
    """The headers an answer of `status` to the operation carries, and which of them it always carries."""
    names = ["X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
    required = {"X-Request-ID"} if status == 500 else set(names)
    if status in (409, 429, 503):
        names.append("Retry-After")
        if status != 409:
            required.add("Retry-After")
    if status == 405:
        names.append("Allow")
        required.add("Allow")
    if operation_id == "predict" and status == 200:
        names.append("Server-Timing")
        required.add("Server-Timing")
    if operation_id == "serving_model_retrieve" and status in (200, 304):
        names.append("ETag")
        required.add("ETag")
    return names, required


def complete_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Postprocessing hook: every operation declares every status and header a client sees. Errors are typed by
    status (their `code` values and `details`), POSTs take an Idempotency-Key, 405, 415 and 500 are declared."""
    components = result.setdefault("components", {})
    codes = error_codes()
    schemas = components.setdefault("schemas", {})
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            extra = [405, 500]
            if method in ("post", "patch"):
                extra.append(415)
            if method == "post":
                extra.append(422)
                operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))
                if "409" not in responses:
                    responses["409"] = _error_response(409, "request_in_progress", "The first request is still running")
            for status in extra:
                code, message, details, description = _EXTRA[status]
                responses.setdefault(str(status), _error_response(status, code, description, message, details))
            for status_text, response in responses.items():
                status = int(status_text)
                if status >= 400:
                    name = f"Error{status}"
                    schemas.setdefault(name, _error_component(status, codes.get(status, [])))
                    for media in response.get("content", {}).values():
                        media["schema"] = {"$ref": f"#/components/schemas/{name}"}
                names, required = _headers_of(status, operation.get("operationId", ""))
                if method == "post" and 200 <= status < 300:
                    names.append("Idempotent-Replayed")
                response["headers"] = {name: {**HEADERS[name], "required": name in required} for name in names}
    for generic in ("Error", "ErrorDetail"):  # every error now refers to its status's own component
        schemas.pop(generic, None)
    return result


def _error_response(
    status: int, code: str, description: str, message: str = "", details: dict | None = None
) -> dict[str, Any]:
    example = {"error": {"code": code, "message": message or description, "details": details or {}}}
    return {
        "description": description,
        "content": {"application/json": {"schema": {}, "examples": {code: {"value": example, "summary": code}}}},
    }
