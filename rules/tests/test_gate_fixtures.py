"""Shared set-up for the order gate's tests (no tests here).

The live state is written the way marketdata/sink.py writes it: a RiskBook holds the
account, ``sink.account_state`` turns it into the published dict, and ``marketdata.live``
stores it with the marks and the feed status. The exchange is the simulator on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.core.cache import cache

from marketdata import live
from marketdata.exchange import SymbolFilters
from marketdata.services import brackets_store, symbols_refresh
from marketdata.simulator import SimulatorThread, build_config
from marketdata.sink import account_state
from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from rules import gate
from rules.models import RiskProfile

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}
# Binance's published filters for the two symbols (the simulator uses the same).
FILTERS = {
    "BTCUSDT": ("0.10", "0.001", "0.001", "1000", "120", "100"),
    "ETHUSDT": ("0.01", "0.001", "0.001", "10000", "2000", "20"),
}
KEY_A, SECRET_A = "AKEY-aaaa-PLAINTEXT-1234", "ASECRET-aaaa-PLAINTEXT-5678"  # conftest's account_a
KEY_B, SECRET_B = "BKEY-bbbb-PLAINTEXT-4321", "BSECRET-bbbb-PLAINTEXT-8765"
MARKS = {"BTCUSDT": "50000", "ETHUSDT": "2500"}


def seed_symbols() -> None:
    symbols_refresh(
        filters=[
            SymbolFilters(
                symbol=name,
                status="TRADING",
                base_asset=name[:-4],
                quote_asset="USDT",
                margin_asset="USDT",
                tick_size=D(tick),
                step_size=D(step),
                min_qty=D(lo),
                max_qty=D(hi),
                market_max_qty=D(market),
                min_notional=D(notional),
                price_precision=2,
                quantity_precision=3,
            )
            for name, (tick, step, lo, hi, market, notional) in FILTERS.items()
        ]
    )
    brackets_store(tables={name: TABLES[name] for name in FILTERS})


def default_profile(**values) -> RiskProfile:
    profile, _ = RiskProfile.objects.update_or_create(name="gate-test", defaults={"is_default": True, **values})
    gate.catalog_reload()
    return profile


def publish(
    account_id: int,
    *,
    wallet: str = "10000",
    positions: Iterable[BookPosition] = (),
    marks: dict[str, str] | None = None,
    open_orders: Iterable[dict] = (),
    at_ms: int | None = None,
    user_connected: bool = True,
    feed_age_s: float = 0.0,
) -> dict:
    """Publish one account's live state, the marks and the feeds, as the stream process would."""
    at = at_ms if at_ms is not None else live.now_ms()
    marks = marks or MARKS
    book = RiskBook()
    for name in FILTERS:
        book.set_brackets(name, TABLES[name])
    book.apply_marks({s: D(p) for s, p in marks.items()}, ts=at)
    book.set_wallet(account_id, D(wallet))
    for p in positions:
        book.upsert_position(account_id, p)
    state = account_state(book.account(account_id), book.positions(account_id), list(open_orders))
    state["published_ms"] = at
    live.accounts_set({account_id: state})
    live.marks_merge({s: [p, at] for s, p in marks.items()})
    last = at - int(feed_age_s * 1000)
    live.feed_set("market", {"name": "market", "connected": True, "stale": False, "last_message_ms": last})
    live.feed_set(
        f"user:{account_id}",
        {"name": f"user:{account_id}", "connected": user_connected, "stale": not user_connected, "last_message_ms": at},
    )
    return state


def long_btc(qty: str = "0.5", entry: str = "49000", leverage: int = 20) -> BookPosition:
    return BookPosition(symbol="BTCUSDT", side="BOTH", qty=D(qty), entry_price=D(entry), leverage=leverage)


def order_body(account_id: int, **overrides) -> dict:
    body = {
        "account": account_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.010",
        "price": "49900.0",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
def gate_env(db, settings, account_a, account_b):
    """A clean gate: no background threads, empty live state and counters, symbols and a profile."""
    from rules import api_orders

    monkey = pytest.MonkeyPatch()
    monkey.setattr(gate, "BACKGROUND", False)
    monkey.setattr(api_orders, "ACCESS_CACHE_S", 0.0)  # tests change rows between requests
    api_orders.access_cache_clear()
    cache.clear()  # live state and, with Redis, the gate's own windows and counters (same database)
    gate.store_reset()
    gate.ORDER_LOG.rows.clear()
    seed_symbols()
    default_profile()
    yield
    gate.ORDER_LOG.rows.clear()
    monkey.undo()


def sim_config(*, positions_a: list[dict] | None = None, hedge_a: bool = False, wallet_a: str = "10000"):
    accounts = [
        {
            "api_key": KEY_A,
            "api_secret": SECRET_A,
            "wallet": {"USDT": wallet_a},
            "position_mode": "hedge" if hedge_a else "one-way",
            "positions": positions_a or [],
        },
        {"api_key": KEY_B, "api_secret": SECRET_B, "wallet": {"USDT": "10000"}, "positions": []},
    ]
    return build_config(accounts={"accounts": accounts}, marks=MARKS, tick_interval_s=0.2)


@pytest.fixture
def exchange(settings):
    """The simulator, with the desk's base URLs pointing at it; account_a has a 0.5 BTC long."""
    positions = [{"symbol": "BTCUSDT", "side": "BOTH", "qty": "0.5", "entry_price": "49000", "leverage": 20}]
    thread = SimulatorThread(sim_config(positions_a=positions))
    base = thread.start()
    settings.BINANCE_FUTURES_REST_URL = base
    settings.BINANCE_FUTURES_WS_URL = thread.ws_url
    yield thread
    thread.stop()


def sim_account(thread: SimulatorThread, api_key: str = KEY_A) -> dict:
    state = thread.call(lambda s: s.state())
    return next(a for a in state["accounts"] if a["api_key"] == api_key)
