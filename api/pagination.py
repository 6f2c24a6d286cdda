"""Cursor pagination for the long lists (documents, annotations): stable under inserts, no page counting."""

from django.conf import settings
from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size_query_param = "page_size"
    max_page_size = 500

    def __init__(self) -> None:
        self.page_size = settings.DOCKET_API_PAGE_SIZE
