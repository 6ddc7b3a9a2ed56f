"""positions.margin: Binance FAQ vectors, own vectors, properties over every fixture symbol, bad input."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from positions.margin import (
    RATIO_CAP,
    ZERO,
    Bracket,
    LiquidationPoint,
    brackets_from_binance,
    check_brackets,
    liquidation_distance,
    liquidation_point,
    liquidation_price,
    maintenance_margin,
    margin_ratio,
)
from positions.tests.conftest import BRACKET_FIXTURE, load_bracket_tables

D = Decimal
CENT = D("0.01")
TABLES = load_bracket_tables()
SYMBOLS = sorted(TABLES)
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True)  # per symbol: 27 × 40 per property


def table(*rows: tuple[str, str, str], leverage: int = 125) -> tuple[Bracket, ...]:
    """Build a table from (cap, mmr, cum) rows; floors chain from 0."""
    out, floor = [], D(0)
    for cap, mmr, cum in rows:
        out.append(Bracket(floor=floor, cap=D(cap), mmr=D(mmr), cum=D(cum), max_leverage=leverage))
        floor = D(cap)
    return tuple(out)


def cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT)


# The 2020-21 tables the Binance FAQ example uses (reference §1.5 "older copies").
FAQ_BTC = table(
    ("50000", "0.004", "0"), ("250000", "0.005", "50"), ("1000000", "0.01", "1300"), ("10000000", "0.025", "16300")
)
FAQ_ETH = table(
    ("10000", "0.005", "0"),
    ("100000", "0.0065", "15"),
    ("500000", "0.01", "365"),
    ("1000000", "0.02", "5365"),
    ("2000000", "0.05", "35365"),
    ("5000000", "0.10", "135365"),
)
FAQ_WB = D("1535443.01")
BTC_QTY, BTC_ENTRY, BTC_MARK = D("109.488"), D("32481.98"), D("31967.27")
ETH_QTY, ETH_ENTRY, ETH_MARK = D("3683.979"), D("1456.84"), D("1335.18")


# --------------------------------------------------------------------------- Binance FAQ (§1.6 A)


def test_faq_eth_cross_liquidation_price_is_1153_26() -> None:
    btc_mm = maintenance_margin(BTC_QTY * BTC_MARK, FAQ_BTC)
    assert btc_mm == D("71200.81144400")
    lp = liquidation_price(
        wallet_balance=FAQ_WB,
        brackets=FAQ_ETH,
        qty_both=ETH_QTY,
        entry_both=ETH_ENTRY,
        other_maint_margin=btc_mm,
        other_unrealized_pnl=D("-56354.57"),
    )
    assert cents(lp) == D("1153.26")


def test_faq_btc_cross_liquidation_price_is_26316_89() -> None:
    eth_mm = maintenance_margin(ETH_QTY * ETH_MARK, FAQ_ETH)
    assert eth_mm.quantize(D("0.001")) == D("356512.508")
    lp = liquidation_price(
        wallet_balance=FAQ_WB,
        brackets=FAQ_BTC,
        qty_both=BTC_QTY,
        entry_both=BTC_ENTRY,
        other_maint_margin=eth_mm,
        other_unrealized_pnl=ETH_QTY * (ETH_MARK - ETH_ENTRY),
    )
    assert cents(lp) == D("26316.89")


def test_faq_eth_isolated_liquidation_price_is_1114_78() -> None:
    lp = liquidation_price(wallet_balance=FAQ_WB, brackets=FAQ_ETH, qty_both=ETH_QTY, entry_both=ETH_ENTRY)
    assert cents(lp) == D("1114.78")


def test_faq_btc_isolated_liquidation_price_is_18778_73() -> None:
    lp = liquidation_price(wallet_balance=FAQ_WB, brackets=FAQ_BTC, qty_both=BTC_QTY, entry_both=BTC_ENTRY)
    assert cents(lp) == D("18778.73")


def test_faq_distance_for_eth_is_13_63_percent() -> None:
    dist = liquidation_distance(mark=ETH_MARK, liquidation=D("1153.26"), long=True)
    assert dist.quantize(D("0.0001")) == D("0.1363")


# --------------------------------------------------------------------------- own vectors (2024 tables)
# Expected values are worked by hand from the simplified one-way forms of §1.3
#   long  LP = (Q·EP − W' − cum) / (Q·(1 − mmr)),  short LP = (Q·EP + W' + cum) / (Q·(1 + mmr))
# or the full hedge form, with the tier checked at the result (comment per case).

OWN_VECTORS = [
    # isolated one-way long: 107950 / 1.99; notional 108.5k is tier 2 (0.5 % / 50)
    (
        "isolated long",
        "BTCUSDT",
        dict(wallet_balance=D("12000"), qty_both=D("2"), entry_both=D("60000")),
        D("54246.23"),
        True,
    ),
    # isolated one-way short: 131300 / 50.25; notional 130.6k is tier 2
    (
        "isolated short",
        "ETHUSDT",
        dict(wallet_balance=D("6250"), qty_both=D("-50"), entry_both=D("2500")),
        D("2612.94"),
        False,
    ),
    # cross one-way long with another contract: W' = 20000 − 255 − 1000; 281205 / 99.5
    (
        "cross long",
        "ETHUSDT",
        dict(
            wallet_balance=D("20000"),
            qty_both=D("100"),
            entry_both=D("3000"),
            other_maint_margin=D("255"),
            other_unrealized_pnl=D("-1000"),
        ),
        D("2826.18"),
        True,
    ),
    # cross short opened in tier 4 (10M, 1 %): tier 4 gives 64413.12 → 12.88M, i.e. tier 5,
    # so re-selected: 13131450 / 204 = 64369.85 → 12.87M, tier 5 (2 % / 131450) consistent
    (
        "reselect up one tier",
        "BTCUSDT",
        dict(wallet_balance=D("3000000"), qty_both=D("-200"), entry_both=D("50000")),
        D("64369.85"),
        False,
    ),
    # long opened at 60M (tier 5); tier 5 gives 376 → 376k (tier 2); tier 2: 499950 / 995 = 502.46 → 502k ✓.
    # Skips tiers 4 and 3 entirely.
    (
        "reselect down three tiers",
        "BTCUSDT",
        dict(wallet_balance=D("59500000"), qty_both=D("1000"), entry_both=D("60000")),
        D("502.46"),
        True,
    ),
    # cross hedge: long 3 @ 60000, short 1 @ 62000, W 10000. Naive (long tier 2, short tier 1) gives
    # 54493.69 with the short at 54.5k notional = tier 2, inconsistent; (2, 2): 107900 / 1.98
    (
        "cross hedge net long",
        "BTCUSDT",
        dict(
            wallet_balance=D("10000"), qty_long=D("3"), entry_long=D("60000"), qty_short=D("1"), entry_short=D("62000")
        ),
        D("54494.95"),
        True,
    ),
    # cross hedge net short: long 1 @ 60000, short 3 @ 60000, W 30000: (2, 2): 150100 / 2.02
    (
        "cross hedge net short",
        "BTCUSDT",
        dict(
            wallet_balance=D("30000"), qty_long=D("1"), entry_long=D("60000"), qty_short=D("3"), entry_short=D("60000")
        ),
        D("74306.93"),
        False,
    ),
    # isolated hedge legs, each with its own wallet: 161950 / 2.985 and 68250 / 1.005
    (
        "isolated hedge long leg",
        "BTCUSDT",
        dict(wallet_balance=D("18000"), qty_long=D("3"), entry_long=D("60000")),
        D("54254.61"),
        True,
    ),
    (
        "isolated hedge short leg",
        "BTCUSDT",
        dict(wallet_balance=D("6200"), qty_short=D("1"), entry_short=D("62000")),
        D("67910.45"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "symbol", "kwargs", "expected", "on_fall"), OWN_VECTORS, ids=[v[0] for v in OWN_VECTORS]
)
def test_own_vectors(name: str, symbol: str, kwargs: dict, expected: Decimal, on_fall: bool) -> None:
    point = liquidation_point(brackets=TABLES[symbol], **kwargs)
    assert point is not None
    assert cents(point.price) == expected
    assert point.on_fall is on_fall
    assert cents(liquidation_price(brackets=TABLES[symbol], **kwargs)) == expected
    assert_equity_equals_mm(point.price, TABLES[symbol], kwargs)


def test_long_fully_covered_by_wallet_has_no_liquidation_price() -> None:
    # Binance shows "--": a 1x long cannot be liquidated.
    assert (
        liquidation_price(wallet_balance=D("60000"), brackets=TABLES["BTCUSDT"], qty_both=D("1"), entry_both=D("60000"))
        is None
    )


def test_short_already_bankrupt_at_every_price_has_no_liquidation_price() -> None:
    assert (
        liquidation_price(
            wallet_balance=D("-70000"), brackets=TABLES["BTCUSDT"], qty_both=D("-1"), entry_both=D("60000")
        )
        is None
    )


# --------------------------------------------------------------------------- oracles for the properties


def equity_minus_mm(price: Decimal, brackets: tuple[Bracket, ...], kwargs: dict) -> tuple[Decimal, Decimal]:
    """(margin balance, maintenance margin) at ``price`` for the liquidation_price kwargs."""
    with localcontext() as ctx:
        ctx.prec = 40
        get = kwargs.get
        balance = get("wallet_balance") - get("other_maint_margin", ZERO) + get("other_unrealized_pnl", ZERO)
        mm = ZERO
        legs = [
            (get("qty_both", ZERO), get("entry_both", ZERO)),
            (get("qty_long", ZERO), get("entry_long", ZERO)),
            (-get("qty_short", ZERO), get("entry_short", ZERO)),
        ]
        for signed_qty, entry in legs:
            if signed_qty:
                balance += signed_qty * (price - entry)
                mm += maintenance_margin(abs(signed_qty) * price, brackets)
        return balance, mm


def assert_equity_equals_mm(price: Decimal, brackets: tuple[Bracket, ...], kwargs: dict) -> None:
    balance, mm = equity_minus_mm(price, brackets, kwargs)
    assert abs(balance - mm) <= D("1e-8") * max(mm, D(1)), (balance, mm)


def faq_reselection_one_way(
    wallet: Decimal, qty: Decimal, entry: Decimal, brackets: tuple[Bracket, ...]
) -> Decimal | None:
    """The reference's loop: try each tier, keep the one consistent at the result (§1.3)."""
    side, q_abs = (1 if qty > 0 else -1), abs(qty)
    with localcontext() as ctx:
        ctx.prec = 40
        for i, b in enumerate(brackets):
            lp = (wallet + b.cum - side * q_abs * entry) / (q_abs * b.mmr - side * q_abs)
            cap = None if i == len(brackets) - 1 else b.cap
            if lp > 0 and b.floor <= lp * q_abs and (cap is None or lp * q_abs <= cap):
                return lp
    return None


