"""Documents: bulk create (through the import pipeline), list with filters, read one."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import permissions, selectors
from annotation.models import Annotation, Document, ImportBatch
from api import services
from api.auth import access_document, access_project
from api.exceptions import TooLarge
from api.input import JsonInput, QueryFilter
from api.models import Scope
from api.pagination import IdCursorPagination
from api.schema import PAGE_PARAMETERS, cursor_page, errors

TAGS = ["documents"]


class DocumentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    metadata = serializers.DictField()
    status = serializers.ChoiceField(choices=Document.Status.choices)
    labels = serializers.ListField(
        child=serializers.CharField(),
        help_text=(
            "For leads and admins the final labels: adjudicated, gold, unanimous or a single reviewer's; empty "
            "while disputed. For reviewers (blind review) only their own answer, empty if they gave none."
        ),
    )
    created_at = serializers.DateTimeField()


def _with_labels(documents: list[Document], request: Request, project) -> list[Document]:
    """Final labels for those who may see others' answers; a reviewer reads only their own (blind review)."""
    if permissions.can(request.user, project, "view_answers"):
        finals = selectors.final_labels_for(d.pk for d in documents)
        for document in documents:
            document.labels = finals[document.pk].labels
        return documents
    mine = selectors.own_label_keys_for((d.pk for d in documents), request.user)
    for document in documents:
        document.labels = mine.get(document.pk, [])
    return documents


class DocumentListApi(APIView):
    class DocumentFilter(QueryFilter):
        status = serializers.ChoiceField(choices=Document.Status.choices, required=False)
        label = serializers.SlugField(max_length=64, required=False, help_text="Documents annotated with it.")
        external_id = serializers.CharField(max_length=255, required=False)

    @extend_schema(
        operation_id="documents_list",
        tags=TAGS,
        summary="List documents",
        description=(
            "Scope `read`; any member. Cursor-paginated in id order: follow `next` until it is null. Reviewers "
            "read blind: `labels` and the `label` filter see only their own answers."
        ),
        parameters=[
            DocumentFilter,
            *PAGE_PARAMETERS,
        ],
        responses={200: cursor_page("DocumentPage", DocumentOutput(many=True)), **errors(400, 404)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        filters = self.DocumentFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        documents = Document.objects.filter(project=project)
        if "status" in filters.validated_data:
            documents = documents.filter(status=filters.validated_data["status"])
        if "label" in filters.validated_data:
            annotations = Annotation.objects.filter(
                document__project=project, labels__key=filters.validated_data["label"]
            )
            if not permissions.can(request.user, project, "view_answers"):
                annotations = annotations.filter(reviewer=request.user)  # others' answers stay unseen
            documents = documents.filter(pk__in=annotations.values("document_id"))
        if "external_id" in filters.validated_data:
            documents = documents.filter(external_id=filters.validated_data["external_id"])
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(documents, request, view=self)
        return paginator.get_paginated_response(DocumentOutput(_with_labels(page, request, project), many=True).data)


class DocumentDetailApi(APIView):
    @extend_schema(
        operation_id="documents_retrieve",
        tags=TAGS,
        summary="Read a document",
        description="Scope `read`; any member. Reviewers read blind: `labels` holds only their own answer.",
        responses={200: DocumentOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, document_id: int) -> Response:
        document = access_document(request, project_id, document_id, scope=Scope.READ)
        return Response(DocumentOutput(_with_labels([document], request, document.project)[0]).data)


class DocumentBulkCreateApi(APIView):
    class DocumentItem(JsonInput):
        text = serializers.CharField(trim_whitespace=False, help_text="At most DOCKET_MAX_TEXT_CHARS characters.")
        external_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
        metadata = serializers.DictField(required=False)
        labels = serializers.ListField(
            child=serializers.SlugField(max_length=64), required=False, help_text="Known labels, stored as imported."
        )

    class DocumentsBulkInput(JsonInput):
        documents = serializers.ListField(min_length=1)  # items are checked once their count is known

    class DocumentOutcomeOutput(serializers.Serializer):
        index = serializers.IntegerField()
        status = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
        id = serializers.IntegerField(allow_null=True)
        external_id = serializers.CharField()
        reason = serializers.CharField()

    class DocumentsBulkOutput(serializers.Serializer):
        import_batch = serializers.IntegerField()
        created = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        rejected = serializers.IntegerField()
        results = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="documents_bulk_create",
        tags=TAGS,
        summary="Add documents",
        description=(
            "Scope `write`; project admins only (the same right as importing a file). Up to "
            "DOCKET_API_MAX_DOCUMENTS (default 500) per request, else 413. Duplicates of existing text are "
            "reported, not stored twice; an unusable item is rejected with its reason while the rest go in."
        ),
        request=inline_serializer(
            "DocumentsBulkCreate", {"documents": serializers.ListField(child=DocumentItem(), min_length=1)}
        ),
        responses={201: DocumentsBulkOutput, **errors(400, 404, 413)},
        examples=[
            OpenApiExample(
                "Two clauses",
                value={
                    "documents": [
                        {"external_id": "dpa-17-4.2", "text": "We share identifiers with analytics vendors."},
                        {"text": "Data is deleted after 30 days.", "metadata": {"source": "retention policy"}},
                    ]
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.WRITE, action="import")
        wrapper = self.DocumentsBulkInput(data=request.data)
        wrapper.is_valid(raise_exception=True)
        raw_items = wrapper.validated_data["documents"]
        limit = settings.DOCKET_API_MAX_DOCUMENTS
        if len(raw_items) > limit:
            raise TooLarge(
                f"At most {limit} documents per request; split the batch.", limit=limit, received=len(raw_items)
            )
        items = self.DocumentItem(data=raw_items, many=True)
        items.is_valid(raise_exception=True)
        batch, outcomes = services.documents_bulk_create(
            actor=request.user, project=project, items=items.validated_data
        )
        if batch.status == ImportBatch.Status.FAILED:
            reasons = {str(o.index): o.reason for o in outcomes if o.reason}
            raise serializers.ValidationError({"documents": [batch.error], "items": reasons})
        data = {
            "import_batch": batch.pk,
            "created": sum(o.status == "created" for o in outcomes),
            "duplicates": sum(o.status == "duplicate" for o in outcomes),
            "rejected": sum(o.status == "rejected" for o in outcomes),
            "results": [self.DocumentOutcomeOutput(o).data for o in outcomes],
        }
        return Response(self.DocumentsBulkOutput(data).data, status=status.HTTP_201_CREATED)
