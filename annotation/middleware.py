"""Turns access errors raised anywhere in a page view into the right HTTP answer."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotation.exceptions import NotAllowed, ProjectNotFound


class AccessErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ProjectNotFound):
            raise Http404(str(exception)) from exception
        if isinstance(exception, NotAllowed):
            raise PermissionDenied(str(exception)) from exception
        return None
