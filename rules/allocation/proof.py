"""The proof of docs/ALLOCATION.md: the bundled 2021-05-19 crash against the demo desk, twice.

    .venv/bin/python -m rules.allocation.proof [--json out.json]

1. The demo desk (marketdata/fixtures/demo_accounts.yaml, the accounts the simulator replays) at the
   close of 2021-05-18 (its 23:59 bar closes at 2021-05-19 00:00 UTC: "the evening before").
2. The desk's risk as of then, from the bundled Binance 1-minute bars *before* it only (the crash
   day is not read: rules/tests/test_allocation_lookahead.py), and the adviser's suggestion with the
   desk's default budgets, for the demo profile (desk-default, rules/fixtures/demo_rules.yaml, which
   governs all four accounts: one profile holds one cap per symbol, so the tightest account's).
3. The crash day replayed twice over the same mark path the simulator walks (each real 1-minute bar
   open -> extremes -> close, marketdata.simulator.replay), with the exact maths of positions.figures:
   A. limits as they are (no position breaches them: nothing changes);
   B. the suggested limits applied the evening before: a position above its symbol's new notional cap
      is cut to the cap at the 00:00 mark (reduce-only, as a risk manager would on the new caps'
      critical breaches; the desk's reduce_positions action would close every cross position of the
      account, which cuts more), a leverage above the new cap is lowered to it (an isolated
      position's margin is topped up from the cross wallet to notional / leverage).
   At each mark, an isolated position whose mark crosses its liquidation price is liquidated and loses
   its isolated margin; a cross pool whose margin ratio reaches 100 % is liquidated and loses its whole
   cross margin balance (the desk's model: the loss stops at the maintenance margin, which the
   exchange keeps). Loss = equity at 00:00 - equity at 23:59:59 (and at BTC's trough).

This is the offline version: the demo desk's positions revalued along the real marks. It is not the
live run (simulator -> stream engine -> evaluator -> approved actions); docs/ALLOCATION.md says so.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[2]
DEMO_ACCOUNTS = BASE / "marketdata/fixtures/demo_accounts.yaml"
DEMO_RULES = BASE / "rules/fixtures/demo_rules.yaml"
BRACKETS = BASE / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
CRASH_DAY = {
    "BTCUSDT": BASE / "marketdata/data/binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv",
    "ETHUSDT": BASE / "marketdata/data/binance_spot_ETHUSDT_1m_2021-05-19_crashday.csv",
}
EVE = datetime(2021, 5, 19, 0, 0, tzinfo=UTC)
STEP = {"BTCUSDT": Decimal("0.001"), "ETHUSDT": Decimal("0.001")}
DEFAULT_LEVERAGE = 20  # the simulator's, for a symbol the account never configured
ZERO = Decimal(0)


def _eve_ms() -> int:
    return int(EVE.timestamp() * 1000)


def history_before(symbols, *, as_of_ms: int) -> dict[str, tuple[list[int], list[Decimal]]]:
    """The bundled 1-minute closes of bars that had closed by as_of (nothing later is returned)."""
    from marketdata.simulator.klines import load_bundle

    out = {}
    for symbol in symbols:
        _times, rows = load_bundle(symbol)
        kept = [r for r in rows if r[0] + 60_000 <= as_of_ms]
        out[symbol] = ([r[0] for r in kept], [r[4] for r in kept])
    return out


def demo_inputs(marks: dict[str, Decimal]):
    import yaml

    from positions.figures import PositionInput
    from positions.margin import brackets_from_binance
    from rules.allocation.selectors import AccountInputs

    tables = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(BRACKETS.read_text())}
    accounts = []
    for i, spec in enumerate(yaml.safe_load(DEMO_ACCOUNTS.read_text())["accounts"], start=1):
        positions = []
        for p in spec["positions"]:
            positions.append(
                PositionInput(
                    symbol=p["symbol"],
                    side=p["side"],
                    qty=Decimal(str(p["qty"])),
                    entry_price=Decimal(str(p["entry_price"])),
                    mark_price=marks[p["symbol"]],
                    leverage=int(p.get("leverage") or spec.get("leverage") or DEFAULT_LEVERAGE),
                    margin_type=p.get("margin_type", "cross"),
                    isolated_wallet=Decimal(str(p.get("isolated_wallet", "0"))),
                )
            )
        cross = Decimal(str(spec["wallet"]["USDT"]))
        upnl = sum(((p.mark_price - p.entry_price) * _signed(p) for p in positions), ZERO)
        iso = sum((p.isolated_wallet for p in positions), ZERO)
        accounts.append(
            AccountInputs(
                account_id=i,
                name=spec["name"],
                profile_id=1,
                cross_wallet=cross,
                equity=cross + iso + upnl,
                positions=tuple(positions),
                brackets={s: tables[s] for s in {p.symbol for p in positions}},
            )
        )
    return accounts


def _signed(p) -> Decimal:
    return -abs(p.qty) if p.side == "SHORT" else p.qty


def demo_profile() -> dict[str, Any]:
    import yaml

    position = yaml.safe_load(DEMO_RULES.read_text())["risk_control"]["position"]
    return {"notional": Decimal(str(position["max_position_value"])), "leverage": int(position["max_leverage"])}


# --------------------------------------------------------------------------- applying the caps


def with_caps(account, caps: dict[str, dict[str, Any]]):
    """The account as it would stand with the caps enforced at the eve's marks; see the module doc."""
    cross = account.cross_wallet
    positions = []
    for p in account.positions:
        cap = caps.get(p.symbol) or {}
        qty, leverage, iso_wallet = p.qty, p.leverage, p.isolated_wallet
        notional_cap = cap.get("notional")
        if notional_cap is not None and abs(qty) * p.mark_price > notional_cap:
            size = (notional_cap / p.mark_price).quantize(STEP.get(p.symbol, Decimal("0.001")), ROUND_DOWN)
            # Closing the excess at the mark realizes its PnL into the wallet (fees left out).
            cross += (p.mark_price - p.entry_price) * (_signed(p) - (size if _signed(p) > 0 else -size))
            if p.margin_type == "isolated":  # the cut releases margin pro rata back to the cross wallet
                kept = iso_wallet * size / abs(qty)
                cross += iso_wallet - kept
                iso_wallet = kept
            qty = size if qty > 0 else -size
        if cap.get("leverage") is not None and leverage > cap["leverage"]:
            leverage = int(cap["leverage"])
        if p.margin_type == "isolated" and qty:
            need = abs(qty) * p.mark_price / leverage
            if iso_wallet < need:
                cross -= need - iso_wallet
                iso_wallet = need
        if qty:
            positions.append(replace(p, qty=qty, leverage=leverage, isolated_wallet=iso_wallet))
    return replace(account, positions=tuple(positions), cross_wallet=cross)


