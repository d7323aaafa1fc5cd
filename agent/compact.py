"""What the model reads back from a tool: a short projection of the core's pydantic result.

The embedded model evaluates ~50–70 prompt tokens/s on this machine, so every tool result
it reads costs seconds. Each projection keeps the identifiers and the figures an answer
quotes and drops the rest (inputs echo, per-row metadata); numbers are rounded for reading
(money to whole units, ratios to 3 decimals). The full result is logged unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

MAX_ROWS = 10
KNOWLEDGE_CHARS = 600


def num(x: Any) -> Any:
    """Round a float for reading: |x| ≥ 100 → integer, ≥ 1 → 2 decimals, else 3 decimals."""
    if isinstance(x, bool) or not isinstance(x, float):
        return x
    if abs(x) >= 100:
        return round(x)
    return round(x, 2) if abs(x) >= 1 else round(x, 3)


def _clean(obj: Any) -> Any:
    """Drop nulls and empty containers, round floats, recursively."""
    if isinstance(obj, dict):
        out = {k: _clean(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not None and v != [] and v != {}}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return num(obj)


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d.get(k) for k in keys}


def _score_activities(d: dict[str, Any]) -> dict[str, Any]:
    acts = d["activities"]
    return {
        "period": d["period"],
        "total_cost": d["total_cost"],
        "total_margin_leak": d["total_margin_leak"],
        "activities_by_margin_leak": [
            _pick(a, "id", "name", "cost_share", "value_share", "value_cost_index", "margin_leak", "quadrant")
            for a in acts[:MAX_ROWS]
        ],
        "more": max(0, len(acts) - MAX_ROWS),
    }


def _rank(d: dict[str, Any]) -> dict[str, Any]:
    keep = ("arr", "band", "top_driver", "segment", "quadrant", "owner")
    items = [
        {**_pick(i, "rank", "id", "name"), d["metric"]: i["value"], **_pick(i.get("context") or {}, *keep)}
        for i in d["items"]
    ]
    return {
        "metric": d["metric"],
        "as_of": d["as_of"],
        "period": d["period"],
        "total_matching": d["total_matching"],
        "items": items,
    }


def _risk_row(a: dict[str, Any]) -> dict[str, Any]:
    return {
        **_pick(a, "account_id", "name", "segment", "arr", "probability", "band", "arr_at_risk"),
        "drivers": [x["phrase"] for x in a["drivers"]],
    }


def _churn_risk(d: dict[str, Any]) -> dict[str, Any]:
    rows = [_risk_row(a) for a in d["accounts"]]
    if len(rows) == 1 and d["matched"] == 1:
        return {"as_of": d["as_of"], "method": d["model"]["method"], **rows[0]}
    return {
        "as_of": d["as_of"],
        "method": d["model"]["method"],
        "matched": d["matched"],
        "total_arr_at_risk": d["total_arr_at_risk"],
        "accounts": rows,
    }


def _nba(d: dict[str, Any]) -> dict[str, Any]:
    return {
        **_pick(d, "account_id", "name", "arr", "p_churn", "band"),
        "actions": [
            {
                **_pick(a, "action", "kind", "activity", "expected_value", "cost"),
                "because": list(dict.fromkeys(e["phrase"] for e in a["evidence"])),
            }
            for a in d["actions"]
        ],
        "suppressed": [_pick(s, "action", "reason") for s in d.get("suppressed", [])],
    }


def _get_account(d: dict[str, Any]) -> dict[str, Any]:
    out = _pick(
        d, "id", "name", "segment", "industry", "region", "plan", "arr", "owner", "status",
        "tenure_days", "days_to_renewal", "open_tickets", "failed_or_late_invoices_365d",
        "champions_active", "champions_left",
    )
    nps = d.get("last_nps") or {}
    out["last_nps"] = nps.get("score")
    usage = d.get("latest_usage") or {}
    out["latest_usage"] = {k: v for k, v in usage.items() if k != "account_id"} or None
    return out


def _timeline(d: dict[str, Any]) -> dict[str, Any]:
    return {
        **_pick(d, "account_id", "name", "total"),
        "events": [_pick(e, "date", "kind", "summary") for e in d["events"]],
    }


def _knowledge(d: dict[str, Any]) -> dict[str, Any]:
    if not d.get("on_topic", True):
        return {
            "results": [],
            "note": "Nothing in the knowledge base is about this. The question is outside what this "
            "assistant covers (value chains, CRM accounts, churn): say so, and do not answer it from memory.",
        }
    return {
        "results": [
            {"source": h["source"], "section": h["section"], "text": h["text"][:KNOWLEDGE_CHARS]}
            for h in d["results"]
        ]
    }


def _analysis(d: dict[str, Any]) -> dict[str, Any]:
    s3, s4, s5 = d["step3_costs"], d["step4_opportunities"], d["step5_advantage"]
    return {
        "period": d["period"],
        "total_cost": d["total_cost"],
        "1_primary": d["step1_primary"]["summary"],
        "2_support": d["step2_support"]["summary"],
        "top_margin_leak": [_pick(i, "id", "name", "margin_leak", "quadrant") for i in s3["margin_leak"][:3]],
        "bottlenecks": [_pick(b, "id", "name", "performance_gap") for b in s3["bottlenecks"][:3]],
        "4_opportunities": s4["summary"],
        "top_initiatives": [_pick(i, "id", "description", "type", "roi", "net_benefit") for i in s4["initiatives"][:3]],
        "5_advantage": s5["narrative"],
        "decorative_initiatives": s5["decorative"],
    }


def _proposed(d: dict[str, Any]) -> dict[str, Any]:
    return {
        **_pick(d, "id", "status", "action", "account_id", "activity_id", "expected_value"),
        "note": "pending: a human must approve it",
        "duplicate_of": d.get("duplicate_of"),
    }


PROJECTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "score_activities": _score_activities,
    "rank": _rank,
    "churn_risk": _churn_risk,
    "next_best_action": _nba,
    "get_account": _get_account,
    "account_timeline": _timeline,
    "search_knowledge": _knowledge,
    "propose_recommendation": _proposed,
    "value_chain_analysis": _analysis,
}


def compact(name: str, result: BaseModel) -> Any:
    """The projection of `result` for tool `name` as plain data (unknown tools: the whole dump)."""
    dumped = result.model_dump(mode="json")
    project = PROJECTIONS.get(name)
    return _clean(project(dumped) if project else dumped)


def compact_json(name: str, result: BaseModel) -> str:
    """`compact` as the compact JSON the model reads."""
    return json.dumps(compact(name, result), ensure_ascii=False, separators=(",", ":"))
