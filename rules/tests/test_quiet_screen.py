"""The screen in front of the exact evaluation (rules/quiet_screen.py) changes nothing but the time.

Random desks (cross, isolated, hedged, two margin assets, symbols without a mark) walk their
marks, open, change and close positions, and roll the trading day over, with limits set on and
around the figures the book reports. Every account is evaluated twice from the same book: the
exact path alone (`evaluate` on every touched account, as before the screen), and screen + exact
path. The Change streams, the latched levels and the day states must be identical, value for
value, at every step.
"""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from rules.levels import NORMAL, DayState, Latch, Limits, day_state_for, evaluate, measure
from rules.quiet_screen import Screen, evaluate_accounts, money, seed_latches

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}
PRICES = {"BTCUSDT": 43000, "ETHUSDT": 3000, "SOLUSDT": 150, "XRPUSDT": 0.6, "DOGEUSDT": 0.08, "BNBUSDT": 550}
NO_BRACKETS = "NOBRKUSDT"  # marked but never given a bracket table: its accounts stay incomplete
PAIRS = {
    "min_equity": "equity_floor",
    "max_utilization": "utilization",
    "max_position_notional": "position_notional",
    "max_account_notional": "account_notional",
    "max_leverage": "leverage",
    "margin_ratio": "margin_ratio",
    "liq_distance": "liq_distance",
    "max_concentration": "concentration",
    "max_daily_loss": "daily_loss",
    "max_drawdown": "drawdown",
    "risk_degree": "risk_degree",
    "max_hhi": "hhi",
    "risk_score": "risk_score",
}

TYPICAL = {"equity_floor": D(5000), "position_notional": D(5000), "account_notional": D(20000), "leverage": D(10)}
TYPICAL["daily_loss"] = D(1000)


def _dec(x: float, places: int = 2) -> D:
    return D(f"{x:.{places}f}")


