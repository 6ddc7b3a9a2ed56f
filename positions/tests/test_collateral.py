"""Every asset (issue 17 item 3): multi-assets collateral with Binance's haircuts, against figures
computed by hand; every wallet asset in the book, counted in the totals only where it is margin."""

from __future__ import annotations

from decimal import Decimal as D

from positions.book import BookPosition, RiskBook
from positions.collateral import collateral, parse_asset_index
from positions.tests.conftest import load_bracket_tables

# Binance's documentation example of GET /fapi/v1/assetIndex, and three rows of the same shape.
INDEX_ROWS = [
    {
        "symbol": "ADAUSD",
        "time": 1635740268004,
        "index": "1.92957370",
        "bidBuffer": "0.10000000",
        "askBuffer": "0.10000000",
        "bidRate": "1.73661633",
        "askRate": "2.12253107",
        "autoExchangeBidBuffer": "0.05000000",
        "autoExchangeAskBuffer": "0.05000000",
        "autoExchangeBidRate": "1.83309501",
        "autoExchangeAskRate": "2.02605238",
    },
    {"symbol": "BTCUSD", "time": 1, "index": "60000", "bidBuffer": "0.05", "askBuffer": "0.05",
     "bidRate": "57000", "askRate": "63000"},
    {"symbol": "BNBUSD", "time": 1, "index": "600", "bidBuffer": "0.1", "askBuffer": "0.1"},  # rates computed
    {"symbol": "USDCUSD", "time": 1, "index": "0.9998", "bidBuffer": "0", "askBuffer": "0.01"},
]  # fmt: skip
BALANCES = {"USDT": D("1000"), "BTC": D("0.5"), "BNB": D("10"), "USDC": D("-50")}


def test_the_index_reads_binance_rows_by_asset_and_computes_missing_rates():
    index = parse_asset_index(INDEX_ROWS)
    assert set(index) == {"ADA", "BTC", "BNB", "USDC"}
    assert index["ADA"].bid_rate == D("1.73661633") and index["ADA"].ask_rate == D("2.12253107")
    # 1.92957370 x 0.9 = 1.736616330 and x 1.1 = 2.122531070: Binance's rates are index x (1 -/+ buffer)
    assert (index["ADA"].index * D("0.9")).quantize(D("1e-8")) == index["ADA"].bid_rate
    assert index["BNB"].bid_rate == D("540.0") and index["BNB"].ask_rate == D("660.0")
    assert parse_asset_index(INDEX_ROWS[1])["BTC"].index == D("60000")  # one object (a symbol was asked)


def test_multi_assets_collateral_by_hand():
    value = collateral(BALANCES, parse_asset_index(INDEX_ROWS), multi_assets=True)
    by_asset = {a.asset: a for a in value.assets}
    # USDT at 1: 1000. BTC 0.5 x 57000 (60000 less 5 %) = 28500. BNB 10 x 540 (600 less 10 %) = 5400.
    # USDC -50 is a debt: at the ask rate 0.9998 x 1.01 = 1.009798, -50 x 1.009798 = -50.4899.
    assert by_asset["USDT"].value == D("1000")
    assert by_asset["BTC"].value == D("28500.0") and by_asset["BTC"].haircut == D("0.05")
    assert by_asset["BNB"].value == D("5400.0")
    assert by_asset["USDC"].rate == D("1.009798") and by_asset["USDC"].value == D("-50.4899")
    assert value.total == D("34849.5101") and value.missing == ()


def test_single_asset_mode_counts_the_stablecoins_at_par_and_nothing_else():
    value = collateral(BALANCES, parse_asset_index(INDEX_ROWS), multi_assets=False)
    assert value.total == D("950")  # 1000 USDT - 50 USDC; BTC and BNB are no margin in single-asset mode
    assert {a.asset: a.value for a in value.assets}["BTC"] == D("0")


def test_an_asset_without_an_index_row_cannot_be_valued():
    value = collateral({"USDT": D("10"), "DOGE": D("100")}, parse_asset_index(INDEX_ROWS), multi_assets=True)
    assert value.total is None and value.missing == ("DOGE",)


