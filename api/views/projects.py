"""Projects: list what the caller may see, read one, create (staff) and change settings (project admins)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import permissions, selectors
from annotation.exceptions import NotAllowed
from annotation.models import DESCRIPTION_MAX_CHARS, Project
from annotation.services.projects import project_create, project_settings_update
from api.auth import access_project, api_key_of, projects_visible, require_scope
from api.exceptions import Conflict
from api.input import JsonInput
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

TAGS = ["projects"]


class ProgressOutput(serializers.Serializer):
    total = serializers.IntegerField()
    labeled = serializers.IntegerField()
    queued = serializers.IntegerField()
    flagged = serializers.IntegerField()


class ProjectOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    multi_label = serializers.BooleanField()
    taxonomy_version = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField(help_text="The caller's role in the project.")
    created_at = serializers.DateTimeField()
    lease_ttl_seconds = serializers.IntegerField()
    query_strategy = serializers.ChoiceField(choices=Project.QueryStrategy.choices)
    fast_retrain_every = serializers.IntegerField()
    slow_retrain_every = serializers.IntegerField()
    eval_fraction = serializers.FloatField()
    promotion_policy = serializers.ChoiceField(choices=Project.PromotionPolicy.choices)

    def get_taxonomy_version(self, project: Project) -> int | None:
        taxonomy = getattr(project, "taxonomy", None)
        return taxonomy.version if taxonomy is not None else None

    def get_role(self, project: Project) -> str | None:
        return permissions.role_in(self.context["request"].user, project)


class ProjectDetailOutput(ProjectOutput):
    progress = serializers.SerializerMethodField()

    @extend_schema_field(ProgressOutput)
    def get_progress(self, project: Project) -> dict:
        return ProgressOutput(selectors.project_progress(project)).data


class SettingsInput(JsonInput):
    read_only_fields = ("id", "name", "multi_label", "taxonomy_version", "role", "created_at", "progress")
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_CHARS)
    lease_ttl_seconds = serializers.IntegerField(required=False, min_value=30, max_value=24 * 3600)
    query_strategy = serializers.ChoiceField(choices=Project.QueryStrategy.choices, required=False)
    fast_retrain_every = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    slow_retrain_every = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    eval_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=0.5)
    promotion_policy = serializers.ChoiceField(choices=Project.PromotionPolicy.choices, required=False)


class ProjectListApi(ApiView):
    @extend_schema(
        operation_id="projects_list",
        tags=TAGS,
        summary="List projects",
        description=(
            "Scope `read`. The projects you are a member of, narrowed to those the key covers; cursor-paginated "
            "in id order."
        ),
        parameters=PAGE_PARAMETERS,
        responses={200: cursor_page("ProjectPage", ProjectOutput(many=True)), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        projects = projects_visible(request, scope=Scope.READ).select_related("taxonomy")
        return paged(
            request, self, projects, lambda page: ProjectOutput(page, many=True, context={"request": request}).data
        )


class ProjectCreateApi(ApiView):
    class ProjectCreateInput(SettingsInput):
        name = serializers.CharField(max_length=200)
        multi_label = serializers.BooleanField(default=False)

    @extend_schema(
        operation_id="projects_create",
        tags=TAGS,
        summary="Create a project",
        description=(
            "Scope `admin`; Docket staff only. You become the project's admin; a key that creates a project "
            "is extended to cover it."
        ),
        request=ProjectCreateInput,
        responses={201: ProjectDetailOutput, **errors(400, 409)},
        examples=[
            OpenApiExample(
                "Vendor contracts",
                value={"name": "Vendor contracts", "description": "Clauses from DPAs", "multi_label": True},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        require_scope(request, Scope.ADMIN)
        serializer = self.ProjectCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not permissions.can_create_projects(request.user):
            raise NotAllowed("Only Docket staff may create projects.")
        if Project.objects.filter(name=serializer.validated_data["name"]).exists():
            raise Conflict("A project with that name exists already.")
        project = project_create(created_by=request.user, **serializer.validated_data)
        key = api_key_of(request)
        if key is not None:
            key.projects.add(project)
        return Response(ProjectDetailOutput(project, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(ApiView):
    @extend_schema(
        operation_id="projects_retrieve",
        tags=TAGS,
        summary="Read a project",
        description="Scope `read`; any member. Includes progress counts and the taxonomy version.",
        responses={200: ProjectDetailOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        return Response(ProjectDetailOutput(project, context={"request": request}).data)


class ProjectUpdateApi(ApiView):
    @extend_schema(
        operation_id="projects_update",
        tags=TAGS,
        summary="Change project settings",
        description="Scope `admin`; project admins only. Only the fields sent change.",
        request=SettingsInput,
        responses={200: ProjectDetailOutput, **errors(400, 404)},
        examples=[OpenApiExample("Retrain less often", value={"fast_retrain_every": 25}, request_only=True)],
    )
    def patch(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_settings")
        serializer = SettingsInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        project = project_settings_update(actor=request.user, project=project, **serializer.validated_data)
        return Response(ProjectDetailOutput(project, context={"request": request}).data)
