"""The scheduled report's VaR section (alerts/reports calls `var_section`): the latest computed
figures for the report's accounts (the beat job's cached result) and the daily VaR points inside
the report's period (the VarHistory rows). Plain JSON (money as exact strings), like the rest of
Report.figures."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from rules.allocation import selectors


def _day(at: datetime) -> str:
    return at.astimezone(ZoneInfo(settings.TRADING_DAY_TZ)).date().isoformat()


def var_section(*, account_ids: list[int], start: datetime, end: datetime) -> dict[str, Any]:
    result = selectors.latest_result()
    if result is None:
        return {
            "available": False,
            "not_available": "no VaR computed yet",
            "as_of": None,
            "desk": None,
            "accounts": [],
            "history": [],
            "liquidations": [],
        }
    wanted = set(account_ids)
    rows = [a for a in result.get("accounts", []) if a["account_id"] in wanted]
    whole_desk = {a["account_id"] for a in result.get("accounts", [])} <= wanted
    first, last = _day(start), _day(end)
    # The daily points are the VarHistory rows (the desk's for the whole desk, the account's for one).
    history = []
    if whole_desk or len(wanted) == 1:
        scope = None if whole_desk else next(iter(wanted))
        since = date.fromisoformat(first)
        for point in selectors.var_history(account_id=scope, since=since):
            if point["day"] < last:
                history.append({"day": point["day"], "var": point["var_historical"], "es": point["es_historical"]})
    crash = next(iter(result.get("scenarios") or []), {})
    return {
        "available": bool(result.get("available")),
        "not_available": result.get("not_available") or "",
        "as_of": result.get("as_of"),
        "desk": result.get("desk") if whole_desk else None,
        "accounts": [
            {
                "name": a["name"],
                "var": a.get("var_historical"),
                "es": a.get("es_historical"),
                "var_parametric": a.get("var_parametric"),
                "not_available": a.get("not_available") or "",
            }
            for a in rows
        ],
        "history": history,
        "liquidations": [
            {"name": x["name"], "symbol": x.get("symbol"), "loss": x.get("loss")}
            for x in crash.get("liquidations", [])
            if x["account_id"] in wanted
        ],
    }