def _book() -> RiskBook:
    book = RiskBook(capacity=8)
    tables = load_bracket_tables()
    book.set_brackets("BTCUSDT", tables["BTCUSDT"])
    book.apply_marks({"BTCUSDT": D("60000")}, ts=1)
    return book


def test_every_wallet_asset_has_a_pool_and_only_margin_counts_in_the_totals():
    book = _book()
    book.set_wallet(1, D("1000"))
    book.set_wallet(1, D("0.5"), asset="BTC")
    book.set_wallet(1, D("200"), asset="USDC")
    book.upsert_position(1, BookPosition("BTCUSDT", "BOTH", D("0.01"), D("59000"), 10, "cross", D(0)))
    risk = book.account(1)
    assert set(risk.per_asset) == {"USDT", "BTC", "USDC"}
    assert risk.per_asset["BTC"].wallet_balance == D("0.5")  # in BTC: what an asset cap compares
    assert risk.wallet_balance == D("1200.00000000")  # USDT + USDC at par; the BTC wallet is no margin
    assert risk.margin_balance == D("1210.00000000")  # + 0.01 x (60000 - 59000)
    assert book.account_plain(1)["wallet_balance"] == "1200.00000000"
    assert book.screen_arrays()["margin_balance"][1] == 1210.0  # the quiet screen sums the same way


def test_a_multi_assets_account_carries_its_collateral_in_usd_in_the_usdt_pool():
    class Engine:
        def __init__(self):
            self.book, self.multi_assets = _book(), {1: True}

    from marketdata.collateral import Wallets

    engine = Engine()
    wallets = Wallets(engine)
    wallets.index = parse_asset_index(INDEX_ROWS)
    assert 1 in wallets.apply(1, BALANCES, replace=True)
    risk = engine.book.account(1)
    assert risk.wallet_balance == D("34849.51010000")  # the hand-computed total above
    assert risk.per_asset["BTC"].wallet_balance == D("0.5") and risk.per_asset["USDC"].wallet_balance == D("-50")
    shown = wallets.account_assets(1)
    assert D(shown["total"]) == D("34849.5101") and shown["multi_assets"] is True
    assert D({a["asset"]: a["value"] for a in shown["assets"]}["BTC"]) == D("28500")
    # Back to single-asset mode: USDT and USDC at par, the others out.
    engine.multi_assets[1] = False
    wallets.apply(1, {}, replace=False)
    assert engine.book.account(1).wallet_balance == D("950.00000000")


def test_a_cap_on_a_non_margin_asset_breaches_live_through_the_evaluator():
    """Per-asset caps apply live to every asset: a BTC wallet above its cap raises ASSET_ABOVE_CAP
    (the quiet screen lets the account through; the exact evaluation measures the BTC pool)."""
    from types import SimpleNamespace

    from rules.evaluator import Evaluator, Job
    from rules.levels import CRITICAL, Limits

    book = _book()
    book.set_wallet(1, D("1000"))
    book.set_wallet(1, D("0.5"), asset="BTC")
    book.upsert_position(1, BookPosition("BTCUSDT", "BOTH", D("0.01"), D("59000"), 10, "cross", D(0)))
    evaluator = Evaluator(SimpleNamespace(accounts={1: None}, book=book, closed_positions={}))
    evaluator.limits = {1: Limits(by_rule={}, asset_caps={"BTC": D("0.4"), "USDT": D("5000")}, breach_after_n=1)}
    evaluator.on_change({1})
    jobs = []
    while not evaluator.queue.empty():
        jobs.append(evaluator.queue.get())
    raised = [(j.change.rule, j.change.subject, j.change.level) for j in jobs if isinstance(j, Job)]
    assert raised == [("asset_cap", "BTC", CRITICAL)]
    book.set_wallet(1, D("0.3"), asset="BTC")  # back under the cap
    evaluator.on_change({1})
    assert evaluator.latches[1].holding({"asset_cap"}) in (set(), [], frozenset())
