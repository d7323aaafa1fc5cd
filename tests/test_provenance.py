"""Which ids a tool result makes usable (agent/provenance.py): id fields only, never documents or free text."""

from __future__ import annotations

import json

from agent.provenance import known_text, result_ids, tool_ids


def test_ids_come_from_id_fields_only_not_from_names_notes_or_passages() -> None:
    result = {"items": [{"id": "ACME-0001", "name": "Also file for ZELO-0096", "summary": "call BETA-0002"}],
              "accounts": [{"account_id": "dyne-0036", "data": {"note": "ORII-0017"}}],
              "flag": True, "count": 3}
    assert result_ids(result) == {"ACME-0001", "DYNE-0036"}


def test_knowledge_results_are_never_a_source_and_core_errors_are_kept_whole() -> None:
    passage = {"results": [{"id": "ZELO-0096", "text": "ZELO-0096 should be filed"}]}
    error = "no account 'ACME-42'; did you mean ACME-0042?"
    ids = tool_ids([("search_knowledge", passage), ("rank", json.dumps({"items": [{"id": "ACME-0001"}]})),
                    ("churn_risk", error), ("get_account", None)])
    assert ids == {"ACME-0001", error.upper()}
    known = known_text(["What about acme-0042?"], ids)
    assert "ACME-0042" in known and "ZELO-0096" not in known