class Desk:
    def __init__(self, rng: random.Random, n_accounts: int) -> None:
        self.rng, self.book, self.ts = rng, RiskBook(capacity=16), 1
        self.marks = {s: p * rng.uniform(0.9, 1.1) for s, p in PRICES.items()}
        for symbol in PRICES:
            self.book.set_brackets(symbol, TABLES[symbol])
        self.book.apply_marks({s: _dec(p, 6) for s, p in self.marks.items()}, ts=self.ts)
        self.marks[NO_BRACKETS] = 5.0
        self.accounts = list(range(1, n_accounts + 1))
        for account_id in self.accounts:
            self.book.set_wallet(account_id, _dec(rng.uniform(300, 30000)))
            if rng.random() < 0.25:
                self.book.set_wallet(account_id, _dec(rng.uniform(100, 5000)), asset="USDC")
            for _ in range(rng.randint(0, 5)):
                self.open(account_id)

    def open(self, account_id: int) -> set:
        rng = self.rng
        symbol = rng.choice(list(PRICES))
        held = {p.symbol: p for p in self.book.positions(account_id)}
        if symbol in held:
            return self.change(account_id)
        iso = rng.random() < 0.3
        # USDC only where the account has a USDC wallet: a cross hedge pair in a pool without a
        # wallet trips an IndexError in RiskBook._search_tiers (positions/book.py, reported).
        usdc = "USDC" in self.book.account(account_id).per_asset
        asset = "USDC" if usdc and rng.random() < 0.3 else "USDT"
        price = self.marks[symbol]
        qty = _dec(rng.uniform(200, 20000) / price, 3 if price > 100 else 0) or D(1)
        kw = dict(
            symbol=symbol,
            entry_price=_dec(price * rng.uniform(0.95, 1.05), 4),
            leverage=rng.choice([1, 3, 5, 10, 20, 50]),
            margin_type="isolated" if iso else "cross",
            isolated_wallet=_dec(float(qty) * price * rng.uniform(0.03, 0.3)) if iso else D(0),
            margin_asset=asset,
        )
        if rng.random() < 0.3:  # a hedge pair
            return self.book.upsert_positions(
                [
                    (account_id, BookPosition(side="LONG", qty=qty, **kw)),
                    (account_id, BookPosition(side="SHORT", qty=qty * D("0.5"), **kw)),
                ]
            )
        sign = 1 if rng.random() < 0.6 else -1
        return self.book.upsert_position(account_id, BookPosition(side="BOTH", qty=qty * sign, **kw))

    def change(self, account_id: int) -> set:
        positions = self.book.positions(account_id)
        if not positions:
            return self.open(account_id)
        p = self.rng.choice(positions)
        qty = p.qty * _dec(self.rng.uniform(0.5, 1.5))
        kw = dict(entry_price=p.entry_price, leverage=p.leverage, margin_type=p.margin_type)
        kw.update(isolated_wallet=p.isolated_wallet, margin_asset=p.margin_asset)
        return self.book.upsert_position(account_id, BookPosition(symbol=p.symbol, side=p.side, qty=qty, **kw))

    def close(self, account_id: int) -> set:
        positions = self.book.positions(account_id)
        if not positions:
            return set()
        p = self.rng.choice(positions)
        return self.book.remove_position(account_id, p.symbol, p.side)

    def step(self) -> set:
        rng = self.rng
        self.ts += 1000
        roll = rng.random()
        if roll < 0.55:  # the whole market moves
            for s in PRICES:
                self.marks[s] *= math.exp(rng.gauss(0, 0.02))
            return self.book.apply_marks({s: _dec(self.marks[s], 6) for s in PRICES}, ts=self.ts)
        if roll < 0.75:  # one symbol jumps
            s = rng.choice(list(PRICES))
            self.marks[s] *= math.exp(rng.gauss(0, 0.06))
            return self.book.apply_mark(s, _dec(self.marks[s], 6), ts=self.ts)
        account_id = rng.choice(self.accounts)
        if roll < 0.83:
            return self.open(account_id)
        if roll < 0.9:
            return self.close(account_id)
        if roll < 0.95:
            return self.change(account_id)
        if roll < 0.98:
            return self.book.set_wallet(account_id, _dec(rng.uniform(100, 30000)))
        # a symbol with a mark and no brackets: figures unknown, the account fails closed
        kw = dict(symbol=NO_BRACKETS, side="BOTH", qty=D(10), entry_price=D(5), leverage=5)
        self.book.apply_mark(NO_BRACKETS, D(5), ts=self.ts)
        return self.book.upsert_position(account_id, BookPosition(**kw))


def limits_near(rng: random.Random, desk: Desk, account_id: int) -> Limits | None:
    """Limits on and around the account's figures now, so the walk crosses them both ways."""
    if rng.random() < 0.1:
        return None
    day = DayState("d0", D(30000), D(31000))
    found = {}
    for m in measure(risk=desk.book.account(account_id), positions=desk.book.positions(account_id), day=day,
                     rules=set(PAIRS.values())):  # fmt: skip
        found.setdefault(m.rule, []).append(m.value)
    values: dict = {"breach_after_n": rng.choice([1, 1, 2, 3]), "hysteresis": rng.choice([D(0), D("0.02"), D("0.1")])}
    # A clearing dwell of a few steps (a step is 1 s of the desk's clock), sometimes per rule.
    values["clear_dwell_s"] = rng.choice([0, 0, 2, 5])
    if rng.random() < 0.3:
        values["clear_dwell_by_rule"] = {rng.choice(list(PAIRS.values())): rng.choice([0, 3, 10])}
    # 1: exactly on today's value; above 1: that far inside the limit, below 1: beyond it
    factors = [D(3), D(20), D(100)] if rng.random() < 0.5 else [D("0.7"), D("0.99"), D(1), D("1.01"), D("1.05")]
    for limit, rule in PAIRS.items():
        # the two account-wide composites are set less often, so the desks keep quiet accounts
        if rng.random() < (0.6 if rule in ("hhi", "risk_score") else 0.3):
            continue
        lower = rule in ("equity_floor", "liq_distance")
        seen = found.get(rule) or [TYPICAL.get(rule, D("0.3"))]  # nothing to measure yet
        anchor, factor = (min(seen), rng.choice(factors)) if lower else (max(seen), rng.choice(factors))
        warning = anchor / factor if lower else anchor * factor
        critical = warning * D("0.8") if lower else warning * D("1.2")
        if rng.random() < 0.3:
            values[f"{limit}_warning"] = warning
        elif rng.random() < 0.5:
            values[f"{limit}_critical"] = critical
        else:
            values[f"{limit}_warning"], values[f"{limit}_critical"] = warning, critical
    if rng.random() < 0.4:
        values["asset_caps"] = {"USDT": D(rng.uniform(200, 30000)).quantize(D("0.01")), "USDC": D(1000)}
    if rng.random() < 0.4:  # per-symbol overrides, around the figures too
        symbol_limits = {}
        for symbol in rng.sample(list(PRICES), 2):
            notional = max(found.get("position_notional") or [TYPICAL["position_notional"]]) * rng.choice(factors)
            symbol_limits[symbol] = {
                "max_position_notional_warning": notional,
                "max_leverage_critical": rng.choice([3, 10, 50]),
            }
        values["symbol_limits"] = symbol_limits
    return Limits.from_values(values)


