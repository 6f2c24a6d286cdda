"""SQL that the review queue builds with the ORM, compiled once per shape and run again with each request's values.

Django spends more CPU time building and compiling the queue's querysets (subqueries, joins, `Exists`) than
PostgreSQL spends running them, and it does so on every request for the same few shapes of statement. Here a
statement is built once with stand-in values (each one distinct and recognisable among the parameters), and
afterwards only the parameters change: each stand-in is replaced by the request's value.

PostgreSQL only (other backends get the queryset built and run as usual). What may vary between calls
without a new compilation: ints (ids, counts), aware datetimes, lists of ints (their length is part of the
shape) and strings wrapped in `Text` (a key's prefix). Any other value (None, bools, floats, bare strings) is
part of the shape itself and reaches the SQL unchanged. A statement whose text contains a stand-in (a value
Django wrote into the SQL rather than passing it as a parameter), or whose parameters hold one transformed (a
LIKE pattern, a lowered string), is never reused.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Model, QuerySet

# Shapes kept per process: a handful per project setting (gold, overlap) and per number of documents excluded.
MAX_SHAPES = 512
# Stand-ins: in the range of a 32-bit integer column (Django refuses lookups outside a column's range), and far
# from any id a table reaches.
_FIRST_INT_STAND_IN = 2_000_000_011
_FIRST_DATETIME_STAND_IN = datetime(1999, 12, 31, 23, 0, tzinfo=UTC)
# Text stand-ins: lowercase letters and digits only (nothing a LIKE pattern escapes or a lower() changes), with a
# random part per process, so no request's value and no text Django writes can be mistaken for one.
_TEXT_STAND_IN = f"zqstandin{secrets.token_hex(8)}n"


class Text:
    """A string that varies between calls of one statement (see the module docstring); `build` gets a str."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Text holds a str, not {type(value).__name__}")
        self.value = value

    def __repr__(self) -> str:
        return f"Text({self.value!r})"


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """`values` as `build` takes them: each Text as its str."""
    return {name: value.value if isinstance(value, Text) else value for name, value in values.items()}


_shapes: OrderedDict[Hashable, _Compiled] = OrderedDict()
_lock = threading.Lock()


class _Compiled:
    __slots__ = ("sql", "slots", "converters", "names")

    def __init__(self, sql: str, slots: list[tuple[str | None, Any]], converters=None, names=None):
        self.sql = sql
        self.slots = slots  # per parameter: (name of the value, index in a list or None) or (None, the constant)
        self.converters = converters
        self.names = names

    def params(self, values: dict[str, Any]) -> list:
        out = []
        for slot, constant in self.slots:
            if slot is None:
                out.append(constant)
            elif constant is None:
                value = values[slot]
                out.append(value.value if isinstance(value, Text) else value)
            elif constant == "list":
                out.append(list(values[slot]))
            else:
                out.append(values[slot][constant])
        return out


def _varies(value: Any) -> bool:
    return (type(value) is int) or (isinstance(value, datetime) and value.tzinfo is not None)


def _shape_of(values: dict[str, Any]) -> tuple:
    shape = []
    for name in sorted(values):
        value = values[name]
        if _varies(value):
            shape.append((name, type(value).__name__))
        elif isinstance(value, Text):
            shape.append((name, "text"))
        elif isinstance(value, list | tuple) and all(type(v) is int for v in value):
            shape.append((name, "ints", len(value)))
        else:
            shape.append((name, "constant", value))
    return tuple(shape)


def _stand_ins(values: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[type, Any], tuple[str, Any]], dict]:
    """Stand-ins for the varying values, and where each one leads back to."""
    stand_ins: dict[str, Any] = {}
    lookup: dict[tuple[type, Any], tuple[str, Any]] = {}
    lists: dict[int, str] = {}
    next_int = _FIRST_INT_STAND_IN
    next_datetime = _FIRST_DATETIME_STAND_IN
    next_text = 0
    for name in sorted(values):
        value = values[name]
        if isinstance(value, Text):
            stand_in = f"{_TEXT_STAND_IN}{next_text}z"
            stand_ins[name] = stand_in
            lookup[(str, stand_in)] = (name, None)
            next_text += 1
        elif type(value) is int:
            stand_ins[name] = next_int
            lookup[(int, next_int)] = (name, None)
            next_int += 1
        elif isinstance(value, datetime) and value.tzinfo is not None:
            stand_ins[name] = next_datetime
            lookup[(datetime, next_datetime)] = (name, None)
            next_datetime += timedelta(seconds=1)
        elif isinstance(value, list | tuple) and all(type(v) is int for v in value):
            items = []
            for index in range(len(value)):
                items.append(next_int)
                lookup[(int, next_int)] = (name, index)
                next_int += 1
            stand_ins[name] = items
            lists[id(items)] = name
        else:
            stand_ins[name] = value
    return stand_ins, lookup, lists


def _slots(sql: str, params: list, lookup: dict, lists: dict) -> list[tuple[str | None, Any]] | None:
    """Each parameter's source; None when a stand-in was written into the SQL itself (the statement is not reused)."""
    lowered_sql = sql.lower()
    for kind, stand_in in lookup:
        if kind is str and _TEXT_STAND_IN in lowered_sql:
            return None
        if str(stand_in) in sql or (kind is datetime and stand_in.isoformat()[:19].replace("T", " ") in sql):
            return None
    slots = []
    for param in params:
        key = (datetime if isinstance(param, datetime) else type(param), param)
        try:
            source = lookup.get(key)
        except TypeError:  # an unhashable parameter (a list) is a constant unless it is a list stand-in
            source = None
        if source is not None:
            slots.append(source)
        elif isinstance(param, list) and id(param) in lists:
            slots.append((lists[id(param)], "list"))
        elif isinstance(param, list) and any(type(v) is int and (int, v) in lookup for v in param):
            return None  # a copy of a list stand-in: cannot tell which values it holds
        else:
            text = str(param)
            if any(str(stand_in)[:19] in text for _, stand_in in lookup) or _TEXT_STAND_IN in text.lower():
                return None  # a stand-in transformed on its way to a parameter (a pattern, a date): not reusable
            slots.append((None, param))
    return slots


