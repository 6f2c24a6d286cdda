"""Cursor pagination for the long lists (documents, annotations): stable under inserts, no page counting."""

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size_query_param = "page_size"
    max_page_size = 500

    def __init__(self) -> None:
        self.page_size = settings.DOCKET_API_PAGE_SIZE

    def get_page_size(self, request) -> int:
        # DRF falls back to the default for page_size=abc or 0; a client that asked for something else should
        # hear that it was not understood.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({"page_size": [f"Give a whole number from 1 to {self.max_page_size}."]})
        return int(raw)
