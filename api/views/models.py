"""Model versions (list, detail with metrics, promote, roll back, download as a bundle) and training runs."""

from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.exceptions import ProjectNotFound
from api.auth import access_project
from api.input import JsonInput, QueryFilter
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.annotations import ExportFormatNegotiation
from api.views.base import ApiView
from learning import selectors, services
from learning.models import ModelVersion, TrainingRun

TAGS = ["models"]


class ModelVersionOutput(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ModelVersion.Status.choices)
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices)
    taxonomy_version = serializers.IntegerField()
    label_keys = serializers.ListField(child=serializers.CharField(), help_text="The model's outputs, in order.")
    macro_f1 = serializers.FloatField(allow_null=True, help_text="On the project's evaluation set.")
    micro_f1 = serializers.FloatField(allow_null=True)
    train_label_count = serializers.IntegerField()
    eval_label_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True)


_SCORE = {"type": "number"}
METRICS_SCHEMA = {
    "type": "object",
    "description": "The evaluation on the held-out set ({} before one), and how it compared with the active version.",
    "properties": {
        "n_documents": {"type": "integer"},
        "multi_label": {"type": "boolean"},
        "macro_f1": _SCORE,
        "micro_f1": _SCORE,
        "accuracy": _SCORE,
        "per_label": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"precision": _SCORE, "recall": _SCORE, "f1": _SCORE, "support": {"type": "integer"}},
            },
        },
        "confusion": {
            "type": "object",
            "description": "Single-label: `labels` and `matrix` (rows true, columns predicted); multi-label: per "
            "label `tp`, `fp`, `fn`, `tn`.",
        },
        "comparison": {
            "type": "object",
            "description": "Against the version active when this one finished.",
            "properties": {
                "active_version": {"type": "integer", "nullable": True},
                "comparable": {"type": "boolean"},
                "n_documents": {"type": "integer"},
                "new_macro_f1": _SCORE,
                "active_macro_f1": _SCORE,
                "promoted": {"type": "boolean"},
                "reason": {"type": "string"},
            },
        },
    },
}


@extend_schema_field(METRICS_SCHEMA)
class MetricsField(serializers.JSONField):
    pass


class ModelVersionDetailOutput(ModelVersionOutput):
    metrics = MetricsField(help_text="Per-label and overall evaluation, and the promotion comparison.")
    training_args = serializers.JSONField()
    base_model = serializers.CharField()
    duration_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField()


class TrainingRunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices)
    trigger = serializers.ChoiceField(choices=TrainingRun.Trigger.choices)
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices)
    phase = serializers.CharField(allow_blank=True)
    done = serializers.IntegerField(source="progress_done", help_text="Steps of the current phase done.")
    total = serializers.IntegerField(source="progress_total", help_text="Steps of the current phase; 0 unknown.")
    percent = serializers.SerializerMethodField(help_text="`done` of `total` in percent; null while unknown.")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(help_text="The latest of created, started, last progress, finished.")
    finished = serializers.BooleanField(source="is_finished")
    model_version = serializers.IntegerField(source="model_version.number", allow_null=True, default=None)

    def get_percent(self, run: TrainingRun) -> int | None:
        return round(100 * run.progress_done / run.progress_total) if run.progress_total else None


def _training_runs(project) -> QuerySet[TrainingRun]:
    """The project's runs with `updated_at`: the latest moment the run reported anything."""
    created = F("created_at")
    return (
        TrainingRun.objects.filter(project=project)
        .select_related("model_version")
        .annotate(
            updated_at=Greatest(
                created,
                Coalesce("started_at", created),
                Coalesce("heartbeat_at", created),
                Coalesce("finished_at", created),
            )
        )
    )


def _version(project, number: int) -> ModelVersion:
    version = selectors.model_version_by_number(project, number)
    if version is None:
        raise ProjectNotFound(f"No model version {number} in this project.")
    return version


