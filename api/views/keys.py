"""API keys of a project: list, issue (the secret is in this one response only), revoke."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.exceptions import ProjectNotFound
from annotation.models import Membership
from api import services
from api.auth import access_project, api_key_of, projects_visible
from api.input import JsonInput
from api.models import ApiKey, Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

TAGS = ["keys"]


class KeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=ApiKey.Kind.choices)
    prefix = serializers.CharField(help_text="Shown in lists to tell keys apart; not a secret.")
    user = serializers.CharField(source="user.username", help_text="The account the key acts as.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices))
    projects = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=["active", "revoked", "expired"])
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)

    def get_projects(self, key: ApiKey) -> list[int]:
        return sorted(project.pk for project in key.projects.all())


def _keys_of(project):
    return ApiKey.objects.filter(projects=project).select_related("user").prefetch_related("projects")


class KeyListApi(ApiView):
    @extend_schema(
        operation_id="keys_list",
        tags=TAGS,
        summary="List the project's keys",
        description="Scope `admin`; project admins only. Secrets are never listed. Cursor-paginated in id order.",
        parameters=PAGE_PARAMETERS,
        responses={200: cursor_page("KeyPage", KeyOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_keys")
        return paged(request, self, _keys_of(project), lambda page: KeyOutput(page, many=True).data)


class KeyCreateApi(ApiView):
    secret_fields = ("token",)

    class KeyCreateInput(JsonInput):
        # A service key's account is named after the key unless `service_account` says otherwise, so the name
        # must hold a letter or digit (the schema's pattern says so).
        name = serializers.RegexField(r"^[^\x00]*[A-Za-z0-9][^\x00]*$", max_length=100)
        kind = serializers.ChoiceField(choices=ApiKey.Kind.choices, default=ApiKey.Kind.SERVICE)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=Scope.choices), min_length=1, max_length=len(Scope.values)
        )
        projects = serializers.ListField(
            child=serializers.IntegerField(min_value=1),
            required=False,
            max_length=100,
            help_text="Further projects the key may reach (you must be admin there); this project is always one.",
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        service_account = serializers.RegexField(
            r"^[-_]*[A-Za-z0-9][-A-Za-z0-9_]*$",
            max_length=100,
            required=False,
            allow_blank=True,
            help_text="Letters, digits, - or _; defaults to the key's name.",
        )
        role = serializers.ChoiceField(
            choices=Membership.Role.choices,
            default=Membership.Role.REVIEWER,
            help_text="Role of a new service account in the projects.",
        )

    class KeyCreateOutput(KeyOutput):
        token = serializers.CharField(help_text="The key itself. Shown in this response only: store it now.")

    @extend_schema(
        operation_id="keys_create",
        tags=TAGS,
        summary="Issue a key",
        description=(
            "Scope `admin`; project admins only. A personal token acts as you; a service key acts as a service "
            "account. A key issued with a key cannot hold scopes its issuer lacks."
        ),
        request=KeyCreateInput,
        responses={201: KeyCreateOutput, **errors(400, 404)},
        examples=[
            OpenApiExample(
                "Intake form",
                value={"name": "intake-form", "kind": "service", "scopes": ["predict"], "role": "reviewer"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_keys")
        data = self._validated(request)
        projects = [project]
        extra_ids = set(data.get("projects", [])) - {project.pk}
        if extra_ids:
            visible = projects_visible(request, scope=Scope.ADMIN).filter(pk__in=extra_ids)
            if visible.count() != len(extra_ids):
                raise ProjectNotFound("One of the listed projects does not exist or this key does not cover it.")
            projects.extend(visible)
        caller_key = api_key_of(request)
        issued = services.api_key_create(
            actor=request.user,
            projects=projects,
            name=data["name"],
            scopes=data["scopes"],
            kind=data["kind"],
            expires_at=data.get("expires_at"),
            service_account=data.get("service_account", ""),
            role=data["role"],
            scopes_allowed=caller_key.scopes if caller_key is not None else None,
        )
        issued.key.token = issued.token
        return Response(self.KeyCreateOutput(issued.key).data, status=status.HTTP_201_CREATED)

    def _validated(self, request: Request) -> dict:
        serializer = self.KeyCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class KeyRevokeApi(ApiView):
    @extend_schema(
        operation_id="keys_revoke",
        tags=TAGS,
        summary="Revoke a key",
        description="Scope `admin`; project admins only. The key stops working at once; revoking twice is 409.",
        request=None,
        responses={200: KeyOutput, **errors(404, 409)},
    )
    def post(self, request: Request, project_id: int, key_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.ADMIN, action="manage_keys")
        key = _keys_of(project).filter(pk=key_id).first()
        if key is None:
            raise ProjectNotFound("No such key in this project.")
        key = services.api_key_revoke(key=key, actor=request.user)
        return Response(KeyOutput(key).data)
