"""The API's one body parser: JSON read through annotation.untrusted, so a NUL character or nesting beyond
its limit is a 400 in the error shape before any view or serializer sees the body."""

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from annotation.untrusted import json_read


class JsonBodyParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError as error:
            raise ParseError(f"The request body is not {encoding} text.") from error
        try:
            return json_read(text)
        except ValueError as error:
            raise ParseError(f"The request body is not valid JSON: {error}") from error
