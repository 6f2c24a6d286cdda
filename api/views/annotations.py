"""Annotations: list (leads and admins see all, reviewers their own), export the project, create from automation."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import permissions, selectors
from annotation.models import Annotation
from annotation.services.exports import EXPORT_FORMATS, documents_export, export_content_type, export_file_name
from api import services
from api.auth import access_document, access_project
from api.input import JsonInput, QueryFilter
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

TAGS = ["annotations"]


class AnnotationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    document = serializers.IntegerField(source="document_id")
    reviewer = serializers.CharField(source="reviewer.username", allow_null=True, default=None)
    source = serializers.ChoiceField(choices=Annotation.Source.choices)
    labels = serializers.ListField(child=serializers.CharField(), source="label_keys")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    model_version_shown = serializers.IntegerField(allow_null=True)
    submission_id = serializers.UUIDField(allow_null=True)


def _with_label_keys(annotations: list[Annotation]) -> list[Annotation]:
    keys = selectors.annotation_label_keys(a.pk for a in annotations)
    for annotation in annotations:
        annotation.label_keys = keys.get(annotation.pk, [])
    return annotations


class AnnotationListApi(ApiView):
    class AnnotationFilter(QueryFilter):
        document = serializers.IntegerField(required=False, min_value=1)
        source = serializers.ChoiceField(choices=Annotation.Source.choices, required=False)
        updated_after = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="annotations_list",
        tags=TAGS,
        summary="List annotations",
        description=(
            "Scope `read`. Leads and admins see every annotation; reviewers see their own. Cursor-paginated in "
            "id order; `updated_after` fetches what changed since a previous sync."
        ),
        parameters=[
            AnnotationFilter,
            *PAGE_PARAMETERS,
        ],
        responses={200: cursor_page("AnnotationPage", AnnotationOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ, action="export_own")
        filters = self.AnnotationFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        annotations = Annotation.objects.filter(document__project=project).select_related("reviewer")
        if not permissions.can(request.user, project, "view_answers"):
            annotations = annotations.filter(reviewer=request.user)  # blind review: only their own
        if "document" in filters.validated_data:
            annotations = annotations.filter(document_id=filters.validated_data["document"])
        if "source" in filters.validated_data:
            annotations = annotations.filter(source=filters.validated_data["source"])
        if "updated_after" in filters.validated_data:
            annotations = annotations.filter(updated_at__gt=filters.validated_data["updated_after"])
        return paged(request, self, annotations, lambda page: AnnotationOutput(_with_label_keys(page), many=True).data)


class ExportFormatNegotiation(DefaultContentNegotiation):
    """`?format=` on the export names the file format (jsonl or csv), as documented, not one of DRF's renderers:
    DRF would read it as a renderer name and answer 404 for csv. The file itself is streamed as it is; only
    error bodies are rendered, always as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class AnnotationExportApi(ApiView):
    content_negotiation_class = ExportFormatNegotiation

    @extend_schema(
        operation_id="annotations_export",
        tags=TAGS,
        summary="Export the labeled project",
        description=(
            "Scope `read`; project admins only. Streams every document with its final labels, annotations and "
            "the active model's prediction, as Docket's JSON Lines (default) or CSV, Label Studio JSON tasks, "
            "doccano or Prodigy JSONL, Hugging Face Parquet, or a zipped dataset directory (`save_to_disk`); "
            "the output re-imports unchanged."
        ),
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), description="the file format")],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object a line"),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV with a header row"),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.STR, description="Label Studio tasks"),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY, description="Parquet"),
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="save_to_disk, zipped"),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse:
        project = access_project(request, project_id, scope=Scope.READ, action="export")
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise serializers.ValidationError({"format": [f"Use one of: {', '.join(EXPORT_FORMATS)}."]})
        stream = documents_export(project=project, fmt=fmt, actor=request.user)
        response = StreamingHttpResponse(stream, content_type=export_content_type(fmt))
        response["Content-Disposition"] = f'attachment; filename="{export_file_name(project, fmt)}"'
        return response


class AnnotationCreateApi(ApiView):
    class AnnotationCreateInput(JsonInput):
        document = serializers.IntegerField(min_value=1)
        labels = serializers.ListField(child=serializers.SlugField(max_length=64), min_length=1, max_length=1000)
        submission_id = serializers.UUIDField(
            required=False, allow_null=True, help_text="Choose one per submission; a retry then stores nothing new."
        )

    @extend_schema(
        operation_id="annotations_create",
        tags=TAGS,
        summary="Annotate a document",
        description=(
            "Scope `write`; reviewers and admins. Stored with source `api`, attributed to the key's account, "
            "one per account and document: 201 for a new annotation, 200 when it replaces the account's earlier "
            "labels or replays a `submission_id` already stored."
        ),
        request=AnnotationCreateInput,
        responses={201: AnnotationOutput, 200: AnnotationOutput, **errors(400, 404)},
        examples=[
            OpenApiExample(
                "Third-party sharing",
                value={
                    "document": 1042,
                    "labels": ["third_party"],
                    "submission_id": "5f0c8a4e-2b7e-4f7e-9b1c-1d2e3f4a5b6c",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        access_project(request, project_id, scope=Scope.WRITE, action="label")
        serializer = self.AnnotationCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        document = access_document(request, project_id, data["document"], scope=Scope.WRITE, action="label")
        result = services.annotation_create(
            actor=request.user,
            document=document,
            label_keys=data["labels"],
            submission_id=data.get("submission_id"),
        )
        output = AnnotationOutput(_with_label_keys([result.annotation])[0]).data
        return Response(output, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
