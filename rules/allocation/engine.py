"""The bridge between the desk (rules.allocation.selectors' inputs, marketdata's bars) and the maths
(positions.portfolio): calls it, and turns its answers and its refusals into the result the pages,
the API, the report and the cache share: plain JSON, money as exact decimal strings, and every
figure that cannot be computed replaced by a "not available" reason (never NaN, never a 500).

Only `closes_from_bars` reads the database; the rest is plain Python on its arguments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from positions.portfolio import history as pf_history
from positions.portfolio import scenarios as pf_scenarios
from positions.portfolio import volatility as pf_volatility
from positions.portfolio.errors import PortfolioError

DAY_MS = 86_400_000
CONFIDENCE = Decimal("0.99")
HALF_LIFE_DAYS = 10.0
CRASH = "crash_2021_05_19"
CENT = Decimal("0.01")


def closes_from_bars(symbols: Sequence[str], *, as_of: datetime, days: int) -> dict[str, tuple[list[int], list]]:
    """{symbol: (open_ms, closes)} of the stored 1-minute bars that had CLOSED by `as_of` (a bar
    opening less than a minute before as_of is still forming: left out), over `days` days."""
    from marketdata import bars

    if not symbols:
        return {}
    end = as_of - timedelta(seconds=59)
    rows = bars.closes(list(symbols), as_of - timedelta(days=days), end)
    return {s: ([int(t.timestamp() * 1000) for t, _ in pts], [float(c) for _, c in pts]) for s, pts in rows.items()}


# --------------------------------------------------------------------------- helpers


def _s(value: Any, places: str | None = None) -> str | None:
    """An exact decimal string (None stays None; NaN/inf never leave: they become None)."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = float(value)
        if not math.isfinite(value):
            return None
        value = Decimal(format(value, ".12f"))
    if not value.is_finite():
        return None
    if places:
        value = value.quantize(Decimal(places))
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def _signed(p: Any) -> Decimal:
    """Signed quantity: PositionInput holds BOTH signed and a hedge leg's size unsigned."""
    return -abs(p.qty) if p.side == "SHORT" else p.qty


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _problem(code: str, reason: str, *, account_id: int | None = None, symbol: str | None = None) -> dict:
    return {"code": code, "reason": reason, "account_id": account_id, "symbol": symbol}


def empty_result(as_of_ms: int, reason: str, code: str = "not_available") -> dict[str, Any]:
    return {
        "as_of": _iso(as_of_ms),
        "confidence": _s(CONFIDENCE),
        "horizon_days": 1,
        "available": False,
        "not_available": reason,
        "not_available_code": code,
        "partial": False,
        "problems": [],
        "desk": None,
        "accounts": [],
        "symbols": [],
        "correlation": {"symbols": [], "matrix": []},
        "scenarios": [],
        "history": {},
    }


def _history_problems(
    symbols: Sequence[str], closes: dict, *, as_of_ms: int, min_days: int
) -> dict[str, tuple[str, str]]:
    """{symbol: (code, reason)} for the symbols that cannot be measured: no bar, or too little history."""
    out = {}
    for symbol in symbols:
        times = [t for t in (closes.get(symbol) or ([], []))[0] if t <= as_of_ms]
        if not times:
            out[symbol] = ("no_bars", f"{symbol} has no 1-minute bars before {_iso(as_of_ms)[:16]} UTC")
            continue
        days = (max(times) - min(times)) / DAY_MS
        if days < min_days:
            out[symbol] = (
                "insufficient_history",
                f"{symbol} has {days:.1f} days of 1-minute bars; at least {min_days} are needed",
            )
    return out


# --------------------------------------------------------------------------- the desk's risk