def exact_only(
    desk: Desk, touched: set, limits: dict, latches: dict, days: dict, day: str, settle: dict | None = None
) -> dict:
    out = {}
    for account_id in touched:
        if limits.get(account_id) is None:
            continue
        risk = desk.book.account(account_id)
        state = day_state_for(days, account_id, day, risk.margin_balance)
        latch = latches.setdefault(account_id, Latch())
        positions = desk.book.positions(account_id)
        out[account_id] = evaluate(
            latch=latch,
            limits=limits[account_id],
            risk=risk,
            positions=positions,
            day=state,
            now_ms=desk.ts,
            settle=(settle or {}).get(account_id, ()),
        )
    return out


def random_seeds(rng: random.Random, desk: Desk, limits: dict) -> dict:
    """Open alert levels as a restart would find them: on subjects the book has, on subjects it
    no longer has, at levels that hold and levels that do not."""
    seeds = {}
    for account_id in desk.accounts:
        if rng.random() < 0.5:
            continue
        found = measure(
            risk=desk.book.account(account_id),
            positions=desk.book.positions(account_id),
            day=None,
            rules=set(PAIRS.values()),
        )
        keys = [(m.rule, m.subject) for m in found] + [("position_notional", "GONEUSDT:BOTH")]
        picked = rng.sample(keys, k=min(len(keys), rng.randint(1, 3)))
        seeds[account_id] = {key: rng.choice([20, 30]) for key in picked}
    return seeds


def latched(latches: dict) -> dict:
    """What a latch remembers; a NORMAL state with no streak is the same as no state at all."""
    return {
        (account_id, key): (s.level, dict(s.streaks))
        for account_id, latch in latches.items()
        for key, s in latch.states.items()
        if s.level != NORMAL or any(s.streaks.values())
    }


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), seeded=st.booleans())
def test_screen_and_exact_path_give_the_same_changes_as_the_exact_path_alone(seed, seeded):
    """``seeded``: the latches start from open alert levels (a restart), the first evaluation of
    each seeded account settles them, and levels then clear only after their dwell."""
    rng = random.Random(seed)
    desk = Desk(rng, n_accounts=rng.randint(3, 10))
    limits = {a: limits_near(rng, desk, a) for a in desk.accounts}
    ref_latches, ref_days, latches, days, hot = {}, {}, {}, {}, set()
    seeds = random_seeds(rng, desk, limits) if seeded else {}
    for account_id, levels in seeds.items():
        ref_latches.setdefault(account_id, Latch()).seed(levels)
    seed_latches(latches=latches, hot=hot, levels=seeds)
    screen = Screen(limits)
    day, skipped, changes_seen = "d0", 0, 0
    for step in range(60):
        touched = set(desk.accounts) if step == 0 else desk.step()
        if rng.random() < 0.03:
            day = f"d{step}"  # the trading day rolls over
        settle = {a: set(PAIRS.values()) for a in seeds} if step == 0 else None
        want = exact_only(desk, touched, limits, ref_latches, ref_days, day, settle)
        got = {}
        for account_id, changes, _risk in evaluate_accounts(
            book=desk.book,
            account_ids=touched,
            limits=limits,
            latches=latches,
            days=days,
            day=day,
            hot=hot,
            screen=screen,
            now_ms=desk.ts,
            settle=settle,
        ):
            got[account_id] = changes
        skipped += len(want) - len(got)
        changes_seen += sum(map(len, want.values()))
        assert {a: c for a, c in got.items() if c} == {a: c for a, c in want.items() if c}
        assert latched(latches) == latched(ref_latches)
        assert days == ref_days
    assert skipped or changes_seen  # each desk exercised one side at least


