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

`execute` then runs such a statement as one PostgreSQL prepared on the server, once per connection: psycopg 2
writes the values into the SQL on the client, so without it PostgreSQL would parse and plan the same text again
on every request (most of its CPU time for the queue's statements).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, DataError, NotSupportedError, ProgrammingError, connection
from django.db.models import Model, QuerySet

logger = logging.getLogger(__name__)

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


class CompiledSQL(str):
    """The SQL of a statement compiled once per shape; `constants` are the positions of its parameters that are
    part of the shape (the same in every call), which `execute` writes into the statement it prepares."""

    constants: frozenset[int] = frozenset()


class _Compiled:
    __slots__ = ("sql", "slots", "converters", "names")

    def __init__(self, sql: str, slots: list[tuple[str | None, Any]], converters=None, names=None):
        self.sql = CompiledSQL(sql)
        self.sql.constants = frozenset(position for position, (slot, _) in enumerate(slots) if slot is None)
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
        execute(cursor, compiled.sql, compiled.params(values))
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


# --- Prepared on the server (PostgreSQL) ------------------------------------------------------------------------
#
# `execute` sends a statement's text once per connection (PREPARE, values that vary as $1, $2, ...) and afterwards
# only EXECUTE with the values. PostgreSQL then parses it once per connection instead of once per request, and
# after five executions it plans it once too, when its generic plan is no dearer than the plans made for each
# call's values (plan_cache_mode = auto). Sessions must keep their prepared statements between transactions: a
# pooler in transaction mode in front of PostgreSQL (pgbouncer's transaction pooling) does not, and wants
# DOCKET_PREPARED_STATEMENTS=0.

# Statements kept prepared per connection; beyond it the one used longest ago is deallocated. A handful of
# shapes per project setting is what the queue uses; each costs the database backend its plan's memory.
MAX_PREPARED_PER_CONNECTION = 64
_SAVEPOINT = "docket_prepare"
_PLACEHOLDER = re.compile(r"(%%|%s)")

# What PostgreSQL may infer for a parameter, by the Python value the call passes, for the value to mean what it
# means written into the SQL (psycopg 2's way). A value typed by its context (a column, a cast) can be anything
# such a literal could be assigned to; a parameter with no context is inferred as text, which would turn an int
# into a string: such a statement is not prepared (see `_types_agree`).
_INTS = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
_TYPES_FOR: list[tuple[type | tuple[type, ...], set[str] | None]] = [
    (bool, {"boolean"}),
    (int, _INTS),
    ((float, Decimal), {"numeric", "real", "double precision"}),
    (datetime, {"timestamp with time zone", "timestamp without time zone"}),
    (date, {"date"}),
    (timedelta, {"interval"}),
    (uuid.UUID, {"uuid"}),
    (str, None),  # an untyped literal either way: any type PostgreSQL gives it
]


class _ServerStatement:
    """A statement as prepared on the server: its name, its text with $n placeholders, the positions of the
    parameters that vary (the others are written into the text) and the EXECUTE that runs it. `types`: what
    PostgreSQL inferred for each varying parameter; `unchecked`: those whose value was None when they were
    checked, so any value agreed (each is checked against the first value that is not None)."""

    __slots__ = ("name", "text", "varying", "execute_sql", "types", "unchecked")

    def __init__(self, name: str, text: str, varying: tuple[int, ...]):
        self.name = name
        self.text = text
        self.varying = varying
        self.types: list[str] | None = None
        self.unchecked: frozenset[int] = frozenset()
        placeholders = ", ".join(["%s"] * len(varying))
        self.execute_sql = f"EXECUTE {name}({placeholders})" if varying else f"EXECUTE {name}"


_server_statements: OrderedDict[Hashable, _ServerStatement | None] = OrderedDict()


def execute(cursor, sql: str, params: Sequence[Any]) -> None:
    """`cursor.execute(sql, params)`; on PostgreSQL as a statement prepared on the server, once per connection.

    `sql` must be the same text for the same statement on every call (the values in `params`); a `CompiledSQL`
    from `prepared` also says which parameters are constants of its shape. A statement whose parameters
    PostgreSQL would read otherwise than psycopg 2 writes them, or that it cannot prepare, runs as before.
    The PREPARE is part of a connection's set-up, sent outside Django's query log; the EXECUTE is logged.
    """
    db = cursor.db
    if db.vendor != "postgresql" or not getattr(settings, "DOCKET_PREPARED_STATEMENTS", True):
        cursor.execute(sql, params)
        return
    db.validate_no_broken_transaction()
    db.ensure_connection()
    raw = db.connection
    statement = _server_statement(raw, sql, params)
    if statement is None:
        cursor.execute(sql, params)
        return
    prepared = _prepared_on(db)
    values = [params[position] for position in statement.varying]
    if statement.unchecked and not _values_agree(statement, values):
        cursor.execute(sql, params)
        return
    for attempt in (1, 2):
        if statement.name in prepared:
            prepared.move_to_end(statement.name)
        elif not _prepare(db, prepared, statement, values):
            cursor.execute(sql, params)
            return
        try:
            cursor.execute(statement.execute_sql, values)
            return
        except DatabaseError as error:
            # Gone from the server (DISCARD ALL, a pooler): prepare it again, unless a transaction it broke is open.
            if getattr(error.__cause__, "pgcode", None) != "26000" or attempt == 2 or _in_transaction(raw):
                raise
            prepared.pop(statement.name, None)


def _in_transaction(raw) -> bool:
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE

    return not raw.autocommit or raw.get_transaction_status() != TRANSACTION_STATUS_IDLE


def _prepared_on(db) -> OrderedDict[str, None]:
    """The names prepared on the database connection `db` holds now; a new connection starts with none."""
    state = getattr(db, "_docket_prepared", None)
    if state is None or state[0] is not db.connection:
        state = (db.connection, OrderedDict())
        db._docket_prepared = state
    return state[1]


def _server_statement(raw, sql: str, params: Sequence[Any]) -> _ServerStatement | None:
    """The statement to prepare for `sql` with these constants (None: run it as it is), made once per process."""
    constants = getattr(sql, "constants", frozenset())
    try:
        key = (sql, tuple(params[position] for position in sorted(constants)))
        statement = _server_statements[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable constant (a list): not worth a statement per value
        return None
    else:
        return statement
    parts = _PLACEHOLDER.split(sql)
    text, varying = [], []
    position = 0
    with raw.cursor() as literal:
        for part in parts:
            if part == "%%":
                text.append("%")
            elif part == "%s":
                if position >= len(params):
                    statement = None
                    break
                if position in constants:
                    text.append(literal.mogrify("%s", [params[position]]).decode())
                else:
                    varying.append(position)
                    text.append(f"${len(varying)}")
                position += 1
            else:
                text.append(part)
        else:
            statement = None
            if position == len(params) and "%" not in sql.replace("%%", "").replace("%s", ""):
                prepared_text = "".join(text)
                name = "docket_" + hashlib.blake2b(prepared_text.encode(), digest_size=10).hexdigest()
                statement = _ServerStatement(name, prepared_text, tuple(varying))
    with _lock:
        _server_statements[key] = statement
        while len(_server_statements) > MAX_SHAPES:
            _server_statements.popitem(last=False)
    return statement


def _prepare(db, prepared: OrderedDict[str, None], statement: _ServerStatement, values: list) -> bool:
    """PREPARE `statement` on the connection and check what PostgreSQL inferred for its parameters; False when it
    is not to be prepared (it then never is, in this process). Inside a transaction a savepoint keeps a refusal
    from breaking it."""
    raw = db.connection
    commands = []
    while len(prepared) >= MAX_PREPARED_PER_CONNECTION:
        commands.append(f"DEALLOCATE {prepared.popitem(last=False)[0]}")
    commands.append(f"PREPARE {statement.name} AS {statement.text}")
    in_transaction = _in_transaction(raw)
    if in_transaction:
        commands = [f"SAVEPOINT {_SAVEPOINT}", *commands, f"RELEASE SAVEPOINT {_SAVEPOINT}"]
    commands.append(
        f"SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{statement.name}'"  # noqa: S608
    )
    try:
        with db.wrap_database_errors, raw.cursor() as cursor:
            cursor.execute("; ".join(commands))
            (types,) = cursor.fetchone()
    except (ProgrammingError, DataError, NotSupportedError) as error:
        if in_transaction:
            with db.wrap_database_errors, raw.cursor() as cursor:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")
        _refuse(statement, f"PostgreSQL could not prepare it ({error})")
        return False
    if not _types_agree(types, values):
        with db.wrap_database_errors, raw.cursor() as cursor:
            cursor.execute(f"DEALLOCATE {statement.name}")
        _refuse(statement, f"its parameters would be read as {types}")
        return False
    if statement.types is None:
        statement.unchecked = frozenset(index for index, value in enumerate(values) if value is None)
        statement.types = types
    prepared[statement.name] = None
    return True


def _values_agree(statement: _ServerStatement, values: list) -> bool:
    """Whether the values of parameters not checked yet (None until now) agree with what PostgreSQL inferred for
    them; a value that does not makes the statement run unprepared from now on."""
    types = statement.types
    if types is None:  # not prepared yet in this process: `_prepare` checks every value
        return True
    seen = {index for index in statement.unchecked if values[index] is not None}
    if not seen:
        return True
    if not _types_agree([types[index] for index in seen], [values[index] for index in seen]):
        _refuse(statement, f"a value of {sorted(seen)} would be read as {[types[index] for index in seen]}")
        return False
    statement.unchecked = statement.unchecked - seen
    return True


def _types_agree(types: list[str], values: list) -> bool:
    """Whether each parameter, as PostgreSQL inferred it, holds the value as psycopg 2's literal of it would."""
    if len(types) != len(values):
        return False
    for inferred, value in zip(types, values, strict=True):
        if value is None:
            continue
        if isinstance(value, list):
            if not inferred.endswith("[]"):
                return False
            inferred = inferred[:-2]
            if not value or all(type(v) is int for v in value):
                if value and inferred not in _INTS:
                    return False
                continue
            if not all(isinstance(v, str) for v in value):
                return False
            continue
        if getattr(value, "adapted", None) is not None or isinstance(value, dict):  # psycopg 2's Json (Django's Jsonb)
            if inferred not in {"jsonb", "json"}:
                return False
            continue
        for kinds, allowed in _TYPES_FOR:
            if isinstance(value, kinds):
                if allowed is not None and inferred not in allowed:
                    return False
                break
        else:
            return False  # a value of another kind: not known to mean the same as a parameter
    return True


def _refuse(statement: _ServerStatement, why: str) -> None:
    with _lock:
        for key, known in list(_server_statements.items()):
            if known is statement:
                _server_statements[key] = None
    logger.info("Statement %s runs unprepared: %s. Its text: %s", statement.name, why, statement.text[:300])
