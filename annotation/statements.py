"""SQL that the review queue builds with the ORM, compiled once per shape and run again with each request's values.

Django spends more CPU time building and compiling the queue's querysets (subqueries, joins, `Exists`) than
PostgreSQL spends running them, and it does so on every request for the same few shapes of statement. Here a
statement is built once with stand-in values (each one distinct and recognisable among the parameters), and
afterwards only the parameters change: each stand-in is replaced by the request's value.

PostgreSQL only (other backends get the queryset built and run as usual). What may vary between calls
without a new compilation: ints (ids, counts), aware datetimes and lists of ints (their length is part of the
shape). Any other value (None, bools, floats, strings) is part of the shape itself
and reaches the SQL unchanged. A statement whose text contains a stand-in (a value Django wrote into the SQL
rather than passing it as a parameter) is never reused.
"""

from __future__ import annotations

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
                out.append(values[slot])
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
    for name in sorted(values):
        value = values[name]
        if type(value) is int:
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
    for kind, stand_in in lookup:
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
            if any(str(stand_in)[:19] in text for _, stand_in in lookup):
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
        return build(**values)
    key = (name, _shape_of(values))
    compiled = _cached(key)
    if compiled is None:
        stand_ins, lookup, lists = _stand_ins(values)
        sql, params = build(**stand_ins)
        slots = _slots(sql, list(params), lookup, lists)
        if slots is None:
            return build(**values)
        compiled = _Compiled(sql, slots)
        _remember(key, compiled)
    return compiled.sql, compiled.params(values)


def prepared_values(name: str, build: Callable[..., QuerySet], **values: Any) -> list[dict[str, Any]]:
    """The rows of `build(**values)`, a `values()` queryset, as dicts; compiled once per shape (see `prepared`)."""
    if connection.vendor != "postgresql":
        return list(build(**values))
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
            return list(build(**values))
        query = queryset.query
        names = [*query.extra_select, *query.values_select, *query.annotation_select]
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

    `related`: forward foreign keys joined into the same query, as `select_related` would (one level); `extra`:
    annotations of the queryset, set on each instance as attributes.
    """
    paths = [(path, model._meta.get_field(path)) for path in related]

    def build_values(**stand_ins: Any) -> QuerySet:
        columns = _columns(model)
        for path, field in paths:
            columns += _columns(field.related_model, f"{path}__")
        return build(**stand_ins).values(*columns, *extra)

    objects = []
    for row in prepared_values(name, build_values, **values):
        instance = _instance(model, row)
        for path, field in paths:
            related_instance = None
            if row[f"{path}__{field.related_model._meta.pk.attname}"] is not None:
                related_instance = _instance(field.related_model, row, f"{path}__")
            field.set_cached_value(instance, related_instance)
        for attribute in extra:
            setattr(instance, attribute, row[attribute])
        objects.append(instance)
    return objects


def _columns(model: type[Model], prefix: str = "") -> list[str]:
    return [f"{prefix}{field.attname}" for field in model._meta.concrete_fields]


def _instance(model: type[Model], row: dict[str, Any], prefix: str = "") -> Model:
    names = [field.attname for field in model._meta.concrete_fields]
    return model.from_db(connection.alias, names, [row[f"{prefix}{name}"] for name in names])