def all_hedge_roots(wallet: Decimal, kwargs: dict, brackets: tuple[Bracket, ...]) -> list[Decimal]:
    """Every positive root over all tier combinations consistent at the root (brute force)."""
    ql, el, qs, es = kwargs["qty_long"], kwargs["entry_long"], kwargs["qty_short"], kwargs["entry_short"]
    last = len(brackets) - 1
    roots = []
    with localcontext() as ctx:
        ctx.prec = 40
        for i, bl in enumerate(brackets):
            for j, bs in enumerate(brackets):
                den = ql * bl.mmr + qs * bs.mmr - ql + qs
                if den == 0:
                    continue
                lp = (wallet + bl.cum + bs.cum - ql * el + qs * es) / den
                if lp > 0 and in_tier(ql * lp, bl, i == last) and in_tier(qs * lp, bs, j == last):
                    roots.append(lp)
    return sorted(roots)


def in_tier(notional: Decimal, b: Bracket, last: bool) -> bool:
    slack = D("1e-25") * (notional + 1)
    return b.floor - slack <= notional and (last or notional <= b.cap + slack)


# --------------------------------------------------------------------------- strategies


def sized(draw: st.DrawFn) -> tuple[Decimal, Decimal]:
    """(qty, entry) with notional log-spread over 1e1..1e9, i.e. across every tier of every table."""
    entry = D(draw(st.integers(1, 10_000_000))) / 100
    notional = D(draw(st.integers(100, 999))) * D(10) ** draw(st.integers(-1, 6))
    return max((notional / entry).quantize(D("0.001")), D("0.001")), entry