def compute(
    *,
    inputs: Sequence[Any],
    closes: dict[str, tuple[Sequence[int], Sequence[Any]]],
    as_of_ms: int,
    history_days: int,
    min_history_days: int,
    half_life_days: float = HALF_LIFE_DAYS,
    confidence: Decimal = CONFIDENCE,
) -> dict[str, Any]:
    problems: list[dict] = []
    accounts = []
    for a in inputs:
        if a.problem:
            problems.append(_problem("bad_input", a.problem, account_id=a.account_id))
        else:
            accounts.append(a)
    held = sorted({p.symbol for a in accounts for p in a.positions})
    bad_symbols = _history_problems(held, closes, as_of_ms=as_of_ms, min_days=min_history_days)
    for symbol, (code, reason) in sorted(bad_symbols.items()):
        problems.append(_problem(code, reason, symbol=symbol))
    measured, excluded = [], []
    for a in accounts:
        missing = sorted({p.symbol for p in a.positions} & set(bad_symbols))
        if missing:
            excluded.append((a, "; ".join(bad_symbols[s][1] for s in missing), bad_symbols[missing[0]][0]))
        else:
            measured.append(a)
    for a in inputs:
        if a.problem:
            excluded.append((a, a.problem, "bad_input"))
    symbols = sorted({p.symbol for a in measured for p in a.positions})
    if not measured or (not symbols and excluded):
        reasons = "; ".join(sorted({p["reason"] for p in problems})) or "no account to measure"
        out = empty_result(as_of_ms, reasons, problems[0]["code"] if problems else "not_available")
        out["problems"] = problems
        out["accounts"] = [_excluded_row(a, why, code) for a, why, code in excluded]
        return out
    if not symbols:
        out = _flat(measured, as_of_ms)
        out["problems"] = problems
        out["accounts"] += [_excluded_row(a, why, code) for a, why, code in excluded]
        out["partial"] = bool(excluded)
        return out
    try:
        out = _measure(
            measured,
            symbols,
            closes,
            as_of_ms=as_of_ms,
            history_days=history_days,
            min_history_days=min_history_days,
            half_life_days=half_life_days,
            confidence=confidence,
            problems=problems,
        )
    except PortfolioError as exc:
        out = empty_result(as_of_ms, str(exc), exc.code)
        problems.append(_problem(exc.code, str(exc), symbol=",".join(exc.symbols) or None))
        out["problems"] = problems
        out["accounts"] = [_excluded_row(a, str(exc), exc.code) for a in measured]
    out["accounts"] += [_excluded_row(a, why, code) for a, why, code in excluded]
    out["accounts"].sort(key=lambda r: r["name"])
    out["partial"] = bool(excluded) and out["available"]
    return out


def _flat(measured: Sequence[Any], as_of_ms: int) -> dict[str, Any]:
    """No open position anywhere: nothing can be lost to a price move. Zero, not "not available"."""
    out = empty_result(as_of_ms, "")
    zero = {k: "0" for k in ("var_historical", "es_historical", "var_parametric", "es_parametric")}
    equity = sum((a.equity for a in measured), Decimal(0))
    out.update(
        available=True,
        not_available_code="",
        desk={"equity": _s(equity), **zero, "var_pct_equity": "0" if equity > 0 else None},
        accounts=[
            {
                **_excluded_row(a, "", ""),
                **zero,
                "contribution_historical": "0",
                "contribution_parametric": "0",
            }
            for a in measured
        ],
        scenarios=[{"name": CRASH, "desk_loss": "0", "account_loss": {}, "moves": {}, "flags": {}, "liquidations": []}],
        adviser_inputs={"daily_volatility": {}, "unit_var": {}, "account_pnl": {}, "brackets": {}},
    )
    return out


def _excluded_row(a: Any, reason: str, code: str) -> dict[str, Any]:
    return {
        "account_id": a.account_id,
        "name": a.name,
        "profile_id": a.profile_id,
        "equity": _s(a.equity),
        "gross_notional": _s(sum((abs(p.qty) * p.mark_price for p in a.positions), Decimal(0))),
        "var_historical": None,
        "es_historical": None,
        "var_parametric": None,
        "es_parametric": None,
        "contribution_historical": None,
        "contribution_parametric": None,
        "not_available": reason,
        "not_available_code": code,
        "positions": _position_rows(a),
    }