def _remember(key: Hashable, compiled: _Compiled) -> None:
    with _lock:
        _shapes[key] = compiled
        while len(_shapes) > MAX_SHAPES:
            _shapes.popitem(last=False)


def _cached(key: Hashable) -> _Compiled | None:
    compiled = _shapes.get(key)
    if compiled is not None:
        try:
            _shapes.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile
            pass
    return compiled


def prepared(name: str, build: Callable[..., tuple[str, list]], **values: Any) -> tuple[str, list]:
    """`build(**values)`'s SQL and parameters, compiled once per shape of `values`.

    `build` must depend on the varying values only through the parameters it returns (it gets stand-ins for
    them the first time); everything else that decides the SQL's text must be among `values` as a constant.
    """
    if connection.vendor != "postgresql":  # other backends adapt values (datetimes to text) before they are params
        return build(**_plain(values))
    key = (name, _shape_of(values))
    compiled = _cached(key)
    if compiled is None:
        stand_ins, lookup, lists = _stand_ins(values)
        sql, params = build(**stand_ins)
        slots = _slots(sql, list(params), lookup, lists)
        if slots is None:
            return build(**_plain(values))
        compiled = _Compiled(sql, slots)
        _remember(key, compiled)
    return compiled.sql, compiled.params(values)


def prepared_values(name: str, build: Callable[..., QuerySet], **values: Any) -> list[dict[str, Any]]:
    """The rows of `build(**values)`, a `values()` queryset, as dicts; compiled once per shape (see `prepared`)."""
    if connection.vendor != "postgresql":
        return list(build(**_plain(values)))
    key = (name, "values", _shape_of(values))
    compiled = _cached(key)
    if compiled is None:
        stand_ins, lookup, lists = _stand_ins(values)
        queryset = build(**stand_ins)
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:  # a filter that can match nothing (`pk__in=[]`): Django asks no query either
            return []
        slots = _slots(sql, list(params), lookup, lists)
        if slots is None:
            return list(build(**_plain(values)))
        query = queryset.query
        # As Django's ValuesIterable: since 5.2 the row follows the order values() named (annotations included).
        names = (
            list(query.selected)
            if query.selected
            else [
                *query.extra_select,
                *query.values_select,
                *query.annotation_select,
            ]
        )
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        converters = list(compiler.get_converters(fields).items())
        compiled = _Compiled(sql, slots, converters, names)
        _remember(key, compiled)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params(values))
        rows = cursor.fetchall()
    result = []
    for row in rows:
        row = list(row)
        for position, (functions, expression) in compiled.converters:
            value = row[position]
            for function in functions:
                value = function(value, expression, connection)
            row[position] = value
        result.append(dict(zip(compiled.names, row, strict=True)))
    return result


def prepared_objects(
    name: str,
    model: type[Model],
    build: Callable[..., QuerySet],
    *,
    related: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    **values: Any,
) -> list[Model]:
    """The `model` instances of `build(**values)` (a queryset of them), compiled once per shape (see `prepared`).

    `related`: relations joined into the same query, as `select_related` would: forward foreign keys and reverse
    one-to-ones, nested with `__` (`"user", "user__service_account"`: a path's parent comes first); `extra`:
    annotations of the queryset, set on each instance as attributes.
    """
    paths = []  # (path, its parent's path or "", the field or reverse relation, the model it leads to)
    for path in related:
        parent, _, field_name = path.rpartition("__")
        parent_model = model if not parent else next(m for p, _, _, m in paths if p == parent)
        field = parent_model._meta.get_field(field_name)
        paths.append((path, parent, field, field.related_model))

    def build_values(**stand_ins: Any) -> QuerySet:
        columns = _columns(model)
        for path, _, _, related_model in paths:
            columns += _columns(related_model, f"{path}__")
        return build(**stand_ins).values(*columns, *extra)

    objects = []
    for row in prepared_values(name, build_values, **values):
        instance = _instance(model, row)
        reached = {"": instance}
        for path, parent, field, related_model in paths:
            owner = reached.get(parent)
            if owner is None:  # the parent is absent (a null foreign key): so is everything below it
                reached[path] = None
                continue
            related_instance = None
            if row[f"{path}__{related_model._meta.pk.attname}"] is not None:
                related_instance = _instance(related_model, row, f"{path}__")
                if field.auto_created and not field.concrete:  # a reverse one-to-one: its object points back
                    field.field.set_cached_value(related_instance, owner)
            field.set_cached_value(owner, related_instance)
            reached[path] = related_instance
        for attribute in extra:
            setattr(instance, attribute, row[attribute])
        objects.append(instance)
    return objects


def _columns(model: type[Model], prefix: str = "") -> list[str]:
    return [f"{prefix}{field.attname}" for field in model._meta.concrete_fields]


def _instance(model: type[Model], row: dict[str, Any], prefix: str = "") -> Model:
    names = [field.attname for field in model._meta.concrete_fields]
    return model.from_db(connection.alias, names, [row[f"{prefix}{name}"] for name in names])