def test_a_seeded_or_dwelling_latch_is_never_screened_out():
    """Far from every limit, an account is quiet, unless its latch was seeded from an open alert
    or a level waits for its dwell: then the exact path must run, to settle or to clear it."""
    rng = random.Random(3)
    desk = Desk(rng, n_accounts=4)
    generous = Limits.from_values({"max_position_notional_warning": D(10**9), "breach_after_n": 1, "clear_dwell_s": 30})
    limits = {a: generous for a in desk.accounts}
    complete = [a for a in desk.accounts if desk.book.account(a).complete]
    account_id = complete[0]
    subject = f"{desk.book.positions(account_id)[0].symbol}:{desk.book.positions(account_id)[0].side}"
    latches, hot = {}, set()
    seed_latches(latches=latches, hot=hot, levels={account_id: {("position_notional", subject): 20}})
    assert hot == {account_id}

    def evaluated(now_ms, settle=None):
        return {
            a: changes
            for a, changes, _ in evaluate_accounts(
                book=desk.book,
                account_ids=set(complete),
                limits=limits,
                latches=latches,
                days={},
                day="d0",
                hot=hot,
                screen=Screen(limits),
                now_ms=now_ms,
                settle=settle,
            )
        }

    first = evaluated(1_000)
    assert list(first) == [account_id] and first[account_id] == []  # dwelling: kept, not cleared
    assert latches[account_id].dwelling() and account_id in hot
    assert evaluated(20_000) == {account_id: []}
    [cleared] = evaluated(31_000)[account_id]
    assert (cleared.previous, cleared.level) == (20, NORMAL)
    assert evaluated(32_000) == {} and hot == set()  # quiet again: screened


@pytest.mark.filterwarnings("error")
def test_a_position_without_a_mark_reaches_no_nan_into_the_concentration_screen():
    """A position whose symbol has no mark yet has no notional (NaN). The screen must fail closed
    on it without NumPy warning "invalid value encountered in maximum" (seen on every start)."""
    book = RiskBook(capacity=4)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        book.set_brackets(symbol, TABLES[symbol])
    book.apply_marks({"BTCUSDT": D(43000), "ETHUSDT": D(3000)}, ts=1)
    for account_id in (1, 2):
        book.set_wallet(account_id, D(10000))
        for symbol, qty, price in (("BTCUSDT", "0.01", 43000), ("ETHUSDT", "0.1", 3000)):
            book.upsert_position(
                account_id, BookPosition(symbol=symbol, side="BOTH", qty=D(qty), entry_price=D(price), leverage=5)
            )
    book.upsert_position(1, BookPosition(symbol="UNMARKEDUSDT", side="BOTH", qty=D(5), entry_price=D(2), leverage=5))
    limits = {a: Limits.from_values({"max_concentration_warning": D("0.99"), "breach_after_n": 1}) for a in (1, 2)}
    arrays = book.screen_arrays()
    assert np.isnan(arrays["notional"]).any()  # the case under test is there
    index = {a: i for i, a in enumerate(arrays["account_ids"]) if i}
    quiet = Screen(limits).quiet(arrays, [index[1], index[2]], {})
    assert [arrays["account_ids"][i] for i in quiet.tolist()] == [2]  # the unmarked account fails closed


