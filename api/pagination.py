"""Every list of the API pages the same way: cursors (stable under inserts, no page counting), `page_size` from 1
to 500, and `{"next", "previous", "results"}`; each list chooses only its order."""

import base64
from collections.abc import Callable, Sequence

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

MAX_PAGE_SIZE = 500


class CursorPage(CursorPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def __init__(self, ordering: str | Sequence[str] = "id") -> None:
        self.ordering = ordering
        self.page_size = settings.DOCKET_API_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        # DRF falls back to the default for page_size=abc, 0 or -1; a client that asked for something else should
        # hear that it was not understood.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({"page_size": [f"Give a whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def decode_cursor(self, request: Request):
        # DRF answers a cursor it cannot read with 404, as if the list did not exist; it is a bad parameter.
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded == "":
            raise ValidationError({"cursor": ["Give the cursor from a page's `next` or `previous`, or leave it out."]})
        try:
            if encoded is not None:
                base64.b64decode(encoded.encode("ascii"), validate=True)  # DRF would skip what is not base64
            return super().decode_cursor(request)
        except (NotFound, ValueError) as error:
            raise ValidationError(
                {"cursor": ["Not a cursor this list gave; follow `next` or `previous`, or start again without one."]}
            ) from error


def paged(
    request: Request,
    view,
    queryset: QuerySet,
    serialize: Callable[[list], list],
    *,
    ordering: str | Sequence[str] = "id",
) -> Response:
    """One page of `queryset` in `ordering`, its items serialized by `serialize`."""
    paginator = CursorPage(ordering)
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serialize(page))