@st.composite
def one_way(draw: st.DrawFn) -> dict:
    """A one-way position (long or short) with any wallet from −30 % to +150 % of its notional."""
    qty, entry = sized(draw)
    if draw(st.booleans()):
        qty = -qty
    wallet = (abs(qty) * entry * draw(st.integers(-300, 1500)) / 1000).quantize(CENT)
    return dict(wallet_balance=wallet, qty_both=qty, entry_both=entry)


@st.composite
def hedge(draw: st.DrawFn) -> dict:
    """Both hedge legs, isolated-style or cross with other contracts' TMM1/UPNL1."""
    (ql, el), (qs, es) = sized(draw), sized(draw)
    kwargs = dict(qty_long=ql, entry_long=el, qty_short=qs, entry_short=es)
    kwargs["wallet_balance"] = ((ql * el + qs * es) * draw(st.integers(-200, 1000)) / 1000).quantize(CENT)
    if draw(st.booleans()):
        kwargs["other_maint_margin"] = D(draw(st.integers(0, 10**8))) / 100
        kwargs["other_unrealized_pnl"] = D(draw(st.integers(-(10**8), 10**8))) / 100
    return kwargs


# --------------------------------------------------------------------------- properties, every fixture symbol

every_symbol = pytest.mark.parametrize("symbol", SYMBOLS)


