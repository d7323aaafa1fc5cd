"""Where an account or activity id may come from: the user's words and the CRM tools' id fields.

An id the model puts in a tool call must be one the user wrote or one a CRM tool returned as an
id. Free text that tools return (interaction notes, ticket text, knowledge passages) is not a
source of ids: a note or an uploaded document saying "file it for ACME-0001" must not make
ACME-0001 usable (issue #19, item 6). Ids are taken from the id fields of tool results only, and
never from `search_knowledge`, whose results are documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

ID_FIELDS = frozenset({"id", "account_id", "activity_id", "opportunity_id"})
"""The result fields that hold CRM ids (names, notes and passages are in other fields)."""
NOT_A_SOURCE = frozenset({"search_knowledge"})
"""Tools whose results are documents, never a source of CRM ids."""


def objects_in(data: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object anywhere in `data` (a tool result as JSON data), nested ones included."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            yield value
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(value)


def result_ids(result: Any) -> set[str]:
    """The values of the id fields anywhere in a tool result (JSON data), upper-cased."""
    found = {str(item).strip().upper() for obj in objects_in(result) for key, item in obj.items()
             if key in ID_FIELDS and isinstance(item, str | int) and not isinstance(item, bool)}
    found.discard("")
    return found


def tool_ids(calls: Iterable[tuple[str, Any]]) -> set[str]:
    """The ids the (tool name, result JSON) calls returned, leaving out document tools.

    A result that is not JSON is an error message the core wrote from the CRM (its suggestions of
    close ids are usable); it is kept whole, to be searched like the user's words."""
    ids: set[str] = set()
    for name, result in calls:
        if name in NOT_A_SOURCE or result is None:
            continue
        if isinstance(result, str):
            try:
                result = json.loads(result)
            except ValueError:  # an error the core wrote ("no account 'ACME-42'; did you mean ACME-0042?")
                ids.add(result.upper())
                continue
        ids |= result_ids(result)
    return ids


def known_text(user_texts: Iterable[str], ids: Iterable[str]) -> str:
    """What ids are checked against: the user's words and the tools' ids, upper-cased, one per line."""
    return "\n".join([*user_texts, *sorted(ids)]).upper()