def _position_rows(a: Any) -> list[dict[str, Any]]:
    rows = []
    for p in a.positions:
        notional = abs(p.qty) * p.mark_price
        rows.append(
            {
                "symbol": p.symbol,
                "side": p.side,
                "qty": _s(p.qty),
                "notional": _s(notional),
                "leverage": p.leverage,
                "margin_type": p.margin_type,
            }
        )
    return rows


def _measure(
    measured, symbols, closes, *, as_of_ms, history_days, min_history_days, half_life_days, confidence, problems
) -> dict[str, Any]:
    from positions.portfolio import allocation as pf_allocation
    from positions.portfolio import var as pf_var

    aligned = pf_history.align_closes(
        {s: closes[s] for s in symbols}, as_of_ms=as_of_ms, lookback_ms=history_days * DAY_MS
    )
    estimate = pf_volatility.ewma(aligned, half_life_days=half_life_days, min_returns=min_history_days)
    for symbol, flags in sorted(estimate.flags.items()):
        if "zero_volatility" in flags:
            problems.append(
                _problem(
                    "zero_volatility",
                    f"{symbol}: its price did not move over the history (zero volatility); "
                    "it carries no risk in the model and gets no cap from the adviser",
                    symbol=symbol,
                )
            )
    historical = pf_scenarios.historical_scenarios(aligned)
    desk = pf_var.desk_from_inputs(
        positions={a.account_id: list(a.positions) for a in measured},
        wallets={a.account_id: {"USDT": a.cross_wallet} for a in measured},
        brackets=_brackets(measured),
    )
    hist = pf_var.desk_var(desk, historical, confidence=float(confidence))
    param = pf_var.parametric_var(desk, estimate, confidence=float(confidence))
    crash_set = pf_scenarios.crash_2021_05_19(symbols, betas=_betas(aligned, min_history_days) or None)
    crash = pf_var.desk_var(desk, crash_set, confidence=float(confidence))
    equity = sum((a.equity for a in measured), Decimal(0))
    names = {a.account_id: a.name for a in measured}
    daily_vol = {s: estimate.vol_decimal(s) for s in estimate.symbols}
    out = empty_result(as_of_ms, "")
    out.update(
        available=True,
        not_available="",
        not_available_code="",
        problems=problems,
        history={
            "days": history_days,
            "first": _iso(int(aligned.times_ms[0])),
            "last": _iso(int(aligned.times_ms[-1])),
            "scenarios": len(historical.names),
            "half_life_days": half_life_days,
        },
        desk={
            "equity": _s(equity),
            "var_historical": _s(hist.desk.var),
            "es_historical": _s(hist.desk.es),
            "var_parametric": _s(param.desk.var),
            "es_parametric": _s(param.desk.es),
            "var_pct_equity": _s(hist.desk.var / equity, "0.000001") if equity > 0 else None,
        },
        accounts=[
            {
                "account_id": a.account_id,
                "name": a.name,
                "profile_id": a.profile_id,
                "equity": _s(a.equity),
                "gross_notional": _s(sum((abs(p.qty) * p.mark_price for p in a.positions), Decimal(0))),
                "var_historical": _s(hist.accounts[a.account_id].var),
                "es_historical": _s(hist.accounts[a.account_id].es),
                "var_parametric": _s(param.accounts[a.account_id].var),
                "es_parametric": _s(param.accounts[a.account_id].es),
                "contribution_historical": _s(hist.accounts[a.account_id].component_var),
                "contribution_parametric": _s(param.accounts[a.account_id].component_var),
                "not_available": "",
                "not_available_code": "",
                "positions": _position_rows(a),
            }
            for a in measured
        ],
        symbols=[
            {
                "symbol": s,
                "daily_volatility": _s(daily_vol.get(s)),
                "contribution_historical": _s(hist.symbols[s].component_var) if s in hist.symbols else None,
                "contribution_parametric": _s(param.symbols[s].component_var) if s in param.symbols else None,
                "net_notional": _s(
                    sum((_signed(p) * p.mark_price for a in measured for p in a.positions if p.symbol == s), Decimal(0))
                ),
                "flags": list(estimate.flags.get(s, ())),
            }
            for s in symbols
        ],
        correlation={
            "symbols": list(estimate.symbols),
            "matrix": [
                [_s(estimate.corr[i, j], "0.0001") for j in range(len(estimate.symbols))]
                for i in range(len(estimate.symbols))
            ],
        },
        scenarios=[_crash_row(crash, crash_set, names)],
        # The adviser's inputs (kept so a suggestion needs no second pass over the bars).
        adviser_inputs={
            "daily_volatility": {s: _s(v) for s, v in daily_vol.items()},
            # 1-day 99 % loss per 1 USDT held, long or short, from the same scenarios as the VaR.
            "unit_var": {s: _s(v) for s, v in pf_allocation.unit_var_from_scenarios(historical).items()},
            "account_pnl": {
                str(a.account_id): [_s(x, "0.01") for x in hist.account_pnl(a.account_id)] for a in measured
            },
            "brackets": {
                s: [[_s(b.floor), _s(b.cap), _s(b.mmr), _s(b.cum), b.max_leverage] for b in t]
                for s, t in _brackets(measured).items()
            },
        },
    )
    return out


