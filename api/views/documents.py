"""Documents: bulk create (through the import pipeline), list with filters, read one."""

from dataclasses import replace

from django.conf import settings
from django.db.models import F, Max, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, Greatest
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import permissions, selectors
from annotation.models import Adjudication, Annotation, Document, Flag, GoldAnswer
from api import services
from api.auth import access_document, access_project
from api.exceptions import TooLarge
from api.input import JsonInput, QueryFilter
from api.models import Scope
from api.pagination import paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView

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
    updated_at = serializers.DateTimeField(
        help_text="The latest of: added, annotated, adjudicated, given a gold answer, flagged or resolved."
    )


def with_updated_at(documents: QuerySet[Document]) -> QuerySet[Document]:
    """Documents with `updated_at`: when their labels or review state last changed, as far as the rows that
    record it say (annotations, adjudications, gold answers, legal-review flags); `updated_after` filters on it."""

    def latest(model, *fields: str) -> Coalesce:
        rows = model.objects.filter(document=OuterRef("pk")).order_by().values("document")
        first, *others = fields
        # Greatest of nullable moments: each later one falls back to the first (SQLite's MAX() returns NULL).
        moments = [Max(first), *(Coalesce(Max(field), Max(first)) for field in others)]
        newest = rows.annotate(at=Greatest(*moments) if others else moments[0]).values("at")
        return Coalesce(Subquery(newest), F("created_at"))

    return documents.annotate(
        updated_at=Greatest(
            F("created_at"),
            latest(Annotation, "updated_at"),
            latest(Adjudication, "created_at"),
            latest(GoldAnswer, "created_at"),
            latest(Flag, "created_at", "resolved_at"),
        )
    )


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


class DocumentListApi(ApiView):
    class DocumentFilter(QueryFilter):
        status = serializers.ChoiceField(choices=Document.Status.choices, required=False)
        label = serializers.SlugField(max_length=64, required=False, help_text="Documents annotated with it.")
        external_id = serializers.CharField(max_length=255, required=False)
        updated_after = serializers.DateTimeField(
            required=False,
            help_text="Documents added, annotated, adjudicated, given a gold answer or flagged after this moment.",
        )

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
        documents = with_updated_at(documents)
        if "updated_after" in filters.validated_data:
            documents = documents.filter(updated_at__gt=filters.validated_data["updated_after"])
        return paged(
            request,
            self,
            documents,
            lambda page: DocumentOutput(_with_labels(page, request, project), many=True).data,
        )


class DocumentDetailApi(ApiView):
    @extend_schema(
        operation_id="documents_retrieve",
        tags=TAGS,
        summary="Read a document",
        description="Scope `read`; any member. Reviewers read blind: `labels` holds only their own answer.",
        responses={200: DocumentOutput, **errors(404)},
    )
    def get(self, request: Request, project_id: int, document_id: int) -> Response:
        document = access_document(request, project_id, document_id, scope=Scope.READ)
        document.updated_at = with_updated_at(Document.objects.filter(pk=document.pk)).get().updated_at
        return Response(DocumentOutput(_with_labels([document], request, document.project)[0]).data)


class DocumentOutcomeOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's place in the request, from 0.")
    status = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
    id = serializers.IntegerField(
        allow_null=True, help_text="The stored document (for a duplicate, the one it repeats)."
    )
    external_id = serializers.CharField(allow_blank=True, help_text="The item's own external_id, as sent.")
    reason = serializers.CharField(allow_blank=True, help_text="Why the item was rejected; empty otherwise.")


class DocumentsBulkOutput(serializers.Serializer):
    import_batch = serializers.IntegerField(allow_null=True, help_text="Null when no item was usable.")
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = DocumentOutcomeOutput(many=True, help_text="One per item, in order.")


class DocumentBulkCreateApi(ApiView):
    class DocumentItem(JsonInput):
        text = serializers.CharField(trim_whitespace=False, help_text="At most DOCKET_MAX_TEXT_CHARS characters.")
        external_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
        metadata = serializers.DictField(required=False)
        labels = serializers.ListField(
            child=serializers.SlugField(max_length=64), required=False, help_text="Known labels, stored as imported."
        )

    class DocumentsBulkInput(JsonInput):
        documents = serializers.ListField(min_length=1)  # items are checked once their count is known

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
        usable, refused = [], {}
        for index, raw in enumerate(raw_items):
            item = self.DocumentItem(data=raw)
            if item.is_valid():
                usable.append((index, item.validated_data))
            else:
                refused[index] = services.DocumentOutcome(
                    index=index, status="rejected", external_id=_external_id_of(raw), reason=_reason(item.errors)
                )
        batch, outcomes = None, []
        if usable:
            batch, outcomes = services.documents_bulk_create(
                actor=request.user, project=project, items=[data for _, data in usable]
            )
        results = [*refused.values()]
        results += [replace(outcome, index=index) for (index, _), outcome in zip(usable, outcomes, strict=True)]
        results.sort(key=lambda outcome: outcome.index)
        data = {
            "import_batch": batch.pk if batch is not None else None,
            "created": sum(o.status == "created" for o in results),
            "duplicates": sum(o.status == "duplicate" for o in results),
            "rejected": sum(o.status == "rejected" for o in results),
            "results": [DocumentOutcomeOutput(o).data for o in results],
        }
        return Response(DocumentsBulkOutput(data).data, status=status.HTTP_201_CREATED)


def _external_id_of(raw) -> str:
    """A refused item's external_id as the caller sent it, so the result can be matched to their record."""
    value = raw.get("external_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else ""


def _reason(errors) -> str:
    """Field errors of one item as one sentence: `text: This field may not be blank.`"""
    if not isinstance(errors, dict):
        return " ".join(map(str, errors))
    parts = []
    for field, messages in errors.items():
        flat = messages if isinstance(messages, list) else [messages]
        text = " ".join(str(m) if not isinstance(m, dict | list) else _reason(m) for m in flat)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts)
