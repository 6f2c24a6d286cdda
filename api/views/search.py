"""Search a project as its Explore page does: by words, by meaning, with filters; cursor-paginated."""

import base64
import binascii

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from annotation import permissions
from annotation.models import Document
from api.auth import access_project
from api.exceptions import ModelNotReady
from api.input import QueryFilter
from api.models import Scope
from api.pagination import CursorPage, paged
from api.schema import PAGE_PARAMETERS, cursor_page, errors
from api.views.base import ApiView
from explore.search import (
    MEANING_CANDIDATES,
    EmbeddingsMissing,
    ExploreQuery,
    SearchInvalid,
    filtered_documents,
    page_rows,
    search,
)

TAGS = ["search"]


class SuggestionOutput(serializers.Serializer):
    label = serializers.CharField()
    probability = serializers.FloatField()


class SearchResultOutput(serializers.Serializer):
    id = serializers.IntegerField(source="document.pk")
    external_id = serializers.CharField(source="document.external_id")
    status = serializers.ChoiceField(choices=Document.Status.choices, source="document.status")
    metadata = serializers.DictField(source="document.metadata")
    snippet = serializers.CharField(
        help_text="HTML: the text around the matched words, escaped, each match in <mark>…</mark>."
    )
    similarity = serializers.FloatField(allow_null=True, help_text="Cosine similarity, when searching by meaning.")
    suggestion = SuggestionOutput(many=True, help_text="The serving model's two most likely labels.")
    labels = serializers.ListField(
        child=serializers.CharField(),
        help_text="Final labels for leads and admins; a reviewer's own answer for reviewers (blind review).",
    )


def _output(rows) -> list[dict]:
    for row in rows:
        row.suggestion_out = [{"label": key, "probability": p} for key, _name, p in row.suggestion]
    return [
        {**SearchResultOutput(row).data, "suggestion": SuggestionOutput(row.suggestion_out, many=True).data}
        for row in rows
    ]


class SearchApi(ApiView):
    class SearchFilter(QueryFilter):
        words = serializers.CharField(
            required=False, max_length=500, help_text='All words must occur; "quoted phrase", prefix*.'
        )
        meaning = serializers.CharField(required=False, max_length=1000, help_text="Free text to search by meaning.")
        like = serializers.IntegerField(required=False, min_value=1, help_text="Documents similar to this one.")
        metadata_key = serializers.CharField(required=False, max_length=200)
        metadata_value = serializers.CharField(required=False, max_length=500)
        import_batch = serializers.IntegerField(required=False, min_value=1)
        labeled = serializers.BooleanField(required=False)
        final_label = serializers.SlugField(required=False, max_length=64, help_text="Leads and admins only.")
        predicted_label = serializers.SlugField(required=False, max_length=64)
        probability_min = serializers.FloatField(required=False, min_value=0, max_value=1)
        probability_max = serializers.FloatField(required=False, min_value=0, max_value=1)
        reviewer = serializers.CharField(required=False, max_length=150, help_text="Leads and admins only.")
        flagged = serializers.BooleanField(required=False)
        gold = serializers.BooleanField(required=False, help_text="Leads and admins only.")

        def validate(self, data):
            if "meaning" in data and "like" in data:
                raise serializers.ValidationError({"like": ["Search by `meaning` or by `like`, not both."]})
            return data

    @extend_schema(
        operation_id="search",
        tags=TAGS,
        summary="Search documents",
        description=(
            'Scope `read`; any member. By `words` (PostgreSQL full-text search: every word, "phrases", '
            "prefix*), by `meaning` (free text) or `like` (a document id) over the serving model's embeddings, and "
            "by filters. Words and filters alone come newest first; a search by meaning comes most similar first, "
            f"among the {MEANING_CANDIDATES:,} nearest documents. Cursor-paginated: follow `next` until it is "
            "null. Reviewers read blind: `labels` is their own answer, and `final_label`, `reviewer` and `gold` "
            "are refused."
        ),
        parameters=[SearchFilter, *PAGE_PARAMETERS],
        responses={200: cursor_page("SearchPage", SearchResultOutput(many=True)), **errors(400, 404, 503)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = access_project(request, project_id, scope=Scope.READ)
        filters = self.SearchFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        sees_answers = permissions.can(request.user, project, "view_answers")
        blind = [name for name in ("final_label", "reviewer", "gold") if name in data and not sees_answers]
        if blind:
            raise serializers.ValidationError({name: ["Reviewers search blind: not for your role."] for name in blind})
        query = ExploreQuery(
            words=data.get("words", ""),
            meaning=data.get("meaning", ""),
            like_document=data.get("like"),
            metadata_key=data.get("metadata_key", ""),
            metadata_value=data.get("metadata_value", ""),
            import_batch=data.get("import_batch"),
            labeled=data.get("labeled"),
            final_label=data.get("final_label", ""),
            predicted_label=data.get("predicted_label", ""),
            probability_min=data.get("probability_min"),
            probability_max=data.get("probability_max"),
            reviewer=data.get("reviewer", ""),
            flagged=data.get("flagged"),
            gold=data.get("gold"),
        )
        try:
            if query.by_meaning:
                return self._by_meaning(request, project, query, sees_answers)
            documents = filtered_documents(project, query, sees_answers=sees_answers, user=request.user)
        except SearchInvalid as problem:
            raise serializers.ValidationError({"search": [str(problem)]}) from problem

        def serialize(page: list) -> list[dict]:
            return _output(page_rows(project, page, query, sees_answers=sees_answers, user=request.user))

        return paged(request, self, documents, serialize, ordering="-id")

    def _by_meaning(self, request: Request, project, query: ExploreQuery, sees_answers: bool) -> Response:
        size = CursorPage().get_page_size(request)
        offset = _offset(request.query_params.get("cursor"))
        try:
            page = search(project, query, user=request.user, sees_answers=sees_answers, offset=offset, page_size=size)
        except EmbeddingsMissing as problem:
            raise ModelNotReady(str(problem)) from problem
        except SearchInvalid as problem:
            raise serializers.ValidationError({"search": [str(problem)]}) from problem
        return Response(
            {
                "next": _url(request, page.next_offset),
                "previous": _url(request, max(offset - size, 0)) if offset else None,
                "results": _output(page.rows),
            }
        )


NOT_OUR_CURSOR = "Not a cursor this list gave; follow `next` or `previous`, or start again without one."


def _offset(cursor: str | None) -> int:
    """Where a search by meaning goes on: its cursor is an offset into the ranked candidates, opaque as any other."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise serializers.ValidationError({"cursor": [NOT_OUR_CURSOR]}) from error
    if not text.startswith("o=") or not text[2:].isdigit():
        raise serializers.ValidationError({"cursor": [NOT_OUR_CURSOR]})
    return int(text[2:])


def _url(request: Request, offset: int | None) -> str | None:
    if offset is None:
        return None
    cursor = base64.urlsafe_b64encode(f"o={offset}".encode("ascii")).decode("ascii")
    params = request.query_params.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(request.path) + "?" + params.urlencode()
