"""OpenAPI helpers: the key security scheme, the one error shape, and the error responses each view declares."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
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
