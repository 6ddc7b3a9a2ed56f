"""Reads for the risk model: the desk's inputs (positions, wallets, brackets) from the live state or
the last rows, the cached result and the VaR history (the database's rows, the cache as the fast
path). No writes (services.py writes the rows and the cache)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.cache import cache

from accounts import access
from accounts.models import ExchangeAccount, User
from positions import selectors as position_selectors
from positions.figures import PositionInput
from positions.margin import Bracket
from riskdesk.redis_clients import REDIS_DOWN
from rules.models import VarHistory

log = logging.getLogger(__name__)

LATEST_KEY = "allocation:latest"
# The desk's daily points as the chart reads them (a copy of the VarHistory rows: a flush loses nothing).
HISTORY_KEY = "allocation:var_history:desk"
# Where the history lived before it had a table (one list, accounts inside): adopted once, then unused.
LEGACY_HISTORY_KEY = "allocation:var_history"
HISTORY_KEEP = 400  # trading days of VaR points read (the chart's "VaR over time", the report)


@dataclass(frozen=True)
class AccountInputs:
    """One account as the maths takes it: USDT positions at their marks, the cross wallet (isolated
    wallets are on each position), its margin balance (equity) and its bracket tables."""

    account_id: int
    name: str
    profile_id: int | None
    cross_wallet: Decimal
    equity: Decimal
    positions: tuple[PositionInput, ...]
    brackets: dict[str, list[Bracket]] = field(default_factory=dict)
    problem: str = ""  # why this account cannot be measured (no wallet known, several margin assets)


def _inputs(view: position_selectors.AccountView, profile_id: int | None, brackets: dict) -> AccountInputs:
    positions = tuple(position_selectors.position_inputs(view))
    wallet = view.figure("wallet_balance")
    equity = view.figure("margin_balance")
    problem = ""
    if {p.margin_asset for p in positions} - {"USDT"}:
        # The live state carries one wallet total, not one per margin asset: no split by guesswork.
        problem = "positions margined in an asset other than USDT"
    elif wallet is None:
        problem = "no wallet balance known for this account"
    cross = (wallet or Decimal(0)) - sum((p.isolated_wallet for p in positions), Decimal(0))
    return AccountInputs(
        account_id=view.id,
        name=view.name,
        profile_id=profile_id,
        cross_wallet=cross,
        equity=equity if equity is not None else (wallet or Decimal(0)),
        positions=positions,
        brackets=brackets,
        problem=problem,
    )


def desk_inputs(*, accounts: list[ExchangeAccount] | None = None) -> list[AccountInputs]:
    """Every enabled account (or those given) with its current positions: the live state, else the
    last rows (positions.selectors decides, as for every desk page)."""
    if accounts is None:
        accounts = list(ExchangeAccount.objects.filter(enabled=True).order_by("name"))
    defaults, overrides = position_selectors.bracket_tables([a.id for a in accounts])
    out = []
    for account in accounts:
        view = position_selectors.account_view(account)
        out.append(_inputs(view, account.risk_profile_id, {**defaults, **overrides.get(account.id, {})}))
    return out


def latest_result() -> dict[str, Any] | None:
    """The last desk result the beat job (or a page, when there was none) computed."""
    try:
        return cache.get(LATEST_KEY)
    except REDIS_DOWN:
        log.warning("allocation: cache down, no cached VaR result")
        return None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else (f"{value.normalize():f}" if value else "0")


def var_point(row: VarHistory) -> dict[str, Any]:
    """A VarHistory row as the chart, the API and the report take it (money as exact strings)."""
    return {
        "day": row.day.isoformat(),
        "as_of": row.as_of.isoformat() if row.as_of else None,
        "var_historical": _money(row.var_historical),
        "es_historical": _money(row.es_historical),
        "var_parametric": _money(row.var_parametric),
        "equity": _money(row.equity),
        "not_available": row.not_available,
    }


def var_history_rows(*, scope: str = VarHistory.DESK, since: date | None = None) -> list[dict[str, Any]]:
    """The database's daily points of one scope ("desk" or an account's id), oldest first, the last
    HISTORY_KEEP trading days (from `since` when given)."""
    rows = VarHistory.objects.filter(scope=scope)
    if since is not None:
        rows = rows.filter(day__gte=since)
    newest = list(rows.order_by("-day")[:HISTORY_KEEP])
    return [var_point(r) for r in reversed(newest)]


def var_history(*, account_id: int | None = None, since: date | None = None) -> list[dict[str, Any]]:
    """[{day, as_of, var_historical, es_historical, var_parametric, equity, not_available}], oldest
    first: the desk's points (account_id None) or one account's. The desk's whole series comes from
    the cache when it is there (every page view reads it); otherwise, and for an account, the rows."""
    if account_id is None and since is None:
        try:
            cached = cache.get(HISTORY_KEY)
        except REDIS_DOWN:
            cached = None
        if cached is not None:
            return list(cached)
    return var_history_rows(scope=VarHistory.DESK if account_id is None else str(account_id), since=since)


def legacy_var_history() -> list[dict[str, Any]]:
    """The points the cache held before the table existed ([{day, var_historical, ..., accounts:
    {id: var}}]); read once by services to adopt them."""
    try:
        return list(cache.get(LEGACY_HISTORY_KEY) or [])
    except REDIS_DOWN:
        return []


def visible_part(result: dict[str, Any], user: User) -> dict[str, Any]:
    """What `user` may see of a desk result. Risk managers and viewers: all of it. A trader: their own
    accounts' stand-alone VaR/ES, the correlations and crash moves of the symbols they hold; nothing
    that carries other accounts' positions (desk totals, contributions, the desk's symbols, scenario
    rows of others)."""
    if access.can_see_all_accounts(user):
        return {**result, "scope": "desk"}
    mine = access.visible_account_ids(user)
    accounts = [
        {**a, "contribution_historical": None, "contribution_parametric": None}
        for a in result.get("accounts", [])
        if a["account_id"] in mine
    ]
    held = {p["symbol"] for a in accounts for p in a.get("positions", [])}
    scenarios = [
        {
            **s,
            "desk_loss": None,
            "account_loss": {k: v for k, v in (s.get("account_loss") or {}).items() if int(k) in mine},
            "moves": {k: v for k, v in (s.get("moves") or {}).items() if k in held},
            "flags": {k: v for k, v in (s.get("flags") or {}).items() if k in held},
            "liquidations": [r for r in s.get("liquidations", []) if r["account_id"] in mine],
        }
        for s in result.get("scenarios", [])
    ]
    # The correlations of the symbols the trader holds only: the desk's other symbols are others' positions.
    corr = result.get("correlation") or {"symbols": [], "matrix": []}
    keep = [i for i, sym in enumerate(corr["symbols"]) if sym in held]
    correlation = {
        "symbols": [corr["symbols"][i] for i in keep],
        "matrix": [[corr["matrix"][i][j] for j in keep] for i in keep],
    }
    return {
        **result,
        "scope": "own_accounts",
        "desk": None,
        "symbols": [],
        "accounts": accounts,
        "scenarios": scenarios,
        "correlation": correlation,
        "adviser_inputs": None,
        "problems": [
            p for p in result.get("problems", []) if p.get("account_id") in mine or p.get("account_id") is None
        ],
    }


def var_by_account(accounts: list[Any] | None = None) -> dict[int, dict[str, Any]]:
    """{account_id: {"var", "es", "not_available", "as_of"}} from the cached result, for the overview's
    VaR column. Never computes (the overview refreshes every second or so): no result yet is no column
    value. `accounts` (views with id and name): an entry about an account of another name is left out."""
    result = latest_result() or {}
    names = None if accounts is None else {a.id: a.name for a in accounts}
    return {
        a["account_id"]: {
            "var": a.get("var_historical"),
            "es": a.get("es_historical"),
            "not_available": a.get("not_available") or result.get("not_available") or "",
            "as_of": result.get("as_of"),
        }
        for a in result.get("accounts", [])
        if names is None or names.get(a["account_id"]) == a["name"]
    }
