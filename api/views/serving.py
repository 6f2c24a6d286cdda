"""Which model serves a project now, for callers that only predict: with an ETag, so polling costs a 304."""

import hashlib

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.services import taxonomy
from api.auth import access_project
from api.models import Scope
from api.schema import errors
from api.views.base import ApiView
from learning import selectors


class ServingModelOutput(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, help_text="The active version; null before the first.")
    taxonomy_version = serializers.IntegerField(help_text="The project's taxonomy version now.")
    model_taxonomy_version = serializers.IntegerField(
        allow_null=True, help_text="The taxonomy version the model was trained on."
    )
    multi_label = serializers.BooleanField()
    labels = serializers.ListField(child=serializers.CharField(), help_text="Today's labels the model speaks for.")
    unmapped_labels = serializers.ListField(
        child=serializers.CharField(), help_text="Labels the model knows that no current label stands for."
    )
    macro_f1 = serializers.FloatField(allow_null=True, help_text="On the project's evaluation set.")
    activated_at = serializers.DateTimeField(allow_null=True)


def _etag(data: dict) -> str:
    moment = data["activated_at"].isoformat() if data["activated_at"] else ""
    parts = f"{data['model_version']}|{moment}|{data['taxonomy_version']}|{data['multi_label']}"
    return '"' + hashlib.sha256(parts.encode()).hexdigest()[:20] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in offered or etag in offered


class ServingModelApi(ApiView):
    @extend_schema(
        operation_id="serving_model_retrieve",
        tags=["predict"],
        summary="Which model serves now",
        description=(
            "Scope `predict`; any member. The active model version and the taxonomy it answers in, as predict "
            "would report them. Send the `ETag` back in `If-None-Match` to hear 304 while nothing changed."
        ),
        parameters=[
            OpenApiParameter(
                "If-None-Match",
                str,
                location=OpenApiParameter.HEADER,
                description="The ETag of an earlier answer; 304 when the serving model and taxonomy are the same.",
            )
        ],
        responses={
            200: ServingModelOutput,
            304: OpenApiResponse(description="Nothing changed since the ETag you sent."),
            **errors(404),
        },
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.PREDICT)
        version = selectors.active_model_version(project)
        keys = version.label_keys if version is not None else []
        current = taxonomy.current_labels(
            project, model_taxonomy_version=version.taxonomy_version if version else None, keys=keys
        )
        data = {
            "model_version": version.number if version else None,
            "taxonomy_version": current.taxonomy_version,
            "model_taxonomy_version": version.taxonomy_version if version else None,
            "multi_label": project.multi_label,
            "labels": current.labels,
            "unmapped_labels": current.unmapped,
            "macro_f1": version.macro_f1 if version else None,
            "activated_at": version.activated_at if version else None,
        }
        etag = _etag(data)
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _matches(request.headers.get("If-None-Match"), etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(ServingModelOutput(data).data, headers=headers)
