"""Turns access errors raised anywhere in a page view into the right HTTP answer, and refuses NUL characters."""

from django.core.exceptions import BadRequest, PermissionDenied
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


class RefuseNulCharacters:
    """A NUL character in a page's query string or form fields is a 400 before any view runs.

    PostgreSQL can neither store nor compare text with NUL in it, and a view that reads request.GET or
    request.POST directly (not through a Django form, which refuses NUL itself) would pass it on and fail
    with a 500. JSON bodies are checked where they are read (annotation/untrusted.py); the API answers in its
    own error shape through its serializers, so /api/ is left to it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            for values in (request.GET, request.POST if request.method == "POST" else {}):
                if any("\x00" in key or any("\x00" in value for value in values.getlist(key)) for key in values):
                    raise BadRequest("The request contains a NUL character (\\u0000), which Docket cannot store.")
        return self.get_response(request)