@every_symbol
@PROPERTY
@given(one_way())
def test_one_way_equity_equals_mm_at_the_liquidation_price(symbol: str, kwargs: dict) -> None:
    lp = liquidation_price(brackets=TABLES[symbol], **kwargs)
    assume(lp is not None)
    assert_equity_equals_mm(lp, TABLES[symbol], kwargs)


@every_symbol
@PROPERTY
@given(one_way())
def test_one_way_matches_the_faq_reselection_loop(symbol: str, kwargs: dict) -> None:
    expected = faq_reselection_one_way(
        kwargs["wallet_balance"], kwargs["qty_both"], kwargs["entry_both"], TABLES[symbol]
    )
    assert cents(liquidation_price(brackets=TABLES[symbol], **kwargs)) == cents(expected)


@every_symbol
@PROPERTY
@given(hedge())
def test_hedge_returns_the_lowest_tier_consistent_root(symbol: str, kwargs: dict) -> None:
    brackets = TABLES[symbol]
    wallet = (
        kwargs["wallet_balance"] - kwargs.get("other_maint_margin", ZERO) + kwargs.get("other_unrealized_pnl", ZERO)
    )
    roots = all_hedge_roots(wallet, kwargs, brackets)
    point = liquidation_point(brackets=brackets, **kwargs)
    if not roots:
        assert point is None
        return
    assert point is not None
    assert abs(point.price - roots[0]) <= D("1e-20") * roots[0]
    assert_equity_equals_mm(point.price, brackets, kwargs)


@every_symbol
@PROPERTY
@given(one_way(), st.integers(1, 10**7))
def test_more_wallet_moves_liquidation_away(symbol: str, kwargs: dict, extra_cents: int) -> None:
    assume(kwargs["wallet_balance"] >= 0)
    richer = dict(kwargs, wallet_balance=kwargs["wallet_balance"] + D(extra_cents) / 100)
    before = liquidation_price(brackets=TABLES[symbol], **kwargs)
    after = liquidation_price(brackets=TABLES[symbol], **richer)
    if kwargs["qty_both"] > 0:  # long: LP falls (None = never, i.e. below 0)
        assert (after or ZERO) <= (before or ZERO)
        assert before is None or after is None or after < before
    else:  # short: LP rises
        assert after is not None and before is not None and after > before


