"""positions.book: the float book equals the Decimal reference to the cent, on random desks and edge cases."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from positions import figures
from positions.book import (
    AccountRisk,
    BookPosition,
    RiskBook,
    account_risk_from_plain,
    position_risk_from_plain,
)
from positions.margin import ZERO, liquidation_distance
from positions.tests.conftest import load_bracket_tables

D = Decimal
TABLES = load_bracket_tables()
SYMBOLS = sorted(TABLES)
MONEY_TOLERANCE = D("0.005")
T0 = 1_730_000_000_000


# --------------------------------------------------------------------------- a random desk


class Desk:
    """The same desk held twice: in a RiskBook and as plain Decimal inputs for the reference."""

    def __init__(self, seed: int, *, accounts: int, positions: int) -> None:
        self.rng = random.Random(seed)
        self.book = RiskBook(capacity=16)
        self.marks: dict[str, Decimal] = {}
        self.wallets: dict[int, dict[str, Decimal]] = {}
        self.rows: dict[int, dict[tuple[str, str], BookPosition]] = {}
        self.hedged = {a: self.rng.random() < 0.4 for a in range(accounts)}
        for symbol in SYMBOLS:
            self.book.set_brackets(symbol, TABLES[symbol])
            self.marks[symbol] = self.price()
        self.book.apply_marks(self.marks, ts=T0)
        for account in range(accounts):
            for asset in ("USDT", "USDC"):
                self.set_wallet(account, asset)
        for _ in range(positions):
            self.open_random()

    def price(self) -> Decimal:
        return D(self.rng.randint(10_000, 9_000_000)) / D(10) ** self.rng.randint(1, 4)

    def set_wallet(self, account: int, asset: str) -> set:
        wallet = D(self.rng.randint(-20_000, 2_000_000_000)) / 100
        self.wallets.setdefault(account, {})[asset] = wallet
        return self.book.set_wallet(account, wallet, asset=asset)

    def random_position(self, symbol: str, side: str, margin_type: str, asset: str) -> BookPosition:
        mark = self.marks[symbol]
        entry = (mark * D(self.rng.randint(700, 1300)) / 1000).quantize(D("0.0001"))
        notional = D(self.rng.randint(100, 999)) * D(10) ** self.rng.randint(0, 7)
        qty = max((notional / entry).quantize(D("0.001")), D("0.001"))
        if side == "BOTH" and self.rng.random() < 0.5:
            qty = -qty
        leverage = self.rng.choice([1, 2, 5, 10, 20, 50, 75, 125])
        iso = ZERO
        if margin_type == "isolated":
            iso = (abs(qty) * entry / leverage * D(self.rng.randint(90, 300)) / 100).quantize(D("0.01"))
        return BookPosition(
            symbol=symbol,
            side=side,
            qty=qty,
            entry_price=entry,
            leverage=leverage,
            margin_type=margin_type,
            isolated_wallet=iso,
            margin_asset=asset,
        )

    def open_random(self) -> set:
        account = self.rng.randrange(len(self.hedged))
        symbol = self.rng.choice(SYMBOLS)
        existing = [p for (s, _), p in self.rows.get(account, {}).items() if s == symbol]
        margin_type = existing[0].margin_type if existing else self.rng.choice(["cross", "cross", "isolated"])
        asset = existing[0].margin_asset if existing else self.rng.choice(["USDT"] * 4 + ["USDC"])
        side = self.rng.choice(["LONG", "SHORT"]) if self.hedged[account] else "BOTH"
        return self.upsert(account, self.random_position(symbol, side, margin_type, asset))

    def upsert(self, account: int, position: BookPosition) -> set:
        self.rows.setdefault(account, {})[(position.symbol, position.side)] = position
        return self.book.upsert_position(account, position)

    def remove(self, account: int, key: tuple[str, str]) -> set:
        del self.rows[account][key]
        return self.book.remove_position(account, *key)

    def move_marks(self, symbols: list[str], ts: int) -> set:
        for symbol in symbols:
            moved = self.marks[symbol] * D(self.rng.randint(800, 1200)) / 1000
            self.marks[symbol] = moved.quantize(D("0.0001"))
        if len(symbols) == 1:
            return self.book.apply_mark(symbols[0], str(self.marks[symbols[0]]), ts=ts)
        return self.book.apply_mark_array(symbols, [str(self.marks[s]) for s in symbols], ts=ts)

    def inputs(self, account: int) -> list[figures.PositionInput]:
        return [p.with_mark(self.marks[p.symbol]) for p in self.rows.get(account, {}).values()]


def assert_money(got: Decimal | None, expected: Decimal | None, what: str) -> None:
    assert (got is None) == (expected is None), (what, got, expected)
    if got is not None:
        assert abs(got - expected) < MONEY_TOLERANCE, (what, got, expected)


def assert_ratio(got: Decimal | None, expected: Decimal | None, what: str) -> None:
    assert (got is None) == (expected is None), (what, got, expected)
    if got is not None:
        assert abs(got - expected) <= D("1e-9") * max(D(1), abs(expected)), (what, got, expected)


def assert_price_to_the_cent(got: Decimal | None, expected: Decimal | None, what: str) -> None:
    """Within half a cent, and rounding to the same cent unless the Decimal value sits so close to a
    half-cent tie that float64 (16 digits) cannot tell which side it is on."""
    assert_money(got, expected, what)
    if got is not None:
        float_resolution = abs(expected) * D("1e-13") + D("1e-9")
        near_half_cent = abs((expected * 100) % 1 - D("0.5")) < float_resolution * 100
        same_cent = got.quantize(D("0.01")) == expected.quantize(D("0.01"))
        assert near_half_cent or same_cent, (what, got, expected)


MONEY_FIELDS = (
    "wallet_balance",
    "unrealized_pnl",
    "margin_balance",
    "maint_margin",
    "initial_margin",
    "gross_exposure",
    "net_exposure",
)
RATIO_FIELDS = ("margin_ratio", "cross_margin_ratio", "utilization", "largest_symbol_share", "herfindahl")


def assert_account_matches(desk: Desk, account: int) -> None:
    got = desk.book.account(account)
    inputs = desk.inputs(account)
    expected = figures.account_figures(wallet_balances=desk.wallets[account], positions=inputs, brackets=TABLES)
    assert got.complete
    for name in MONEY_FIELDS:
        assert_money(getattr(got, name), getattr(expected, name), f"{account} {name}")
    assert_money(got.equity, expected.margin_balance, f"{account} equity")
    for name in RATIO_FIELDS:
        assert_ratio(getattr(got, name), getattr(expected, name), f"{account} {name}")
    assert got.symbol_exposures.keys() == expected.symbol_exposures.keys()
    for symbol, value in expected.symbol_exposures.items():
        assert_money(got.symbol_exposures[symbol], value, f"{account} {symbol} exposure")
    for asset, pool in expected.per_asset.items():
        mine = got.per_asset[asset]
        for name in pool.__dataclass_fields__:
            value = getattr(pool, name)
            check = assert_ratio if "ratio" in name or name == "utilization" else assert_money
            if name != "asset":
                check(getattr(mine, name), value, f"{account} {asset} {name}")
    assert_positions_match(desk, account, inputs)


def assert_plain_matches(book: RiskBook, account) -> None:  # noqa: ANN001 - any account id
    """positions_plain() is positions() with every Decimal as str() writes it ("0E-8", "1.2E-7" too)."""
    expected = [
        {k: str(v) if isinstance(v, Decimal) else v for k, v in dataclasses.asdict(r).items()}
        for r in book.positions(account)
    ]
    assert book.positions_plain(account) == expected
    # account_plain() is account() without per_asset, the same way (tuples as lists).
    risk = book.account(account)
    plain = {f.name: _plain_value(getattr(risk, f.name)) for f in dataclasses.fields(risk) if f.name != "per_asset"}
    assert book.account_plain(account) == plain
    # ... and back: what persistence gets from the plain forms is what account() and positions() give.
    assert account_risk_from_plain(book.account_plain(account)) == dataclasses.replace(risk, per_asset={})
    assert [position_risk_from_plain(p) for p in book.positions_plain(account)] == book.positions(account)


def _plain_value(value):  # noqa: ANN001, ANN202 - any field of AccountRisk
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def assert_positions_match(desk: Desk, account: int, inputs: list[figures.PositionInput]) -> None:
    by_key = {(p.symbol, p.side): p for p in inputs}
    rows = desk.book.positions(account)
    assert_plain_matches(desk.book, account)
    assert {(r.symbol, r.side) for r in rows} == set(by_key)
    for row in rows:
        p = by_key[(row.symbol, row.side)]
        what = f"{account} {p.symbol} {p.side}"
        assert row.complete and row.mark == p.mark_price and row.qty == p.qty
        assert_money(row.notional, figures.notional(p), what)
        assert_money(row.unrealized_pnl, figures.unrealized_pnl(p), what)
        assert_money(row.maint_margin, figures.position_maint_margin(p, TABLES[p.symbol]), what)
        assert_money(row.initial_margin, figures.initial_margin(p), what)
        point = figures.position_liquidation(
            position=p, positions=inputs, brackets=TABLES, cross_wallet_balance=desk.wallets[account][p.margin_asset]
        )
        assert_price_to_the_cent(row.liquidation_price, point and point.price, f"{what} LP")
        if point is not None:
            assert row.liquidation_on_fall is point.on_fall, what
            distance = liquidation_distance(mark=p.mark_price, liquidation=point.price, long=point.on_fall)
            assert_ratio(row.liquidation_distance, distance, f"{what} distance")


def assert_desk_matches(desk: Desk) -> None:
    for account in desk.rows:
        assert_account_matches(desk, account)


# --------------------------------------------------------------------------- random desks


def test_random_desk_matches_the_decimal_reference_after_every_kind_of_update() -> None:
    desk = Desk(seed=7, accounts=25, positions=400)
    assert_desk_matches(desk)
    ts = T0
    for step in range(30):
        ts += 1000
        kind = step % 6
        if kind == 0:
            desk.move_marks(list(SYMBOLS), ts)  # full market
        elif kind == 1:
            desk.move_marks([desk.rng.choice(SYMBOLS)], ts)
        elif kind == 2:
            desk.move_marks(desk.rng.sample(SYMBOLS, 3), ts)
        elif kind == 3:
            desk.set_wallet(desk.rng.randrange(25), desk.rng.choice(["USDT", "USDC"]))
        elif kind == 4:
            desk.open_random()
        else:
            account = desk.rng.choice([a for a in desk.rows if desk.rows[a]])
            desk.remove(account, desk.rng.choice(sorted(desk.rows[account])))
        assert_desk_matches(desk)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_hypothesis_desks_match_the_decimal_reference(seed: int) -> None:
    desk = Desk(seed=seed, accounts=6, positions=60)
    desk.move_marks(list(SYMBOLS), T0 + 1)
    desk.move_marks([SYMBOLS[seed % len(SYMBOLS)]], T0 + 2)
    assert_desk_matches(desk)


def test_resync_changes_nothing() -> None:
    desk = Desk(seed=3, accounts=10, positions=150)
    for i in range(20):
        desk.move_marks([desk.rng.choice(SYMBOLS)], T0 + i + 1)
    before = {a: desk.book.account(a) for a in desk.rows}
    desk.book.resync()
    for account, risk in before.items():
        after = desk.book.account(account)
        for name in MONEY_FIELDS:
            assert abs(getattr(after, name) - getattr(risk, name)) < D("0.0001")  # float drift only


def test_hedge_pairs_formed_while_the_tables_grow_stay_pairs() -> None:
    """Each account's second leg turns a single into a pair; forming the pair may grow the unit
    tables. A pair flag written to the replaced table left the unit valued as one leg (wrong LP on
    the next single-symbol tick, or an IndexError in the tier search): every growth step here."""
    desk = Desk(seed=5, accounts=80, positions=0)
    for account in range(40):
        desk.hedged[account] = True
        for side in ("LONG", "SHORT"):
            desk.upsert(account, desk.random_position("ETHUSDT", side, "cross", "USDT"))
    others = [s for s in SYMBOLS if s != "ETHUSDT"][:5]
    for account in range(40, 80):  # so that an ETHUSDT tick revalues a few units, not the whole book
        desk.hedged[account] = False
        for symbol in others:
            desk.upsert(account, desk.random_position(symbol, "BOTH", "cross", "USDT"))
    desk.move_marks(["ETHUSDT"], T0 + 1)  # the incremental path reads each unit's pair flag
    assert_desk_matches(desk)


def test_a_desk_loaded_account_by_account_matches_the_decimal_reference() -> None:
    # Slots allocated a whole account at a time, as a sync loads them: a full-market tick then sums
    # the pools over runs of neighbouring slots (RiskBook._sum_pools), not slot by slot as above.
    desk = Desk(seed=11, accounts=12, positions=0)
    for account in range(12):
        for _ in range(30):
            symbol = desk.rng.choice(SYMBOLS)
            side = desk.rng.choice(["LONG", "SHORT"]) if desk.hedged[account] else "BOTH"
            existing = [p for (s, _), p in desk.rows.get(account, {}).items() if s == symbol]
            margin_type = existing[0].margin_type if existing else desk.rng.choice(["cross", "cross", "isolated"])
            # Account 10 alternates its two pools slot by slot (many short runs of one pool), 11 uses USDC.
            asset = "USDC" if account == 11 or (account == 10 and SYMBOLS.index(symbol) % 2) else "USDT"
            desk.upsert(account, desk.random_position(symbol, side, margin_type, asset))
    starts, _ = desk.book._pool_runs(desk.book._s_hw)
    assert len(starts) * 4 <= desk.book._s_hw  # the layout this test is about
    ts = T0
    for step in range(12):
        ts += 1000
        desk.move_marks(list(SYMBOLS), ts)
        if step % 3 == 1:
            desk.move_marks([desk.rng.choice(SYMBOLS)], ts + 1)
        elif step % 3 == 2:  # a freed slot taken by another account's position
            account = desk.rng.choice([a for a in desk.rows if desk.rows[a]])
            desk.remove(account, desk.rng.choice(sorted(desk.rows[account])))
            desk.open_random()
        assert_desk_matches(desk)


@pytest.mark.parametrize("full_market", [True, False])
def test_maint_margin_follows_the_notional_across_bracket_floors(full_market: bool) -> None:
    # The book evaluates the tier line a position's MM was on last time and searches all tiers only
    # when the notional has left that tier: walk up and down across every floor, and jump over several.
    table = TABLES["BTCUSDT"]
    book = RiskBook()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        book.set_brackets(symbol, TABLES[symbol])
    book.apply_marks({"BTCUSDT": "1", "ETHUSDT": "1"}, ts=T0)
    book.set_wallet("a", D("1000000000000"))
    position = BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("1"), leverage=1)
    book.upsert_position("a", position)
    for i in range(10):  # enough other positions that a BTCUSDT-only tick revalues incrementally
        book.set_wallet(f"other{i}", D("1000"))
        book.upsert_position(
            f"other{i}", BookPosition(symbol="ETHUSDT", side="BOTH", qty=D(i + 1), entry_price=D("1"), leverage=1)
        )
    floors = [b.floor for b in table[1:]]
    walk = [floor + step for floor in floors for step in (D("-0.01"), D(0), D("0.01"))]
    ts = T0
    for notional in [*walk, *reversed(walk), floors[-1] * 3, D("10"), floors[5], D("0.5")]:
        ts += 1
        if full_market:
            book.apply_mark_array(["BTCUSDT", "ETHUSDT"], [str(notional), str(1 + ts % 2)], ts=ts)
        else:
            book.apply_mark("BTCUSDT", str(notional), ts=ts)
        expected = figures.position_maint_margin(position.with_mark(notional), table)
        assert_money(book.positions("a")[0].maint_margin, expected, f"notional {notional}")


# --------------------------------------------------------------------------- changed accounts


def small_book() -> RiskBook:
    book = RiskBook()
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        book.set_brackets(symbol, TABLES[symbol])
    book.apply_marks({"BTCUSDT": "60000", "ETHUSDT": "3000", "SOLUSDT": "150"}, ts=T0)
    for account in ("alice", "bob", "carol"):
        book.set_wallet(account, D("10000"))
    book.upsert_position(
        "alice", BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("60000"), leverage=10)
    )
    book.upsert_position(
        "alice", BookPosition(symbol="ETHUSDT", side="BOTH", qty=D("-10"), entry_price=D("3000"), leverage=10)
    )
    book.upsert_position(
        "bob",
        BookPosition(
            symbol="ETHUSDT",
            side="LONG",
            qty=D("5"),
            entry_price=D("3000"),
            leverage=20,
            margin_type="isolated",
            isolated_wallet=D("800"),
        ),
    )
    book.upsert_position(
        "carol", BookPosition(symbol="SOLUSDT", side="BOTH", qty=D("100"), entry_price=D("150"), leverage=5)
    )
    return book


def test_a_mark_returns_only_the_accounts_holding_the_symbol() -> None:
    book = small_book()
    assert book.apply_mark("ETHUSDT", D("3100"), ts=T0 + 1) == {"alice", "bob"}
    assert book.apply_mark("SOLUSDT", "151", ts=T0 + 2) == {"carol"}
    assert book.apply_mark("SOLUSDT", "151", ts=T0 + 3) == set()  # unchanged price
    assert book.apply_mark("XRPUSDT", "0.5", ts=T0 + 4) == set()  # nobody holds it


def test_a_mark_in_one_symbol_moves_the_cross_liquidation_price_of_another() -> None:
    book = small_book()
    btc_before = book.positions("alice")[0].liquidation_price
    book.apply_mark("ETHUSDT", D("3300"), ts=T0 + 1)  # alice is short ETH: her UPNL1 for BTC falls
    btc_after = book.positions("alice")[0].liquidation_price
    assert btc_after > btc_before


def test_a_resync_repeating_what_the_book_holds_changes_nothing() -> None:
    book = small_book()
    before = (book.account("alice"), book.positions("alice"))
    same = BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("60000"), leverage=10)
    assert book.upsert_positions([("alice", same)]) == set()
    assert book.set_wallet("alice", D("10000.00")) == set()
    assert (book.account("alice"), book.positions("alice")) == before
    # Any one field different is a change, handled as before.
    moved = BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("60000"), leverage=20)
    assert book.upsert_positions([("alice", same), ("alice", moved)]) == {"alice"}
    assert book.positions("alice")[0].leverage == 20
    assert book.set_wallet("alice", D("9000")) == {"alice"}
    assert book.account("alice").wallet_balance == D("9000")


def test_an_isolated_liquidation_price_ignores_other_marks_and_the_wallet() -> None:
    book = small_book()
    before = book.positions("bob")[0].liquidation_price
    book.apply_mark("BTCUSDT", D("50000"), ts=T0 + 1)
    assert book.set_wallet("bob", D("1"), asset="USDT") == {"bob"}
    assert book.positions("bob")[0].liquidation_price == before


def test_out_of_order_marks_are_ignored() -> None:
    book = small_book()
    book.apply_mark("BTCUSDT", "61000", ts=T0 + 10)
    assert book.apply_mark("BTCUSDT", "59000", ts=T0 + 5) == set()
    assert book.mark("BTCUSDT").price == D("61000") and book.mark("BTCUSDT").ts_ms == T0 + 10


def test_mark_time_accepts_aware_datetimes() -> None:
    book = small_book()
    when = datetime(2030, 1, 1, tzinfo=UTC)
    book.apply_mark("BTCUSDT", "61000", ts=when)
    assert book.mark("BTCUSDT").ts_ms == int(when.timestamp() * 1000)
    assert book.account("alice").oldest_mark_ts_ms == T0  # ETH's mark is the stale one


def test_account_override_brackets_apply_to_that_account_only() -> None:
    book = small_book()
    book.upsert_position(
        "carol", BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("60000"), leverage=10)
    )
    scaled = [
        type(b)(floor=b.floor * 2, cap=b.cap * 2, mmr=b.mmr, cum=b.cum * 2, max_leverage=b.max_leverage)
        for b in TABLES["BTCUSDT"]
    ]
    assert book.set_brackets("BTCUSDT", scaled, account_id="carol") == {"carol"}
    alice_btc = book.positions("alice")[0]
    carol_btc = next(p for p in book.positions("carol") if p.symbol == "BTCUSDT")
    assert alice_btc.maint_margin == D("60000") * D("0.005") - 50  # default tier 2
    assert carol_btc.maint_margin == D("60000") * D("0.004")  # scaled tier 1 reaches 100k


# --------------------------------------------------------------------------- failing closed


def test_a_symbol_without_mark_makes_the_account_incomplete() -> None:
    book = small_book()
    book.set_brackets("DOGEUSDT", TABLES["DOGEUSDT"])
    book.upsert_position(
        "alice", BookPosition(symbol="DOGEUSDT", side="BOTH", qty=D("1000"), entry_price=D("0.1"), leverage=10)
    )
    risk = book.account("alice")
    assert not risk.complete and risk.missing_marks == ("DOGEUSDT",)
    assert risk.margin_ratio is None and risk.margin_balance is None and risk.per_asset["USDT"] is None
    rows = {p.symbol: p for p in book.positions("alice")}
    assert rows["DOGEUSDT"].mark is None and rows["DOGEUSDT"].notional is None
    # cross: the other positions' TMM1/UPNL1 are unknown, so their LP is unknown, not "--"
    assert rows["BTCUSDT"].liquidation_price is None and not rows["BTCUSDT"].complete
    assert "DOGEUSDT" in book.symbols_without_mark()
    assert_plain_matches(book, "alice")
    book.apply_mark("DOGEUSDT", "0.11", ts=T0 + 1)
    assert book.account("alice").complete
    assert book.positions("alice")[0].liquidation_price is not None


def test_plain_positions_write_tiny_and_zero_figures_as_decimal_does() -> None:
    book = small_book()
    # A position worth less than a millionth: notional, uPnL and margins print in exponent form.
    book.apply_mark("DOGEUSDT", "0.00000100", ts=T0)
    book.set_brackets("DOGEUSDT", TABLES["DOGEUSDT"])
    book.upsert_position(
        "carol", BookPosition(symbol="DOGEUSDT", side="BOTH", qty=D("0.1"), entry_price=D("0.00000100"), leverage=5)
    )
    assert_plain_matches(book, "carol")
    doge = next(p for p in book.positions_plain("carol") if p["symbol"] == "DOGEUSDT")
    assert doge["unrealized_pnl"] == "0E-8" and doge["notional"] == "1.0E-7"


def test_a_symbol_without_brackets_makes_the_account_incomplete() -> None:
    book = small_book()
    book.apply_mark("DOGEUSDT", "0.1", ts=T0)
    book.upsert_position(
        "carol", BookPosition(symbol="DOGEUSDT", side="BOTH", qty=D("1000"), entry_price=D("0.1"), leverage=10)
    )
    risk = book.account("carol")
    assert not risk.complete and risk.missing_brackets == ("DOGEUSDT",) and risk.maint_margin is None
    assert_plain_matches(book, "carol")
    assert "DOGEUSDT" in book.symbols_without_brackets()
    assert book.set_brackets("DOGEUSDT", TABLES["DOGEUSDT"]) == {"carol"}
    assert book.account("carol").complete


def test_a_pool_without_wallet_has_no_cross_liquidation_price() -> None:
    book = small_book()
    book.upsert_position(
        "dave", BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("60000"), leverage=10)
    )
    risk = book.account("dave")
    assert not risk.complete and risk.missing_wallets == ("USDT",)
    assert book.positions("dave")[0].liquidation_price is None
    book.set_wallet("dave", D("6000"))
    assert book.positions("dave")[0].liquidation_price is not None


def test_an_account_with_positions_gone_is_flat() -> None:
    book = small_book()
    book.remove_position("carol", "SOLUSDT", "BOTH")
    risk = book.account("carol")
    assert risk.complete and risk.gross_exposure == 0 and risk.margin_ratio == 0 and risk.herfindahl == 0
    assert book.positions("carol") == []


def test_hedge_leg_removed_turns_the_pair_into_a_single_leg() -> None:
    book = small_book()
    long_leg = BookPosition(symbol="BTCUSDT", side="LONG", qty=D("3"), entry_price=D("60000"), leverage=10)
    short_leg = BookPosition(symbol="BTCUSDT", side="SHORT", qty=D("1"), entry_price=D("62000"), leverage=10)
    book.set_wallet("erin", D("10000"))
    book.upsert_positions([("erin", long_leg), ("erin", short_leg)])
    book.apply_mark("BTCUSDT", "60000", ts=T0 + 1)
    pair_lp = book.positions("erin")[0].liquidation_price
    assert pair_lp.quantize(D("0.01")) == D("54494.95")  # the own vector in test_margin
    book.remove_position("erin", "BTCUSDT", "SHORT")
    (only,) = book.positions("erin")
    expected = (D("180000") - D("10000") - 50) / (3 * D("0.995"))
    assert abs(only.liquidation_price - expected) < MONEY_TOLERANCE


def test_switching_margin_type_moves_the_position_between_pools_of_liquidation() -> None:
    book = small_book()
    cross_lp = book.positions("carol")[0].liquidation_price
    isolated = BookPosition(
        symbol="SOLUSDT",
        side="BOTH",
        qty=D("100"),
        entry_price=D("150"),
        leverage=5,
        margin_type="isolated",
        isolated_wallet=D("3000"),
    )
    assert book.upsert_position("carol", isolated) == {"carol"}
    (row,) = book.positions("carol")
    expected = (D("15000") - D("3000")) / (100 * D("0.995"))  # 2024 SOL tier 1: 0.5 %
    assert row.liquidation_price != cross_lp and abs(row.liquidation_price - expected) < MONEY_TOLERANCE
    assert book.account("carol").per_asset["USDT"].isolated_wallet_balance == D("3000")


def test_changing_size_revalues_in_place() -> None:
    book = small_book()
    before = book.account("alice").gross_exposure
    book.upsert_position(
        "alice", BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("2"), entry_price=D("60000"), leverage=10)
    )
    assert book.account("alice").gross_exposure == before + D("60000")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.apply_mark("BTCUSDT", 61000.0, ts=T0), "must be a Decimal"),
        (lambda b: b.apply_mark("BTCUSDT", "abc", ts=T0), "not a number"),
        (lambda b: b.apply_mark("BTCUSDT", "NaN", ts=T0), "must be finite"),
        (lambda b: b.apply_mark("BTCUSDT", "0", ts=T0), "must be > 0"),
        (lambda b: b.apply_mark("BTCUSDT", "1", ts=1.5), "epoch milliseconds"),
        (lambda b: b.apply_mark("BTCUSDT", "1", ts=datetime(2030, 1, 1)), "timezone-aware"),
        (lambda b: b.apply_mark_array(["BTCUSDT"], [], ts=T0), "1 symbols but 0 prices"),
        (lambda b: b.set_wallet("alice", 5), "must be a Decimal"),
        (lambda b: b.set_brackets("BTCUSDT", []), "non-empty"),
        (lambda b: b.remove_position("alice", "XRPUSDT", "BOTH"), "no XRPUSDT BOTH position"),
        (lambda b: b.account("nobody"), "unknown account"),
        (
            lambda b: b.upsert_position(
                "alice", BookPosition(symbol="BTCUSDT", side="LONG", qty=D("1"), entry_price=D("1"), leverage=1)
            ),
            "cannot coexist",
        ),
        (
            lambda b: b.upsert_position(
                "bob", BookPosition(symbol="ETHUSDT", side="SHORT", qty=D("1"), entry_price=D("1"), leverage=1)
            ),
            "disagree",
        ),
        (lambda b: b.upsert_position("alice", "BTCUSDT"), "expected BookPosition"),
    ],
)
def test_book_rejects_bad_input(call, message: str) -> None:  # noqa: ANN001 - lambdas
    book = small_book()
    with pytest.raises(ValueError, match=message):
        call(book)


def test_a_bad_mark_in_an_array_changes_nothing() -> None:
    book = small_book()
    with pytest.raises(ValueError):
        book.apply_marks({"BTCUSDT": "70000", "ETHUSDT": "-1"}, ts=T0 + 1)
    assert book.mark("BTCUSDT").price == D("60000")


@pytest.mark.parametrize(
    "changes",
    [
        dict(qty=D("0")),
        dict(side="SHORT", qty=D("-1")),
        dict(leverage=0),
        dict(entry_price=D("0")),
        dict(margin_type="portfolio"),
    ],
)
def test_book_position_is_validated_like_position_input(changes: dict) -> None:
    fields = dict(symbol="BTCUSDT", side="BOTH", qty=D("1"), entry_price=D("1"), leverage=1)
    with pytest.raises(ValueError):
        BookPosition(**{**fields, **changes})


def test_account_risk_is_a_plain_value() -> None:
    assert isinstance(small_book().account("alice"), AccountRisk)