def _betas(aligned, min_returns: int) -> dict[str, float]:
    """Each symbol's beta to BTC (the crash scenario's proxy for symbols it has no day for); none
    when BTC is not in the history: the scenario then moves them like BTC, and flags it."""
    if "BTCUSDT" not in aligned.symbols:
        return {}
    try:
        return pf_scenarios.betas_to(aligned, min_returns=min_returns)
    except PortfolioError:
        return {}


def _brackets(measured) -> dict[str, list]:
    """One table per symbol (the maths takes symbol tables): the symbol default, else the first
    account's own (accounts with scaled tables are rare; docs/ALLOCATION.md says so)."""
    out: dict[str, list] = {}
    for a in measured:
        for symbol, table in a.brackets.items():
            out.setdefault(symbol, table)
    return out


def _crash_row(crash, crash_set, names: dict[int, str]) -> dict[str, Any]:
    liquidations = [
        {
            "account_id": liq.account,
            "name": names.get(liq.account, str(liq.account)),
            "symbol": liq.symbol,
            "side": liq.side,
            "margin_type": liq.margin_type,
            "loss": _s(liq.loss),
        }
        for liq in crash.liquidations(0)
    ]
    moves = {s: _s(crash_set.moves[0, i], "0.0001") for i, s in enumerate(crash_set.symbols)}
    return {
        "name": CRASH,
        "desk_loss": _s(-crash.desk_pnl()[0]),
        "account_loss": {str(a): _s(-crash.account_pnl(a)[0]) for a in names},
        "moves": moves,
        "flags": {s: list(f) for s, f in crash_set.flags.items()},
        "liquidations": liquidations,
    }


# --------------------------------------------------------------------------- the adviser


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _bracket_objects(rows: list) -> list:
    from positions.margin import Bracket

    return [Bracket(floor=_d(f), cap=_d(c), mmr=_d(m), cum=_d(k), max_leverage=int(lev)) for f, c, m, k, lev in rows]


def _unavailable(base: dict, code: str, reason: str) -> dict:
    return {**base, "not_available": reason, "not_available_code": code}