class ModelVersionListApi(ApiView):
    @extend_schema(
        operation_id="models_list",
        tags=TAGS,
        summary="List model versions",
        description=(
            "Scope `read`; any member. Newest first, cursor-paginated; `status` active marks the serving one."
        ),
        parameters=PAGE_PARAMETERS,
        responses={200: cursor_page("ModelVersionPage", ModelVersionOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        versions = selectors.model_versions(project)
        return paged(request, self, versions, lambda page: ModelVersionOutput(page, many=True).data, ordering="-number")


class ModelVersionDetailApi(ApiView):
    @extend_schema(
        operation_id="models_retrieve",
        tags=TAGS,
        summary="Read a model version with its metrics",
        description="Scope `read`; any member.",
        responses={200: ModelVersionDetailOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, number: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        return Response(ModelVersionDetailOutput(_version(project, number)).data)


class ModelSwitchInput(JsonInput):
    from_version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "The version you expect to be serving now. When another serves, nothing changes and the answer is "
            "409 `version_mismatch`: a retried call never switches twice."
        ),
    )


def _from_version(request: Request) -> int | None:
    serializer = ModelSwitchInput(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data.get("from_version")


class ModelVersionPromoteApi(ApiView):
    @extend_schema(
        operation_id="models_promote",
        tags=TAGS,
        summary="Promote a version to serve",
        description=(
            "Scope `admin`; project admins only. A ready or retired version becomes active; predictions switch "
            "to it without a failed request. A version still training or failed is 409. Send `from_version` "
            "(the version serving now) so that a retry is harmless; promoting the serving version again answers "
            "it unchanged."
        ),
        request=ModelSwitchInput,
        responses={200: ModelVersionOutput, **errors(400, 404, 409)},
        examples=[OpenApiExample("From v3", value={"from_version": 3}, request_only=True)],
    )
    def post(self, request: Request, project_id: int, number: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_models")
        from_version = _from_version(request)
        version = services.model_version_promote(
            version=_version(project, number), actor=request.user, from_version=from_version
        )
        return Response(ModelVersionOutput(version).data)


class ModelVersionRollbackApi(ApiView):
    @extend_schema(
        operation_id="models_rollback",
        tags=TAGS,
        summary="Roll back to the previous version",
        description=(
            "Scope `admin`; project admins only. 409 when no earlier version served. Send `from_version` (the "
            "version serving now): a retry then answers 409 `version_mismatch` instead of going back twice."
        ),
        request=ModelSwitchInput,
        responses={200: ModelVersionOutput, **errors(400, 404, 409)},
        examples=[OpenApiExample("From v3", value={"from_version": 3}, request_only=True)],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_models")
        version = services.model_version_rollback(
            project=project, actor=request.user, from_version=_from_version(request)
        )
        return Response(ModelVersionOutput(version).data)


class ModelBundleApi(ApiView):
    content_negotiation_class = ExportFormatNegotiation  # the zip is sent as it is; only errors are rendered

    @extend_schema(
        operation_id="models_bundle",
        tags=TAGS,
        summary="Download a version as a model bundle",
        description=(
            "Scope `admin`; project admins only. A zip of one directory: the model in SetFit's format "
            "(`SetFitModel.from_pretrained` loads it), `labels.json`, `manifest.json` (taxonomy version, "
            "thresholds) and `SHA256SUMS`; the same as `manage.py export_model`. Score large corpora with it on "
            "Spark (docs/scale.md). 409 when the version is training, failed or its files were pruned."
        ),
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The bundle as a zip"),
            **errors(404, 409),
        },
    )
    def get(self, request: Request, project_id: int, number: int) -> FileResponse:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_models")
        version = services.bundle_version(project=project, number=_version(project, number).number)
        archive = services.model_bundle_zip(version=version, actor=request.user)
        return FileResponse(
            archive,
            as_attachment=True,
            filename=f"{services.bundle_name(version)}.zip",
            content_type="application/zip",
        )


class TrainingRunListApi(ApiView):
    class TrainingRunFilter(QueryFilter):
        updated_after = serializers.DateTimeField(
            required=False, help_text="Runs created, started, progressed or finished after this moment."
        )

    @extend_schema(
        operation_id="training_runs_list",
        tags=TAGS,
        summary="List training runs",
        description="Scope `read`; any member. Every run, newest first, cursor-paginated.",
        parameters=[TrainingRunFilter, *PAGE_PARAMETERS],
        responses={200: cursor_page("TrainingRunPage", TrainingRunOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        filters = self.TrainingRunFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        runs = _training_runs(project)
        if "updated_after" in filters.validated_data:
            runs = runs.filter(updated_at__gt=filters.validated_data["updated_after"])
        return paged(request, self, runs, lambda page: TrainingRunOutput(page, many=True).data, ordering="-id")


class TrainingRunStartApi(ApiView):
    class TrainingRunStartInput(JsonInput):
        max_steps = serializers.IntegerField(
            required=False, min_value=0, max_value=10_000, help_text="Cap on body fine-tuning steps."
        )

    @extend_schema(
        operation_id="training_runs_create",
        tags=TAGS,
        summary="Start a training run",
        description=(
            "Scope `write`; project admins only. Queues a full run (body fine-tuned); a run already waiting "
            "absorbs the request, so the answer may be that run. Poll it for status."
        ),
        request=TrainingRunStartInput,
        responses={202: TrainingRunOutput, **errors(400, 404, 409)},
        examples=[OpenApiExample("Quick run", value={"max_steps": 20}, request_only=True)],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="manage_models")
        serializer = self.TrainingRunStartInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.training_request_now(
            project=project, actor=request.user, max_steps=serializer.validated_data.get("max_steps")
        )
        run = _training_runs(project).get(pk=run.pk)
        return Response(TrainingRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(ApiView):
    @extend_schema(
        operation_id="training_runs_retrieve",
        tags=TAGS,
        summary="Read a training run's status",
        description="Scope `read`; any member. Phase, progress, error, and the version it produced.",
        responses={200: TrainingRunOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, run_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        run = _training_runs(project).filter(pk=run_id).first()
        if run is None:
            raise ProjectNotFound("No such training run in this project.")
        return Response(TrainingRunOutput(run).data)
