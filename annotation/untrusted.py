"""Reading what people send (API bodies, the labeling page's calls, import rows, taxonomy files) with limits.

One place decides what Docket refuses before any view or service sees the data: structures nested deeper than
MAX_NESTING (the parsers would otherwise recurse until Python gives up), NUL characters (PostgreSQL cannot
store them in text or JSON, so they would fail half-way through a write), and YAML aliases (a few hundred
bytes can expand into megabytes).
"""

import json
from typing import Any

import yaml

from annotation.exceptions import InputRejected

# Deepest structure accepted. Real metadata and taxonomies stay under ten levels; Python's own parsers
# recurse about a thousand levels before failing.
MAX_NESTING = 32
NUL = "\x00"


def json_read(text: str | bytes, *, what: str = "The request body") -> Any:
    """Parse JSON and check it with `storable`. Malformed JSON still raises json.JSONDecodeError (a
    ValueError), so each caller keeps its own wording for it."""
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise InputRejected(_too_deep(what)) from error
    if isinstance(text, str) and _plainly_storable(text):
        return value
    return storable(value, what=what)


def _plainly_storable(text: str) -> bool:
    """Whether JSON `text` cannot hold what `storable` refuses, told from the text alone (an import reads
    100,000 lines: walking each parsed line was a large part of its time). JSON writes a NUL only as the escape
    \\u0000 (a raw one is not valid JSON), and nesting deeper than MAX_NESTING needs more opening brackets than
    that. A text with such an escape or so many brackets (even inside strings) is walked as before."""
    return "\\u0000" not in text and NUL not in text and text.count("{") + text.count("[") <= MAX_NESTING


def storable(value: Any, *, what: str = "The input") -> Any:
    """`value` unchanged if every string in it (keys too) is free of NUL and it nests at most MAX_NESTING
    levels; InputRejected naming the first place that is not, otherwise."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                raise InputRejected(
                    f"{what} contains a NUL character (\\u0000){_at(where)}; Docket cannot store it. Remove it.",
                    where=where,
                )
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_NESTING:
                raise InputRejected(_too_deep(what, where), where=where)
            if isinstance(item, dict):
                for key, child in item.items():
                    name = str(key)
                    if NUL in name:
                        raise InputRejected(
                            f"{what} has a name with a NUL character (\\u0000){_at(where)}; Docket cannot store it.",
                            where=where,
                        )
                    stack.append((child, depth + 1, f"{where}.{name}" if where else name))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
    return value


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: `*name` (and `<<: *name`) is refused, not expanded."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise InputRejected(
                f"The YAML uses an alias (*{event.anchor}) on line {event.start_mark.line + 1}; Docket does not "
                "expand aliases. Write the value out in full."
            )
        return super().compose_node(parent, index)


def yaml_read(text: str, *, what: str = "The file") -> Any:
    """Parse YAML (no aliases) and check it with `storable`. Malformed YAML still raises yaml.YAMLError."""
    try:
        value = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError as error:
        raise InputRejected(_too_deep(what)) from error
    return storable(value, what=what)


def _at(where: str) -> str:
    return f" at {where}" if where else ""


def _too_deep(what: str, where: str = "") -> str:
    return f"{what} is nested too deeply{_at(where)}: at most {MAX_NESTING} levels are accepted."
