"""What the API reads: JSON bodies typed as the schema says, and query filters that are given or left out.

DRF converts generously: `{"name": 0}` becomes "0", `false` becomes 0.0, "60" becomes 60, and an empty
query parameter is skipped as if it were absent. The schema promises strings, numbers and booleans, so
every input serializer of the API derives from one of these two and refuses what the schema refuses.
"""

from typing import Any

from rest_framework import serializers


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value` is not of the JSON type `field` documents, or None when it is."""
    if value is None:
        return None if field.allow_null else "This field may not be null."
    if isinstance(field, serializers.BooleanField):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(field, serializers.IntegerField):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(field, serializers.FloatField | serializers.DecimalField):
        ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(field, serializers.ListField | serializers.ListSerializer | serializers.MultipleChoiceField):
        ok, expected = isinstance(value, list), "a list"
    elif isinstance(field, serializers.DictField | serializers.Serializer):
        ok, expected = isinstance(value, dict), "an object"
    elif isinstance(field, serializers.JSONField):
        return None
    elif isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.DateTimeField):
        ok, expected = isinstance(value, str), "a string"  # UUIDField is a CharField
    else:
        return None
    if ok:
        return None
    return f"Expected {expected}, not {_json_name(value)}."


JSON_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}


def _json_name(value: Any) -> str:
    return JSON_NAMES.get(type(value), type(value).__name__)


def _check_list_items(field: serializers.Field, value: Any) -> dict[int, list[str]]:
    child = getattr(field, "child", None)
    if not isinstance(value, list) or child is None or isinstance(child, serializers.Serializer):
        return {}  # nested serializers check their own items
    problems = {}
    for index, item in enumerate(value):
        problem = _json_type_error(child, item)
        if problem:
            problems[index] = [problem]
    return problems


class JsonInput(serializers.Serializer):
    """A JSON body: each field's value must have the field's JSON type, and unknown fields are refused (the
    schema says `additionalProperties: false`), so a typo in a field name is not silently ignored. A field the
    answer shows but this request cannot change (`read_only_fields`) is refused as read-only."""

    read_only_fields: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors: dict[str, Any] = {}
            for name in data.keys() - self.fields.keys():
                known = name in self.read_only_fields
                errors[str(name)] = [
                    "This field is read-only; it cannot be changed here." if known else "Unknown field."
                ]
            for name, field in self.fields.items():
                if field.read_only or name not in data:
                    continue
                problem = _json_type_error(field, data[name])
                if problem:
                    errors[name] = [problem]
                elif items := _check_list_items(field, data[name]):
                    errors[name] = items
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class QueryFilter(serializers.Serializer):
    """Query-string filters: a filter given with no value (`?status=`) is an error, not a filter left out."""

    def to_internal_value(self, data: Any) -> Any:
        blank = [name for name in self.fields if hasattr(data, "getlist") and "" in data.getlist(name, [])]
        if blank:
            raise serializers.ValidationError({name: ["Give a value, or leave the filter out."] for name in blank})
        return super().to_internal_value(data)