@every_symbol
@PROPERTY
@given(one_way(), st.integers(1, 1000))
def test_bigger_size_moves_liquidation_closer(symbol: str, kwargs: dict, extra_permille: int) -> None:
    assume(kwargs["wallet_balance"] > 0)
    qty = kwargs["qty_both"]
    bigger = dict(kwargs, qty_both=qty + qty * extra_permille / 1000)
    before = liquidation_price(brackets=TABLES[symbol], **kwargs)
    after = liquidation_price(brackets=TABLES[symbol], **bigger)
    if qty > 0:  # long: LP rises towards entry
        assert (after or ZERO) >= (before or ZERO)
    else:  # short: LP falls towards entry
        assert after is not None and before is not None and after < before


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_maintenance_margin_is_continuous_at_every_tier_edge(symbol: str) -> None:
    brackets = TABLES[symbol]
    for lower, upper in zip(brackets, brackets[1:], strict=False):
        edge = upper.floor
        assert edge * lower.mmr - lower.cum == edge * upper.mmr - upper.cum
        assert maintenance_margin(edge, brackets) == edge * upper.mmr - upper.cum
        below = maintenance_margin(edge - D("0.000001"), brackets)
        assert abs(maintenance_margin(edge, brackets) - below) < D("0.000001")


@every_symbol
@PROPERTY
@given(st.integers(0, 10**12))
def test_maintenance_margin_is_the_max_of_the_tier_lines(symbol: str, cents_notional: int) -> None:
    # MM is convex (mmr rises with notional and cum keeps it continuous); the book relies on this.
    brackets = TABLES[symbol]
    notional = D(cents_notional) / 100
    assert maintenance_margin(notional, brackets) == max(notional * b.mmr - b.cum for b in brackets)


# --------------------------------------------------------------------------- hedge with two roots


TWO_ROOT_HEDGE = dict(qty_long=D("10000"), entry_long=D("60000"), qty_short=D("4000"), entry_short=D("60000"))


def test_net_long_hedge_with_two_roots_returns_the_lower_one() -> None:
    # f is concave: the long leg's MM grows into the 25-50 % tiers faster than its profit.
    kwargs = dict(TWO_ROOT_HEDGE, wallet_balance=D("300000000"))
    roots = all_hedge_roots(kwargs["wallet_balance"], kwargs, TABLES["BTCUSDT"])
    assert len(roots) == 2
    point = liquidation_point(brackets=TABLES["BTCUSDT"], **kwargs)
    assert point is not None and point.on_fall is True
    assert abs(point.price - roots[0]) < D("1e-20")


def test_net_long_hedge_safe_below_returns_the_upper_root_on_a_rise() -> None:
    kwargs = dict(TWO_ROOT_HEDGE, wallet_balance=D("400000000"))
    roots = all_hedge_roots(kwargs["wallet_balance"], kwargs, TABLES["BTCUSDT"])
    point = liquidation_point(brackets=TABLES["BTCUSDT"], **kwargs)
    assert len(roots) == 1 and point is not None
    assert point.on_fall is False and abs(point.price - roots[0]) < D("1e-20")


# --------------------------------------------------------------------------- margin ratio and distance


def test_margin_ratio_is_maint_over_balance() -> None:
    assert margin_ratio(maint_margin=D("50"), margin_balance=D("200")) == D("0.25")
    assert margin_ratio(maint_margin=D("200"), margin_balance=D("200")) == 1


def test_margin_ratio_with_no_position_is_zero_even_when_balance_is_negative() -> None:
    assert margin_ratio(maint_margin=ZERO, margin_balance=D("-5")) == 0


@pytest.mark.parametrize("balance", [D("0"), D("-1"), D("-1e9")])
def test_margin_ratio_saturates_when_margin_balance_is_gone(balance: Decimal) -> None:
    assert margin_ratio(maint_margin=D("10"), margin_balance=balance) == RATIO_CAP >= 1


def test_margin_ratio_stays_monotone_near_zero_balance() -> None:
    assert margin_ratio(maint_margin=D("10"), margin_balance=D("1e-12")) == RATIO_CAP
    assert margin_ratio(maint_margin=D("10"), margin_balance=D("1")) == 10


def test_liquidation_distance_long_short_and_none() -> None:
    assert liquidation_distance(mark=D("100"), liquidation=D("80"), long=True) == D("0.2")
    assert liquidation_distance(mark=D("100"), liquidation=D("125"), long=False) == D("0.25")
    assert liquidation_distance(mark=D("70"), liquidation=D("80"), long=True) < 0  # due
    assert liquidation_distance(mark=D("100"), liquidation=None, long=True) is None


# --------------------------------------------------------------------------- bracket parsing


