"""A tiny path language into a tool result's JSON: ``actions.0.expected_value``, ``activities[id=A1].margin_leak``.

Segments are separated by dots. A segment is a key, a list index (``0``, ``-1``) or a selector
``[field=value]`` that picks the first list element whose ``field`` equals ``value`` (compared
as text), optionally after a key (``items[id=ACME-0001]``). ``len(...)`` is not part of the
language: cases check lengths with ``length``.
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"^(?P<key>[^\[\]]*)(?:\[(?P<field>[^=\]]+)=(?P<value>[^\]]*)\])?$")


class PathError(LookupError):
    """The path does not exist in the data (says where it stopped)."""


def split(path: str) -> list[str]:
    """Dots outside ``[...]`` separate segments."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p != ""]


def resolve(data: Any, path: str) -> Any:
    """The value at `path` in `data`; `PathError` when a step is missing."""
    node = data
    walked = ""
    for segment in split(path):
        m = _SEGMENT.match(segment)
        if m is None:
            raise PathError(f"bad path segment {segment!r} in {path!r}")
        key, field, value = m.group("key"), m.group("field"), m.group("value")
        if key:
            node = _step(node, key, walked or "(root)")
            walked = f"{walked}.{key}" if walked else key
        if field is not None:
            if not isinstance(node, list):
                raise PathError(f"{walked or '(root)'} is not a list, cannot select [{field}={value}]")
            match = next((x for x in node if isinstance(x, dict) and str(x.get(field)) == value), None)
            if match is None:
                raise PathError(f"no element of {walked or '(root)'} has {field}={value!r}")
            node = match
            walked = f"{walked}[{field}={value}]"
    return node


def _step(node: Any, key: str, where: str) -> Any:
    if isinstance(node, list):
        try:
            return node[int(key)]
        except (ValueError, IndexError) as exc:
            raise PathError(f"{where} has {len(node)} element(s), no [{key}]") from exc
    if isinstance(node, dict):
        if key not in node:
            raise PathError(f"{where} has no key {key!r} (keys: {', '.join(map(str, node)) or 'none'})")
        return node[key]
    raise PathError(f"{where} is {type(node).__name__}, not an object or list")