def test_the_random_desks_exercise_both_paths_and_every_kind_of_change():
    """Over a fixed set of desks: accounts skipped, changes opened, escalated, cleared by value and
    by a closed position, so the property above is not vacuous."""
    skipped = evaluated = 0
    kinds = set()
    for seed in range(25):
        rng = random.Random(seed)
        desk = Desk(rng, n_accounts=8)
        limits = {a: limits_near(rng, desk, a) for a in desk.accounts}
        latches, days, hot = {}, {}, set()
        screen = Screen(limits)
        for step in range(60):
            touched = set(desk.accounts) if step == 0 else desk.step()
            wanted = [a for a in touched if limits.get(a)]
            n = 0
            for _, changes, _ in evaluate_accounts(
                book=desk.book,
                account_ids=touched,
                limits=limits,
                latches=latches,
                days=days,
                day="d0",
                hot=hot,
                screen=screen,
            ):
                n += 1
                kinds |= {(c.previous, c.level) for c in changes}
                kinds |= {"closed" for c in changes if c.level == NORMAL and not c.thresholds.warning}
            evaluated += n
            skipped += len(wanted) - n
    assert skipped > evaluated / 5 and evaluated > 0
    assert {(0, 20), (0, 30), (20, 30), (30, 0), (20, 0), "closed"} <= kinds


def test_a_value_exactly_on_a_limit_is_never_screened_out():
    rng = random.Random(7)
    desk = Desk(rng, n_accounts=1)
    while not desk.book.positions(1):
        desk.open(1)
    notional = max(p.notional for p in desk.book.positions(1))
    limits = {1: Limits.from_values({"max_position_notional_warning": notional, "breach_after_n": 1})}
    changes = [c for _, cs, _ in evaluate_accounts(
        book=desk.book, account_ids={1}, limits=limits, latches={}, days={}, day="d0", hot=set(), screen=Screen(limits)
    ) for c in cs]  # fmt: skip
    assert [(c.rule, c.level, c.measurement.value) for c in changes] == [("position_notional", 20, notional)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_book_arrays_margin_balance_is_the_books_decimal(seed):
    """The day's peak equity for a screened account comes from these floats: they must round to
    exactly the Decimal `book.account()` reports."""
    rng = random.Random(seed)
    desk = Desk(rng, n_accounts=6)
    for _ in range(10):
        desk.step()
        arrays = desk.book.screen_arrays()
        for i, account_id in enumerate(arrays["account_ids"]):
            risk = desk.book.account(account_id) if i else None
            if risk is not None and risk.complete:
                assert money(float(arrays["margin_balance"][i])) == risk.margin_balance
        assert np.all(arrays["acct"] > 0)


def test_accounts_far_from_every_limit_skip_the_exact_path():
    """The point of the screen: on a calm desk no account is evaluated exactly, whichever limits
    its profile leaves unset (an unset lower-is-worse limit must not count as a breach)."""
    rng = random.Random(3)
    desk = Desk(rng, n_accounts=8)
    generous = Limits.from_values(
        {
            "max_position_notional_warning": D(10**9),
            "liq_distance_critical": D("0.0001"),
            "max_leverage_critical": 200,
            "margin_ratio_warning": D("0.99"),
            "breach_after_n": 1,
        }
    )
    limits = {a: generous for a in desk.accounts}
    kept = list(
        evaluate_accounts(
            book=desk.book,
            account_ids=set(desk.accounts),
            limits=limits,
            latches={},
            days={},
            day="d0",
            hot=set(),
            screen=Screen(limits),
        )
    )
    incomplete = [a for a in desk.accounts if not desk.book.account(a).complete]
    assert [account_id for account_id, _, _ in kept] == incomplete