# --------------------------------------------------------------------------- the replay


@dataclass
class Outcome:
    name: str
    equity_start: Decimal
    equity_trough: Decimal
    equity_end: Decimal
    liquidations: list[dict[str, Any]]


def mark_path() -> tuple[list[int], dict[str, list[Decimal]]]:
    from marketdata.simulator.replay import load_bars

    series = {s: [v for bar in load_bars(path) for v in bar.vertices()] for s, path in CRASH_DAY.items()}
    times = [t for t, _ in series["BTCUSDT"]]
    for s, points in series.items():
        assert [t for t, _ in points] == times, f"{s} does not line up with BTCUSDT"
    return times, {s: [v for _, v in points] for s, points in series.items()}


def replay(account, times: list[int], path: dict[str, list[Decimal]], trough_index: int) -> Outcome:
    from positions.figures import account_figures, position_liquidation

    cross_wallet = account.cross_wallet
    alive = list(account.positions)
    brackets = account.brackets
    liquidations = []
    # Isolated liquidation prices depend only on the position and its own margin: fixed for the day.
    iso_liq = {}
    for p in alive:
        if p.margin_type == "isolated":
            iso_liq[(p.symbol, p.side)] = position_liquidation(
                position=p, positions=alive, cross_wallet_balance=cross_wallet, brackets=brackets
            )

    def equity(marks) -> Decimal:
        return (
            cross_wallet
            + sum(
                (
                    p.isolated_wallet + (marks[p.symbol] - p.entry_price) * _signed(p)
                    for p in alive
                    if p.margin_type == "isolated"
                ),
                ZERO,
            )
            + sum(((marks[p.symbol] - p.entry_price) * _signed(p) for p in alive if p.margin_type == "cross"), ZERO)
        )

    start = equity({s: v[0] for s, v in path.items()})
    trough = None
    for k, at in enumerate(times):
        marks = {s: v[k] for s, v in path.items()}
        for p in [p for p in alive if p.margin_type == "isolated"]:
            point = iso_liq.get((p.symbol, p.side))
            if point is None:
                continue
            crossed = marks[p.symbol] <= point.price if point.on_fall else marks[p.symbol] >= point.price
            if crossed:
                alive.remove(p)
                liquidations.append(
                    {
                        "at": _iso(at),
                        "what": f"{p.symbol} isolated",
                        "mark": str(marks[p.symbol]),
                        "loss": p.isolated_wallet,
                    }
                )
        cross = [replace(p, mark_price=marks[p.symbol]) for p in alive if p.margin_type == "cross"]
        if cross:
            figures = account_figures(wallet_balances={"USDT": cross_wallet}, positions=cross, brackets=brackets)
            if figures.cross_margin_ratio >= 1:
                # The pool is gone: its margin balance (now at or below maintenance) is lost with it.
                liquidations.append(
                    {
                        "at": _iso(at),
                        "what": "cross pool (" + ", ".join(f"{p.symbol} {p.side}" for p in cross) + ")",
                        "mark": ", ".join(f"{s} {m}" for s, m in marks.items()),
                        "loss": cross_wallet,
                    }
                )
                alive = [p for p in alive if p.margin_type != "cross"]
                cross_wallet = ZERO
        if k == trough_index:
            trough = equity(marks)
    end = equity({s: v[-1] for s, v in path.items()})
    return Outcome(account.name, start, trough if trough is not None else end, end, liquidations)


