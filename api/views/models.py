"""Model versions (list, detail with metrics, promote, roll back) and training runs (start, status)."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.exceptions import ProjectNotFound
from api.auth import access_project
from api.input import JsonInput
from api.models import Scope
from api.schema import errors
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


class ModelVersionDetailOutput(ModelVersionOutput):
    metrics = serializers.JSONField(help_text="Per-label and overall evaluation, and the promotion comparison.")
    training_args = serializers.JSONField()
    base_model = serializers.CharField()
    duration_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField()


class TrainingRunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices)
    trigger = serializers.ChoiceField(choices=TrainingRun.Trigger.choices)
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices)
    phase = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    finished = serializers.BooleanField()
    model_version = serializers.IntegerField(allow_null=True)


def _version(project, number: int) -> ModelVersion:
    version = selectors.model_version_by_number(project, number)
    if version is None:
        raise ProjectNotFound(f"No model version {number} in this project.")
    return version


class ModelVersionListApi(APIView):
    @extend_schema(
        operation_id="models_list",
        tags=TAGS,
        summary="List model versions",
        description="Scope `read`; any member. Newest first; `status` active marks the serving one.",
        responses={200: ModelVersionOutput(many=True), **errors(404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        return Response(ModelVersionOutput(selectors.model_versions(project), many=True).data)


class ModelVersionDetailApi(APIView):
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


class ModelVersionPromoteApi(APIView):
    @extend_schema(
        operation_id="models_promote",
        tags=TAGS,
        summary="Promote a version to serve",
        description=(
            "Scope `admin`; project admins only. A ready or retired version becomes active; predictions switch "
            "to it without a failed request. A version still training or failed is 409."
        ),
        request=None,
        responses={200: ModelVersionOutput, **errors(404, 409)},
    )
    def post(self, request: Request, project_id: int, number: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_models")
        version = services.model_version_promote(version=_version(project, number), actor=request.user)
        return Response(ModelVersionOutput(version).data)


class ModelVersionRollbackApi(APIView):
    @extend_schema(
        operation_id="models_rollback",
        tags=TAGS,
        summary="Roll back to the previous version",
        description="Scope `admin`; project admins only. 409 when no earlier version served.",
        request=None,
        responses={200: ModelVersionOutput, **errors(404, 409)},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_models")
        version = services.model_version_rollback(project=project, actor=request.user)
        return Response(ModelVersionOutput(version).data)


class TrainingRunListApi(APIView):
    @extend_schema(
        operation_id="training_runs_list",
        tags=TAGS,
        summary="List training runs",
        description="Scope `read`; any member. The latest 20, newest first.",
        responses={200: TrainingRunOutput(many=True), **errors(404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        runs = [selectors.training_run_status(run) for run in selectors.training_runs(project)]
        return Response(TrainingRunOutput(runs, many=True).data)


class TrainingRunStartApi(APIView):
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
        return Response(TrainingRunOutput(selectors.training_run_status(run)).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    @extend_schema(
        operation_id="training_runs_retrieve",
        tags=TAGS,
        summary="Read a training run's status",
        description="Scope `read`; any member. Phase, progress, error, and the version it produced.",
        responses={200: TrainingRunOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, run_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        # learning.selectors lists runs but offers no single run; this read is scoped to the project all the same.
        run = TrainingRun.objects.filter(project=project, pk=run_id).select_related("model_version").first()
        if run is None:
            raise ProjectNotFound("No such training run in this project.")
        return Response(TrainingRunOutput(selectors.training_run_status(run)).data)
