"""Legal review: the flags waiting for a decision, and resolving one with a note."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.models import Document, Flag
from annotation.services import legal_review
from api.auth import access_project
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

TAGS = ["legal review"]


class FlagOutput(serializers.Serializer):
    id = serializers.IntegerField()
    document = serializers.IntegerField(source="document_id")
    external_id = serializers.CharField(source="document.external_id")
    document_status = serializers.ChoiceField(source="document.status", choices=Document.Status.choices)
    text = serializers.CharField(source="document.text")
    flagged_by = serializers.CharField(source="reviewer.get_username")
    flagged_at = serializers.DateTimeField(source="created_at")
    comment = serializers.CharField(help_text="Why the reviewer flagged the document.")
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField(source="resolved_by.get_username", allow_null=True, default=None)
    decision = serializers.ChoiceField(choices=Flag.Decision.choices, allow_blank=True, help_text="Empty while open.")
    note = serializers.CharField(source="resolution_note", allow_blank=True)


class FlagListApi(ApiView):
    class FlagFilter(serializers.Serializer):
        state = serializers.ChoiceField(choices=["open", "resolved", "all"], default="open")

    @extend_schema(
        operation_id="flags_list",
        tags=TAGS,
        summary="List flagged documents",
        description=(
            "Scope `read`; leads and admins. The documents reviewers flagged for legal review, with who flagged "
            "them, when and why: `state=open` (default) waits for a decision, `resolved` has one. Cursor-paginated "
            "in id order."
        ),
        parameters=[FlagFilter, *PAGE_PARAMETERS],
        responses={200: cursor_page("FlagPage", FlagOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ, action="resolve_flags")
        filters = self.FlagFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        flags = legal_review.flags_for(project, state=filters.validated_data["state"])
        return paged(request, self, flags, lambda page: FlagOutput(page, many=True).data)


class FlagResolveApi(ApiView):
    class FlagResolveInput(serializers.Serializer):
        decision = serializers.ChoiceField(
            choices=Flag.Decision.choices,
            help_text="`requeue`: back to the review queue (the note becomes its re-review reason); "
            "`close`: the document stays out of labeling.",
        )
        note = serializers.CharField(max_length=legal_review.NOTE_MAX_CHARS, help_text="What was decided and why.")

    @extend_schema(
        operation_id="flags_resolve",
        tags=TAGS,
        summary="Resolve a flag",
        description=(
            "Scope `write`; leads and admins. Resolves an open flag with a decision and a note, both audited. "
            "409 when the flag was resolved already."
        ),
        request=FlagResolveInput,
        responses={200: FlagOutput, **errors(400, 404, 409)},
        examples=[
            OpenApiExample(
                "Back to the queue",
                value={"decision": "requeue", "note": "Not privileged; label it as usual."},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int, flag_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="resolve_flags")
        flag = legal_review.flag_for(project, flag_id)
        serializer = self.FlagResolveInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            flag = legal_review.flag_resolve(actor=request.user, flag=flag, **serializer.validated_data)
        except legal_review.ResolutionInvalid as error:
            raise serializers.ValidationError({"note": [str(error)]}) from error
        return Response(FlagOutput(legal_review.flag_for(project, flag.pk)).data)
