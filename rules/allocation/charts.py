"""The /allocation/ charts' data (read by static/js/allocation.js from a json_script): numbers as
strings, as everywhere money travels; the script parses them for drawing only."""

from __future__ import annotations

from typing import Any


def chart_data(
    *, result: dict[str, Any], suggestion: dict[str, Any] | None, history: list[dict[str, Any]]
) -> dict[str, Any]:
    accounts = [a for a in result.get("accounts", []) if a.get("var_historical") is not None]
    limits = (suggestion or {}).get("limits") or []
    return {
        "by_account": [
            {
                "name": a["name"],
                "contribution": a.get("contribution_historical"),
                "standalone": a["var_historical"],
            }
            for a in accounts
        ],
        "by_symbol": [
            {"name": s["symbol"], "contribution": s.get("contribution_historical")}
            for s in result.get("symbols", [])
            if s.get("contribution_historical") is not None
        ],
        "history": [
            {
                "day": h["day"],
                "var": h.get("var_historical"),
                "es": h.get("es_historical"),
                "param": h.get("var_parametric"),
            }
            for h in history
            if h.get("var_historical") is not None
        ],
        "correlation": result.get("correlation") or {"symbols": [], "matrix": []},
        "limits": [
            {
                "name": f"{r['profile']} · {r['symbol']}",
                "now": r.get("limit_notional_now"),
                "position": r.get("notional_now"),
                "suggested": r.get("notional_cap"),
            }
            for r in limits
            if r.get("notional_cap") is not None
        ],
    }