def fixture_rows(symbol: str = "BTCUSDT") -> list[dict]:
    data = json.loads(BRACKET_FIXTURE.read_text())
    return next(row["brackets"] for row in data if row["symbol"] == symbol)


def test_every_fixture_symbol_parses_exactly() -> None:
    assert len(TABLES) == 27
    btc = TABLES["BTCUSDT"]
    assert len(btc) == 12 and btc[2].mmr == D("0.0065") and btc[2].cum == D("950")
    assert btc[-1].cap == D("1800000000") and btc[0].max_leverage == 125


def test_json_floats_are_read_through_str() -> None:
    rows = [dict(bracket=1, initialLeverage=20, notionalFloor=0, notionalCap=1000, maintMarginRatio=0.1, cum=0.0)]
    assert brackets_from_binance(rows)[0].mmr == D("0.1")  # not 0.1000000000000000055...


def broken(index: int, **changes: object) -> list[dict]:
    rows = [dict(r) for r in fixture_rows()]
    rows[index].update(changes)
    return rows


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "non-empty"),
        ("BTCUSDT", "non-empty"),
        (["x"], "bracket row 1: expected a dict"),
        (broken(2, cum=951.0), "bracket 3: cum 951.0 breaks the recurrence"),
        (broken(3, notionalFloor=3000001), r"bracket 4: floor 3000001 != previous cap"),
        (broken(1, bracket=3), "bracket row 2: bracket number 3 out of order"),
        (list(reversed(fixture_rows())), "bracket row 1: bracket number 12 out of order"),
        ([{k: v for k, v in r.items() if k != "bracket"} for r in reversed(fixture_rows())], "floor and cum must be 0"),
        (broken(0, maintMarginRatio=float("nan")), "bracket row 1 .*must be finite"),
        (broken(0, maintMarginRatio=float("inf")), "bracket row 1 .*must be finite"),
        (broken(0, maintMarginRatio="abc"), "not a number"),
        (broken(0, maintMarginRatio="NaN"), "must be finite"),
        (broken(0, maintMarginRatio=True), "must be a number"),
        (broken(0, maintMarginRatio=None), "must be a number"),
        (broken(0, maintMarginRatio=1.5), r"mmr must be in \(0, 1\)"),
        (broken(0, initialLeverage=12.5), "initialLeverage must be an int"),
        (broken(0, initialLeverage=0), "max_leverage must be an int >= 1"),
        (broken(4, notionalCap=12000000), "cap"),
        ([{k: v for k, v in fixture_rows()[0].items() if k != "cum"}], r"missing fields \['cum'\]"),
        (broken(5, maintMarginRatio=0.015, cum=131450.0 - 60000.0), "bracket 6: maintMarginRatio 0.015 < previous"),
    ],
)
def test_brackets_from_binance_rejects_bad_tables(rows: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        brackets_from_binance(rows)


def good_bracket(**changes: object) -> Bracket:
    fields = dict(floor=D(0), cap=D(100), mmr=D("0.01"), cum=D(0), max_leverage=50)
    fields.update(changes)
    return Bracket(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        dict(floor=0),
        dict(cap=100.0),
        dict(mmr=True),
        dict(cum=D("NaN")),
        dict(cap=D("Infinity")),
        dict(floor=D(-1)),
        dict(cap=D(0)),
        dict(mmr=D(0)),
        dict(mmr=D(1)),
        dict(cum=D(-1)),
        dict(max_leverage=True),
        dict(max_leverage=0),
        dict(max_leverage=2.0),
    ],
)
def test_bracket_rejects_bad_fields(changes: dict) -> None:
    with pytest.raises(ValueError):
        good_bracket(**changes)


