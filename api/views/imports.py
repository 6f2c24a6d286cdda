"""File imports: upload a file in any format Docket reads, then follow the import it queued."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.models import ImportBatch
from annotation.services.imports import ImportOptions, import_upload
from api.auth import access_import_batch, access_project
from api.models import Scope
from api.schema import errors
from api.views.base import ApiView

TAGS = ["imports"]
ERRORS_SHOWN = 100


class ImportBatchOutput(serializers.Serializer):
    id = serializers.IntegerField()
    file_name = serializers.CharField()
    format = serializers.ChoiceField(choices=ImportBatch.Format.choices)
    status = serializers.ChoiceField(choices=ImportBatch.Status.choices)
    rows = serializers.IntegerField(source="rows_seen")
    created = serializers.IntegerField(source="created_count")
    duplicates = serializers.IntegerField(source="duplicate_count")
    rejected = serializers.IntegerField(source="rejected_count")
    annotations = serializers.IntegerField(source="annotation_count")
    error = serializers.CharField()
    row_errors = serializers.SerializerMethodField()

    def get_row_errors(self, batch: ImportBatch) -> list[dict]:
        return [
            {"line": line, "reason": reason}
            for line, reason in batch.row_errors.values_list("line", "reason")[:ERRORS_SHOWN]
        ]


class ImportCreateApi(ApiView):
    parser_classes = [MultiPartParser]

    class ImportCreateInput(serializers.Serializer):
        file = serializers.FileField()
        format = serializers.ChoiceField(choices=ImportBatch.Format.values, required=False, allow_blank=True)
        text_field = serializers.CharField(required=False, default="text")
        id_field = serializers.CharField(required=False, default="id")
        label_field = serializers.CharField(required=False, default="labels", allow_blank=True)

    @extend_schema(
        operation_id="imports_create",
        tags=TAGS,
        summary="Import a file",
        description=(
            "Scope `write`; project admins only. A multipart upload of a file in any format Docket reads: its "
            "CSV, JSONL or text, Label Studio JSON tasks, doccano or Prodigy JSONL, Hugging Face Parquet or a "
            "zipped dataset directory. The format is told from the content unless `format` names it. The file is "
            "imported by a worker; 202 with the queued import, then GET it until it is completed or failed."
        ),
        request={"multipart/form-data": ImportCreateInput},
        responses={202: ImportBatchOutput, **errors(400, 404)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="import")
        # A form field sent twice would otherwise be read as its last value, silently: say so instead.
        repeated = sorted(name for name in request.data if len(request.data.getlist(name)) > 1)
        if repeated:
            raise serializers.ValidationError({name: ["Give this field once."] for name in repeated})
        data = self.ImportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        options = ImportOptions(
            text_field=values["text_field"],
            id_field=values["id_field"],
            label_field=values["label_field"] or None,
            format=values.get("format") or None,
        )
        batch = import_upload(project=project, uploaded=values["file"], options=options, user=request.user)
        return Response(ImportBatchOutput(batch).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(ApiView):
    @extend_schema(
        operation_id="imports_read",
        tags=TAGS,
        summary="Follow an import",
        description="Scope `read`; project admins only. Counts, status, the reason a failed import gives and the "
        f"first {ERRORS_SHOWN} refused rows with their line numbers.",
        responses={200: ImportBatchOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, batch_id: int) -> Response:
        batch = access_import_batch(request, project_id, batch_id, scope=Scope.READ)
        return Response(ImportBatchOutput(batch).data)
