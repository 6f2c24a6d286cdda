"""OpenAPI helpers: the key security scheme, the one error shape, the error responses each view declares, and
what the schema says about input that the API refuses (NUL characters, blank text, unknown fields)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers


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
    that must hold one of several fields is required and says which."""
    components = result.get("components", {}).get("schemas", {})
    for name, component in components.items():
        if name.endswith("Request"):
            _close(component)
        if name in EXACTLY_ONE_OF:
            component["oneOf"] = [{"required": [field]} for field in EXACTLY_ONE_OF[name]]
    for path in result.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody")
            if not body:
                continue
            for media in body.get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.rsplit("/", 1)[-1] in EXACTLY_ONE_OF:
                    body["required"] = True
    return result


def _close(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for child in schema.get("properties", {}).values():
        _close(child)
    if isinstance(schema.get("items"), dict):
        _close(schema["items"])
