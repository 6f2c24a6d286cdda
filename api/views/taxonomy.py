"""A project's taxonomy and labels: read for members, add and change for project admins (scope `write`)."""

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import selectors
from annotation.exceptions import ProjectNotFound
from annotation.models import DESCRIPTION_MAX_CHARS, GUIDELINE_MAX_CHARS, Label, Taxonomy
from annotation.services import taxonomy as taxonomy_services
from api.auth import access_project
from api.exceptions import Conflict
from api.input import JsonInput
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

TAGS = ["taxonomy"]


class LabelOutput(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    guideline = serializers.CharField()
    color = serializers.CharField()
    shortcut = serializers.CharField()
    order = serializers.IntegerField()
    parent = serializers.CharField(source="parent.key", allow_null=True, default=None)
    deprecated = serializers.BooleanField()


class TaxonomyOutput(serializers.Serializer):
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    multi_label = serializers.BooleanField()
    labels = LabelOutput(many=True)


class LabelFieldsInput(JsonInput):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_CHARS)
    guideline = serializers.CharField(required=False, allow_blank=True, max_length=GUIDELINE_MAX_CHARS)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False)
    shortcut = serializers.RegexField(
        r"^[0-9a-eg-rtv-z]?$",
        required=False,
        allow_blank=True,
        help_text="One key: a digit or a lower-case letter other than s, u and f (the labeling page's own keys).",
    )


class LabelChangeInput(LabelFieldsInput):
    read_only_fields = ("id", "key", "order")  # keys are permanent: deprecate a label instead
    parent = serializers.SlugField(max_length=64, required=False, allow_null=True, help_text="A label key, or null.")
    deprecated = serializers.BooleanField(required=False, help_text="Hide from new labeling (or offer again).")


class TaxonomyDetailApi(ApiView):
    @extend_schema(
        operation_id="taxonomy_retrieve",
        tags=TAGS,
        summary="Read the taxonomy",
        description="Scope `read`; any member. `version` increases with every change to the labels.",
        responses={200: TaxonomyOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        taxonomy, _ = Taxonomy.objects.get_or_create(project=project)
        labels = selectors.labels_for(project)
        data = {
            "version": taxonomy.version,
            "updated_at": taxonomy.updated_at,
            "multi_label": project.multi_label,
            "labels": labels,
        }
        return Response(TaxonomyOutput(data).data)


class LabelListApi(ApiView):
    @extend_schema(
        operation_id="labels_list",
        tags=TAGS,
        summary="List labels",
        description=(
            "Scope `read`; any member. Deprecated labels are included and marked. Cursor-paginated in id order "
            "(each label's `order` is its place in the taxonomy)."
        ),
        parameters=PAGE_PARAMETERS,
        responses={200: cursor_page("LabelPage", LabelOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        labels = Label.objects.filter(taxonomy__project=project).select_related("parent")
        return paged(request, self, labels, lambda page: LabelOutput(page, many=True).data)


class LabelCreateApi(ApiView):
    class LabelCreateInput(LabelFieldsInput):
        key = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        parent_key = serializers.SlugField(max_length=64, required=False, allow_null=True)

    @extend_schema(
        operation_id="labels_create",
        tags=TAGS,
        summary="Add a label",
        description="Scope `write`; project admins only. Bumps the taxonomy version. A taken key is 409.",
        request=LabelCreateInput,
        responses={201: LabelOutput, **errors(400, 404, 409)},
        examples=[
            OpenApiExample(
                "Data retention",
                value={"key": "data_retention", "name": "Data retention", "shortcut": "7"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="manage_taxonomy")
        serializer = self.LabelCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        if Label.objects.filter(taxonomy__project=project, key=serializer.validated_data["key"]).exists():
            raise Conflict(f"The project already has a label with key '{serializer.validated_data['key']}'.")
        _refuse_clashes(project, serializer.validated_data, parent_field="parent_key")
        label = taxonomy_services.label_add(project=project, actor=request.user, **serializer.validated_data)
        return Response(LabelOutput(label).data, status=status.HTTP_201_CREATED)


class LabelUpdateApi(ApiView):
    @extend_schema(
        operation_id="labels_update",
        tags=TAGS,
        summary="Change a label",
        description=(
            "Scope `write`; project admins only. Keys are permanent; deprecate a label instead of deleting it. "
            "Every change is a new taxonomy version."
        ),
        request=LabelChangeInput,
        responses={200: LabelOutput, **errors(400, 404, 409)},
        examples=[OpenApiExample("Deprecate", value={"deprecated": True}, request_only=True)],
    )
    def patch(self, request: Request, project_id: int, label_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="manage_taxonomy")
        label = Label.objects.filter(taxonomy__project=project, pk=label_id).select_related("taxonomy").first()
        if label is None:
            raise ProjectNotFound("No such label in this project.")
        serializer = LabelChangeInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        _refuse_clashes(project, changes, parent_field="parent", label=label)
        deprecated = changes.pop("deprecated", None)
        with transaction.atomic():
            if changes:
                label = taxonomy_services.label_update(label=label, actor=request.user, **changes)
            if deprecated is True and not label.deprecated:
                label = taxonomy_services.label_deprecate(label=label, actor=request.user)
            elif deprecated is False and label.deprecated:
                label = taxonomy_services.label_restore(label=label, actor=request.user)
        return Response(LabelOutput(label).data)


def _refuse_clashes(project, data: dict, *, parent_field: str, label: Label | None = None) -> None:
    """What the current labels forbid is not a malformed request: a shortcut another label holds is 409, a
    parent that does not exist is 404, a parent inside the label itself is 409. The service checks again."""
    labels = Label.objects.filter(taxonomy__project=project)
    others = labels.exclude(pk=label.pk) if label is not None else labels
    shortcut = data.get("shortcut")
    if shortcut and (holder := others.filter(shortcut__iexact=shortcut).first()) is not None:
        raise Conflict(f"The shortcut '{shortcut}' already belongs to '{holder.name}'.")
    parent_key = data.get(parent_field)
    if not parent_key:
        return
    parent = labels.filter(key=parent_key).first()
    if parent is None:
        raise ProjectNotFound(f"There is no label '{parent_key}' in this project to put this one under.")
    if label is not None:
        parents = dict(labels.values_list("pk", "parent_id"))
        current: int | None = parent.pk
        while current is not None:
            if current == label.pk:
                raise Conflict(f"'{label.name}' cannot go under '{parent.name}': that is inside it.")
            current = parents.get(current)