def suggest(
    *, result: dict[str, Any], params: Any, profiles: dict[int, dict[str, Any]], tr=lambda s: s
) -> dict[str, Any]:
    """See services.allocation_suggest. `profiles`: {account_id: {"id", "name", "symbols": {symbol:
    {"notional": limit now, "leverage": limit now}}}} (the profile governing each account, effective
    values); `tr`: gettext for the reasons a person reads."""
    base = {
        "as_of": result.get("as_of"),
        "method": params.method,
        "capital": None,
        "desk_budget": _s(params.desk_budget),
        "account_budget": _s(params.account_budget),
        "desk_var_budget": None,
        "not_available": "",
        "not_available_code": "",
        "accounts": [],
        "limits": [],
        "profiles": [],
    }
    if not result.get("available"):
        return _unavailable(
            base, result.get("not_available_code") or "not_available", result.get("not_available") or ""
        )
    import numpy as np

    from positions.portfolio import allocation as pf_allocation

    inputs = result["adviser_inputs"]
    measured = [a for a in result["accounts"] if a.get("var_historical") is not None]
    funded = [a for a in measured if Decimal(a["equity"]) > 0 and Decimal(a["gross_notional"] or 0) > 0]
    if not funded:
        return _unavailable(base, "no_positions", "no account with equity and open positions to allocate to")
    capital = (
        params.capital if params.capital is not None else sum((Decimal(a["equity"]) for a in measured), Decimal(0))
    )
    base.update(capital=_s(capital), desk_var_budget=_s((capital * params.desk_budget).quantize(CENT)))
    labels = [a["account_id"] for a in funded]
    # Each account as a strategy: its scenario P&L per unit of its capital (positions scale with capital).
    pnl = np.array([[float(x) for x in inputs["account_pnl"][str(i)]] for i in labels]).T
    weigh = (
        pf_allocation.risk_parity_weights
        if params.method == "risk_parity"
        else pf_allocation.inverse_volatility_weights
    )
    try:
        cov = pf_allocation.return_covariance(pnl, [Decimal(a["equity"]) for a in funded])
        weights = weigh(cov, labels=labels)
        split = pf_allocation.split_capital(weights, capital)
    except PortfolioError as exc:
        return _unavailable(base, exc.code, str(exc))
    vols = {s: _d(v) for s, v in inputs["daily_volatility"].items()}
    unit_var = {s: _d(v) for s, v in inputs["unit_var"].items()}
    brackets = {s: _bracket_objects(rows) for s, rows in inputs["brackets"].items()}
    per_profile: dict[tuple[int | None, str], dict[str, Any]] = {}
    for a in funded:
        aid = a["account_id"]
        weight = weights.weights[aid]
        cap_a = split[aid]
        share_rc = weights.risk_contributions.get(aid, Decimal(0))
        own = (params.account_budget * cap_a).quantize(CENT)
        desk_part = (capital * params.desk_budget * share_rc).quantize(CENT)
        budget = min(own, desk_part)
        flags = weights.flags.get(aid, ())
        why = (
            tr("risk parity: equal shares of the desk's risk")
            if params.method == "risk_parity"
            else tr("inverse volatility of the account's daily P&L")
        )
        binding = (
            tr("the account budget binds (%(pct)s of its capital)") % {"pct": _pct(params.account_budget)}
            if own <= desk_part
            else tr("its share of the desk budget binds (%(share)s of %(pct)s of the capital)")
            % {"share": _pct(share_rc), "pct": _pct(params.desk_budget)}
        )
        if "zero_volatility" in flags:
            why = tr("zero volatility: its P&L did not move in any scenario, so it gets no capital")
        base["accounts"].append(
            {
                "account_id": aid,
                "name": a["name"],
                "capital_now": a["equity"],
                "capital_suggested": _s(cap_a),
                "weight": _s(weight, "0.000001"),
                "var_now": a["var_historical"],
                "var_budget": _s(budget),
                "reason": f"{why}; {binding}",
            }
        )
        gross = {}
        for p in a["positions"]:
            gross[p["symbol"]] = gross.get(p["symbol"], Decimal(0)) + Decimal(p["notional"])
        total = sum(gross.values(), Decimal(0))
        # The budget is shared by the symbols as the account holds them now (its notional mix).
        shares = {s: (v / total).quantize(Decimal("1e-12"), ROUND_DOWN) for s, v in gross.items()}
        held_leverage = {p["symbol"]: p["leverage"] for p in a["positions"]}
        movable = {s for s in gross if unit_var.get(s) and unit_var[s] > 0}
        caps = {}
        if movable and cap_a > 0 and budget > 0:
            try:
                caps = pf_allocation.notional_caps(
                    equity=cap_a,
                    budget_pct=(budget * 100 / cap_a).quantize(Decimal("1e-8"), ROUND_DOWN),
                    unit_var={s: float(unit_var[s]) for s in movable},
                    brackets={s: brackets[s] for s in movable},
                    shares={s: shares[s] for s in movable},
                )
            except PortfolioError as exc:
                caps = {}
                for s in movable:
                    caps[s] = exc
        profile = profiles.get(aid) or {"id": None, "name": tr("no profile"), "symbols": {}}
        for symbol in sorted(gross):
            key = (profile["id"], symbol)
            now = profile["symbols"].get(symbol, {})
            row = per_profile.setdefault(
                key,
                {
                    "profile_id": profile["id"],
                    "profile": profile["name"],
                    "symbol": symbol,
                    "accounts": [],
                    "notional_now": None,
                    "limit_notional_now": _s(now.get("notional")),
                    "notional_cap": None,
                    "leverage_now": None,
                    "limit_leverage_now": now.get("leverage"),
                    "leverage_cap": None,
                    "tier_max_leverage": None,
                    "reason": "",
                    "not_available": "",
                    "not_available_code": "",
                },
            )
            row["accounts"].append(a["name"])
            if row["notional_now"] is None or gross[symbol] > Decimal(row["notional_now"]):
                row["notional_now"] = _s(gross[symbol])
            lev = held_leverage.get(symbol)
            if lev is not None and (row["leverage_now"] is None or lev > row["leverage_now"]):
                row["leverage_now"] = lev
            cap = caps.get(symbol)
            if symbol not in movable:
                row.update(
                    not_available_code="zero_volatility",
                    not_available=f"{symbol}: zero volatility over the history; no cap can be derived from it",
                )
                continue
            if cap is None or isinstance(cap, Exception) or cap.notional is None:
                code = getattr(cap, "code", None) or ("zero_volatility" if cap is not None else "not_available")
                why = str(cap) if isinstance(cap, Exception) else "no VaR budget for this account"
                row.update(not_available_code=code, not_available=why)
                continue
            notional = cap.notional.quantize(CENT, ROUND_DOWN)
            # Several accounts under one profile: the tightest cap, since the profile holds them all.
            if row["notional_cap"] is None or notional < Decimal(row["notional_cap"]):
                row["notional_cap"] = _s(notional)
                row["tier_max_leverage"] = cap.tier_max_leverage
                row["reason"] = _cap_reason(cap, a["name"], budget, shares[symbol], vols.get(symbol), tr)
            if cap.leverage is not None and (row["leverage_cap"] is None or int(cap.leverage) < row["leverage_cap"]):
                row["leverage_cap"] = int(cap.leverage)
    base["accounts"].sort(key=lambda r: r["name"])
    base["limits"] = sorted(per_profile.values(), key=lambda r: (r["profile"], r["symbol"]))
    seen = {}
    for row in base["limits"]:
        if row["profile_id"] is not None and row["notional_cap"] is not None:
            seen[row["profile_id"]] = row["profile"]
    base["profiles"] = [{"id": i, "name": n} for i, n in sorted(seen.items(), key=lambda x: x[1])]
    return base


def _cap_reason(cap: Any, account: str, budget: Decimal, share: Decimal, vol: Decimal | None, tr) -> str:
    text = tr(
        "%(account)s: %(share)s of a %(budget)s USDT daily VaR budget; a 1-day 99 %% loss of %(unit)s per USDT held"
    ) % {"account": account, "share": _pct(share), "budget": _s(budget.quantize(CENT)), "unit": _pct(cap.unit_var)}
    if vol is not None:
        text += "; " + tr("daily volatility %(vol)s") % {"vol": _pct(vol)}
    if cap.binding == "exchange_max":
        text += "; " + tr("capped at the last bracket's notional")
    text += "; " + {
        "tier": tr("leverage: the most bracket tier %(tier)s allows at this size") % {"tier": cap.tier},
        "risk": tr("leverage: an isolated position at the cap survives its 1-day VaR move"),
        "floor": tr("leverage: 1x, the least there is"),
    }.get(cap.leverage_binding, "")
    return text


def _pct(value: Decimal) -> str:
    return f"{(Decimal(value) * 100).quantize(Decimal('0.1'))} %"