# --------------------------------------------------------------------------- the exchange simulator's own verdict


def _spec(account) -> dict[str, Any]:
    """The account as the simulator's accounts file states it (wallet = cross wallet; isolated on top)."""
    return {
        "api_key": f"proof-key-{account.account_id}",
        "api_secret": f"proof-secret-{account.account_id}",
        "position_mode": "hedge" if any(p.side != "BOTH" for p in account.positions) else "one-way",
        "wallet": {"USDT": str(account.cross_wallet)},
        "positions": [
            {
                "symbol": p.symbol,
                "side": p.side,
                "qty": str(p.qty),
                "entry_price": str(p.entry_price),
                "leverage": p.leverage,
                "margin_type": p.margin_type,
                **({"isolated_wallet": str(p.isolated_wallet)} if p.margin_type == "isolated" else {}),
            }
            for p in account.positions
        ],
    }


def simulate(desk, times: list[int], path: dict[str, list[Decimal]], trough_index: int) -> list[dict[str, Any]]:
    """The same desk on the bundled exchange simulator (marketdata/simulator), its marks set to each
    walked point of the day in turn: the simulator's own margin engine liquidates (as it does in the
    demo), so this checks the replay above against an independent implementation."""
    from marketdata.simulator import SimulatorThread, build_config
    from marketdata.simulator.risk import account_view

    config = build_config(
        accounts={"accounts": [_spec(a) for a in desk]},
        marks={s: str(v[0]) for s, v in path.items()},
        tick_interval_s=3600.0,  # the clock must not move the marks: this loop does
    )
    first = {s: v[0] for s, v in path.items()}

    def equity(sim, marks) -> dict[str, Decimal]:
        return {
            key: sum((v.margin_balance for v in account_view(acc, marks, sim.exchange.symbols).assets.values()), ZERO)
            for key, acc in sim.exchange.accounts.items()
        }

    def walk(sim) -> dict[str, Any]:
        start = equity(sim, first)
        trough = None
        for k in range(len(times)):
            marks = {s: v[k] for s, v in path.items()}
            sim.set_marks(marks)
            if k == trough_index:
                trough = equity(sim, marks)
        end = equity(sim, {s: v[-1] for s, v in path.items()})
        forced = {
            key: [(o.price, o.orig_qty) for o in sim.exchange.force_history[key]] for key in sim.exchange.accounts
        }
        counts = {key: acc.liquidations for key, acc in sim.exchange.accounts.items()}
        return {"start": start, "trough": trough, "end": end, "forced": forced, "counts": counts}

    with SimulatorThread(config) as sim:
        out = sim.call(walk, timeout=600)
    rows = []
    for a in desk:
        key = f"proof-key-{a.account_id}"
        rows.append(
            {
                "name": a.name,
                "liquidations": out["counts"][key],
                "liquidation_orders": [f"{q} at {p}" for p, q in out["forced"][key]],
                "loss_at_trough": str((out["start"][key] - out["trough"][key]).quantize(Decimal("0.01"))),
                "loss_at_close": str((out["start"][key] - out["end"][key]).quantize(Decimal("0.01"))),
            }
        )
    return rows


