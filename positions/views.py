"""Desk pages: the positions table (sortable, filterable, live) and the what-if."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from positions import selectors
from riskdesk.views import desk_member_required, render_page

SHOCK_LIMIT = Decimal(99)  # percent: a fall of 100 % is a zero price, which no perpetual reaches


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _filters(request: HttpRequest) -> selectors.PositionFilter:
    q = request.GET
    sort = q.get("sort", "distance")
    return selectors.PositionFilter(
        account_id=_int(q.get("account")),
        symbol=q.get("symbol", "").strip()[:32],
        side=q.get("side", ""),
        band=q.get("band", ""),
        sort=sort if sort in selectors.SORT_KEYS else "distance",
        descending=q.get("dir") == "desc",
    )


def _table_context(request: HttpRequest) -> dict[str, Any]:
    f = _filters(request)
    # An account filter names one account: it must be the user's (404 otherwise, as everywhere).
    accounts = selectors.desk_accounts(request.user, account_id=f.account_id)
    return {
        "rows": selectors.position_rows(accounts, f),
        "closed": selectors.closed_today(accounts, f),
        "filters": f,
        "accounts": accounts,
    }


@desk_member_required
def position_list(request: HttpRequest) -> HttpResponse:
    context = _table_context(request)
    context["all_accounts"] = selectors.desk_accounts(request.user) if context["filters"].account_id else None
    context["columns"] = COLUMNS
    context["query"] = request.GET.urlencode()
    return render_page(request, "positions/list.html", context, accounts=context["all_accounts"] or context["accounts"])


@desk_member_required
def position_table(request: HttpRequest) -> HttpResponse:
    return render(request, "positions/_table.html", _table_context(request))


@desk_member_required
def closed_table(request: HttpRequest) -> HttpResponse:
    """Today's closed and liquidated positions, for the live refresh (a close is a risk change)."""
    return render(request, "positions/_closed.html", _table_context(request))


COLUMNS = [
    ("account", "account"),
    ("symbol", "symbol"),
    ("side", "side"),
    ("size", "size"),
    ("notional", "notional"),
    ("leverage", "leverage"),
    ("entry", "entry"),
    ("mark", "mark"),
    ("upnl", "uPnL"),
    ("liq", "liquidation"),
    ("distance", "distance"),
]


# --------------------------------------------------------------------------- what-if


def _shock(request: HttpRequest) -> tuple[dict[str, Decimal] | None, dict[str, Any]]:
    """The shocks asked for (None before the form is sent) and what to echo back into the form."""
    q = request.GET
    # The form's hidden mode=pct plus the pressed button's value: the crash button wins when pressed.
    modes = q.getlist("mode")
    mode = "crash" if "crash" in modes else (modes[-1] if modes else "")
    symbol = q.get("symbol", "ALL")
    form = {"mode": mode or "pct", "symbol": symbol, "shock": q.get("shock", "-10")}
    if mode == "crash":
        moves = selectors.crash_day_moves()
        return {s: m.shock for s, m in moves.items()}, {**form, "moves": moves}
    if mode != "pct":
        return None, form
    try:
        percent = Decimal(q.get("shock", ""))
    except InvalidOperation:
        return None, {**form, "error": True}
    if not percent.is_finite() or abs(percent) > SHOCK_LIMIT:
        return None, {**form, "error": True}
    return {"*" if symbol == "ALL" else symbol: percent / 100}, form


def _expand(shocks: dict[str, Decimal], accounts: list[selectors.AccountView], *, crash: bool) -> dict[str, Decimal]:
    """ "*" means every symbol held; the crash replay falls back to its proxy for symbols it has no day for."""
    symbols = {r.symbol for a in accounts for r in a.positions}
    if "*" in shocks:
        return dict.fromkeys(symbols, shocks["*"])
    if crash:
        proxy = shocks.get(selectors.CRASH_PROXY, Decimal(0))
        return {s: shocks.get(s, proxy) for s in symbols}
    return shocks


@desk_member_required
def whatif(request: HttpRequest) -> HttpResponse:
    accounts = selectors.desk_accounts(request.user)
    shocks, form = _shock(request)
    context: dict[str, Any] = {
        "form": form,
        "symbols": sorted({r.symbol for a in accounts for r in a.positions}),
        "accounts": accounts,
        "results": None,
    }
    if shocks is not None:
        applied = _expand(shocks, accounts, crash=form["mode"] == "crash")
        context["applied"] = sorted(applied.items())
        context["results"] = selectors.whatif_projections(accounts, applied)
    template = "positions/_whatif_results.html" if request.headers.get("HX-Request") else "positions/whatif.html"
    if request.headers.get("HX-Request"):
        return render(request, template, context)
    return render_page(request, template, context, accounts=accounts)