@pytest.mark.parametrize(
    ("brackets", "message"),
    [
        ((), "non-empty"),
        (None, "non-empty"),
        ([good_bracket(), "x"], "bracket 2: expected Bracket"),
        ([good_bracket(floor=D(1), cap=D(100))], "floor and cum must be 0"),
        ([good_bracket(), good_bracket(floor=D(101), cap=D(200), mmr=D("0.02"), cum=D(1))], "gap or overlap"),
        ([good_bracket(), good_bracket(floor=D(100), cap=D(200), mmr=D("0.02"), cum=D(2))], "recurrence"),
    ],
)
def test_check_brackets_rejects_bad_sequences(brackets: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_brackets(brackets)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad input


BTC = TABLES["BTCUSDT"]
GOOD_LP = dict(wallet_balance=D("1000"), brackets=BTC, qty_both=D("1"), entry_both=D("60000"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(wallet_balance=1000), "wallet_balance must be a Decimal, got int"),
        (dict(wallet_balance=1000.0), "wallet_balance must be a Decimal, got float"),
        (dict(wallet_balance=True), "wallet_balance must be a Decimal, got bool"),
        (dict(wallet_balance=D("NaN")), "wallet_balance must be finite"),
        (dict(wallet_balance=D("Infinity")), "wallet_balance must be finite"),
        (dict(qty_both=1.0), "qty_both must be a Decimal"),
        (dict(entry_both=D("-Infinity")), "entry_both must be finite"),
        (dict(entry_both=ZERO), "entry_both must be > 0"),
        (dict(qty_both=ZERO), "no position"),
        (dict(qty_both=ZERO, qty_long=D("-1"), entry_long=D("1")), "qty_long must be >= 0"),
        (dict(qty_both=ZERO, qty_short=D("-1"), entry_short=D("1")), "qty_short must be >= 0"),
        (dict(qty_long=D("1"), entry_long=D("1")), "not both"),
        (dict(qty_both=ZERO, qty_long=D("1")), "entry_long must be > 0"),
        (dict(qty_both=ZERO, qty_short=D("1"), entry_short=D("-5")), "entry_short must be > 0"),
        (dict(qty_both=ZERO, qty_short=D("1"), entry_short=1), "entry_short must be a Decimal"),
        (dict(other_maint_margin=D("-1")), "other_maint_margin must be >= 0"),
        (dict(other_maint_margin=5), "other_maint_margin must be a Decimal"),
        (dict(other_unrealized_pnl=D("sNaN")), "other_unrealized_pnl must be finite"),
        (dict(other_unrealized_pnl=-5.0), "other_unrealized_pnl must be a Decimal"),
        (dict(brackets=[]), "non-empty"),
        (dict(brackets=[good_bracket(floor=D(5))]), "floor and cum must be 0"),
    ],
)
def test_liquidation_price_rejects_bad_input(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        liquidation_price(**{**GOOD_LP, **changes})
    with pytest.raises(ValueError, match=message):
        liquidation_point(**{**GOOD_LP, **changes})


@pytest.mark.parametrize(
    ("notional", "brackets", "message"),
    [
        (D("-1"), BTC, "notional must be >= 0"),
        (100.0, BTC, "notional must be a Decimal"),
        (100, BTC, "notional must be a Decimal"),
        (D("NaN"), BTC, "notional must be finite"),
        (D("100"), [], "non-empty"),
        (D("100"), "BTC", "non-empty"),
    ],
)
def test_maintenance_margin_rejects_bad_input(notional: object, brackets: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        maintenance_margin(notional, brackets)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(maint_margin=D("-1"), margin_balance=D(1)), "maint_margin must be >= 0"),
        (dict(maint_margin=1, margin_balance=D(1)), "maint_margin must be a Decimal"),
        (dict(maint_margin=D(1), margin_balance=1.0), "margin_balance must be a Decimal"),
        (dict(maint_margin=D(1), margin_balance=D("Infinity")), "margin_balance must be finite"),
    ],
)
def test_margin_ratio_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        margin_ratio(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mark=D(0), liquidation=D(1), long=True), "mark must be > 0"),
        (dict(mark=100.0, liquidation=D(1), long=True), "mark must be a Decimal"),
        (dict(mark=D(100), liquidation=D(0), long=True), "liquidation must be > 0"),
        (dict(mark=D(100), liquidation=80.0, long=True), "liquidation must be a Decimal"),
        (dict(mark=D(100), liquidation=D(80), long=1), "long must be a bool"),
        (dict(mark=D("NaN"), liquidation=D(80), long=True), "mark must be finite"),
    ],
)
def test_liquidation_distance_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        liquidation_distance(**kwargs)


def test_liquidation_point_is_a_plain_value() -> None:
    point = liquidation_point(**GOOD_LP)
    assert point == LiquidationPoint(price=point.price, on_fall=True)