def _caps(suggestion: dict[str, Any], profile_id: int) -> dict[str, dict[str, Any]]:
    return {
        r["symbol"]: {
            "notional": Decimal(r["notional_cap"]) if r["notional_cap"] else None,
            "leverage": r["leverage_cap"],
        }
        for r in suggestion["limits"]
        if r["profile_id"] == profile_id
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


# --------------------------------------------------------------------------- the run


def run(
    *, desk_budget_pct: str | None = None, account_budget_pct: str | None = None, with_simulator: bool = True
) -> dict[str, Any]:
    from django.conf import settings

    from rules.allocation import engine
    from rules.allocation.params import defaults

    eve_ms = _eve_ms()
    history = history_before(["BTCUSDT", "ETHUSDT"], as_of_ms=eve_ms)
    marks = {s: Decimal(str(closes[-1])) for s, (_t, closes) in history.items()}
    accounts = demo_inputs(marks)
    result = engine.compute(
        inputs=accounts,
        closes=history,
        as_of_ms=eve_ms,
        history_days=settings.ALLOCATION_HISTORY_DAYS,
        min_history_days=settings.ALLOCATION_MIN_HISTORY_DAYS,
    )
    limits = demo_profile()
    profiles = {
        a.account_id: {
            "id": 1,
            "name": "desk-default",
            "symbols": {p.symbol: dict(limits) for p in a.positions},
        }
        for a in accounts
    }
    params = defaults()
    if desk_budget_pct or account_budget_pct:
        params = replace(
            params,
            desk_budget=Decimal(desk_budget_pct or params.desk_budget * 100) / 100,
            account_budget=Decimal(account_budget_pct or params.account_budget * 100) / 100,
        )
    suggestion = engine.suggest(result=result, params=params, profiles=profiles)
    caps = _caps(suggestion, 1)
    # The same suggestion were each account governed by a profile of its own (one cap per account).
    own = {a.account_id: {**profiles[a.account_id], "id": a.account_id, "name": f"own:{a.name}"} for a in accounts}
    per_account = engine.suggest(result=result, params=params, profiles=own)
    times, path = mark_path()
    trough_index = min(range(len(times)), key=lambda k: path["BTCUSDT"][k])
    versions = {}
    for name, desk in (
        ("as_is", accounts),
        ("suggested", [with_caps(a, caps) for a in accounts]),
        ("suggested_per_account", [with_caps(a, _caps(per_account, a.account_id)) for a in accounts]),
    ):
        outcomes = [replay(a, times, path, trough_index) for a in desk]
        simulated = simulate(desk, times, path, trough_index) if with_simulator else []
        versions[name] = {
            "simulator": {
                "accounts": simulated,
                "liquidations": sum(r["liquidations"] for r in simulated),
                "loss_at_trough": str(sum((Decimal(r["loss_at_trough"]) for r in simulated), ZERO)),
                "loss_at_close": str(sum((Decimal(r["loss_at_close"]) for r in simulated), ZERO)),
            }
            if with_simulator
            else None,
            "accounts": [
                {
                    "name": o.name,
                    "positions": [
                        f"{p.symbol} {p.side} {p.qty} @ {p.leverage}x {p.margin_type}"
                        + (
                            f" (isolated margin {p.isolated_wallet.quantize(Decimal('0.01'))})"
                            if p.isolated_wallet
                            else ""
                        )
                        for p in a.positions
                    ],
                    "equity_start": str(o.equity_start.quantize(Decimal("0.01"))),
                    "loss_at_trough": str((o.equity_start - o.equity_trough).quantize(Decimal("0.01"))),
                    "loss_at_close": str((o.equity_start - o.equity_end).quantize(Decimal("0.01"))),
                    "liquidations": [
                        {**x, "loss": str(Decimal(x["loss"]).quantize(Decimal("0.01")))} for x in o.liquidations
                    ],
                }
                for o, a in zip(outcomes, desk, strict=True)
            ],
            "liquidations": sum(len(o.liquidations) for o in outcomes),
            "loss_at_trough": str(
                sum((o.equity_start - o.equity_trough for o in outcomes), ZERO).quantize(Decimal("0.01"))
            ),
            "loss_at_close": str(
                sum((o.equity_start - o.equity_end for o in outcomes), ZERO).quantize(Decimal("0.01"))
            ),
            "gross_notional_start": str(
                sum((abs(p.qty) * p.mark_price for a in desk for p in a.positions), ZERO).quantize(Decimal("0.01"))
            ),
        }
    return {
        "as_of": EVE.isoformat(),
        "budgets": {"desk": str(params.desk_budget), "account": str(params.account_budget), "method": params.method},
        "marks": {s: str(m) for s, m in marks.items()},
        "trough": _iso(times[trough_index]),
        "result": {k: v for k, v in result.items() if k != "adviser_inputs"},
        "suggestion": suggestion,
        "suggestion_per_account": per_account,
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the whole outcome here")
    parser.add_argument("--desk-budget-pct", help="the desk's daily VaR budget, %% of equity (default: the setting)")
    parser.add_argument("--account-budget-pct", help="each account's daily VaR budget, %% of its capital")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
    import django

    django.setup()
    out = run(desk_budget_pct=args.desk_budget_pct, account_budget_pct=args.account_budget_pct)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    desk = out["result"]["desk"] or {}
    print(f"as of {out['as_of']} marks {out['marks']}; BTC trough at {out['trough']} UTC; budgets {out['budgets']}")
    print(
        "desk VaR 99% hist",
        desk.get("var_historical"),
        "ES",
        desk.get("es_historical"),
        "param",
        desk.get("var_parametric"),
    )
    for key in ("suggestion", "suggestion_per_account"):
        for row in out[key]["limits"]:
            print(f"{key} [{row['profile']}] {row['symbol']}: cap {row['notional_cap']} leverage {row['leverage_cap']}")
    for name, v in out["versions"].items():
        print(f"\n== {name}: {v['liquidations']} liquidation(s), loss at trough {v['loss_at_trough']}", end="")
        print(f", at close {v['loss_at_close']}; gross notional at 00:00 {v['gross_notional_start']}")
        for a in v["accounts"]:
            print(f"  {a['name']}: {a['positions']} start {a['equity_start']}", end="")
            print(f" loss at trough {a['loss_at_trough']}, at close {a['loss_at_close']}")
            for x in a["liquidations"]:
                print(f"     liquidated {x['at']} {x['what']} at {x['mark']}, loss {x['loss']}")
        sim = v["simulator"]
        if sim:
            print(f"  simulator: {sim['liquidations']} liquidation(s), loss at trough {sim['loss_at_trough']}", end="")
            print(f", at close {sim['loss_at_close']}")
            for a in sim["accounts"]:
                print(f"    {a['name']}: {a['liquidations']} {a['liquidation_orders']}", end="")
                print(f" loss at trough {a['loss_at_trough']}, at close {a['loss_at_close']}")


if __name__ == "__main__":
    main()
