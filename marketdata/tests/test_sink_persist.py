"""DjangoSink persistence in bulk (marketdata.sink.persist_accounts): Position rows mirror the
book (updated, created, closed ones deleted, unknown symbols skipped) and snapshots keep their
rate, on whichever database the tests run (the MySQL upsert is its own code path)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from accounts.models import ExchangeAccount
from marketdata.models import Symbol
from marketdata.sink import DjangoSink, persist_accounts
from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from positions.models import AccountSnapshot, Position

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}


@pytest.fixture
def desk(db):
    for name in ("BTCUSDT", "ETHUSDT"):
        Symbol.objects.create(
            name=name,
            base_asset=name[:3],
            tick_size=D("0.1"),
            step_size=D("0.001"),
            min_qty=D("0.001"),
            max_qty=D(1000),
            min_notional=D(5),
            price_precision=1,
            quantity_precision=3,
        )
    accounts = [ExchangeAccount.objects.create(name=f"a{i}") for i in range(2)]
    book = RiskBook()
    for name in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        book.set_brackets(name, TABLES[name])
    book.apply_marks({"BTCUSDT": D("43000"), "ETHUSDT": D("3000"), "SOLUSDT": D("150")}, ts=1)
    for account in accounts:
        book.set_wallet(account.id, D(10000))
        book.upsert_positions(
            [
                (
                    account.id,
                    BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.5"), entry_price=D(42000), leverage=5),
                ),
                (account.id, BookPosition(symbol="ETHUSDT", side="LONG", qty=D(2), entry_price=D(2900), leverage=5)),
                (account.id, BookPosition(symbol="SOLUSDT", side="BOTH", qty=D(-10), entry_price=D(160), leverage=3)),
            ]
        )
    return book, [a.id for a in accounts]


def rows() -> set[tuple]:
    return set(Position.objects.values_list("account_id", "symbol__name", "side", "quantity", "mark_price"))


def batch(book: RiskBook, ids: list[int]) -> dict:
    return {a: (book.account(a), book.positions(a)) for a in ids}


def test_rows_mirror_the_book_and_snapshots_keep_their_rate(desk):
    book, ids = desk
    persist_accounts(batch(book, ids))
    assert rows() == {
        (a, s, side, qty, D(mark)) for a in ids for s, side, qty, mark in
        [("BTCUSDT", "BOTH", D("0.5"), 43000), ("ETHUSDT", "LONG", D(2), 3000)]
    }  # fmt: skip
    assert Position.objects.get(account_id=ids[0], symbol__name="BTCUSDT").unrealized_pnl == D(500)
    assert AccountSnapshot.objects.count() == 2

    book.apply_mark("BTCUSDT", D("44000"), ts=2)
    book.upsert_position(
        ids[0], BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.25"), entry_price=D(42000), leverage=5)
    )
    book.remove_position(ids[1], "ETHUSDT", "LONG")
    persist_accounts(batch(book, ids))
    assert rows() == {
        (ids[0], "BTCUSDT", "BOTH", D("0.25"), D(44000)),
        (ids[0], "ETHUSDT", "LONG", D(2), D(3000)),
        (ids[1], "BTCUSDT", "BOTH", D("0.5"), D(44000)),
    }
    assert AccountSnapshot.objects.count() == 2  # within SNAPSHOT_EVERY_S of the first ones


@pytest.mark.django_db(transaction=True)
def test_the_sink_writes_on_its_own_thread_and_loses_nothing(desk):
    book, ids = desk
    sink = DjangoSink()
    for account_id in ids:
        sink._persist_later(account_id, book.account(account_id), book.positions(account_id))
    assert sink.drain()
    assert Position.objects.count() == 4 and AccountSnapshot.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_position_rows_are_rewritten_when_inputs_change_and_for_figures_only_every_minute(desk, monkeypatch):
    monkeypatch.setattr("marketdata.sink.rows_phase_s", lambda account_id: 0.0)  # see the next test
    book, ids = desk
    account = ids[0]
    clock = [1000.0]
    sink = DjangoSink(clock=lambda: clock[0])

    def flush(at: float) -> None:
        clock[0] = at
        asyncio.run(sink.account_changed(account, book, []))
        assert sink.drain()

    def btc() -> tuple:
        return Position.objects.filter(account_id=account, symbol__name="BTCUSDT").values_list(
            "quantity", "mark_price"
        )[0]

    flush(1000.0)
    assert btc() == (D("0.5"), D(43000))
    book.apply_mark("BTCUSDT", D("44000"), ts=2)
    flush(1006.0)  # a snapshot is due, the rows are not: same inputs, figures written a minute apart
    assert btc() == (D("0.5"), D(43000))
    book.upsert_position(
        account, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.7"), entry_price=D(42000), leverage=5)
    )
    flush(1012.0)  # a resized position: written at the next persistence, figures included
    assert btc() == (D("0.7"), D(44000))
    book.apply_mark("BTCUSDT", D("45000"), ts=3)
    flush(1018.0)
    assert btc() == (D("0.7"), D(44000))
    flush(1073.0)  # a minute after the last rows
    assert btc() == (D("0.7"), D(45000))


def test_a_snapshot_without_rows_does_not_drop_rows_waiting_to_be_written():
    from marketdata.sink import _keep_rows

    assert _keep_rows(("old risk", ["rows"]), ("new risk", None)) == ("new risk", ["rows"])
    assert _keep_rows(("old risk", ["rows"]), ("new risk", ["newer rows"])) == ("new risk", ["newer rows"])


def test_the_accounts_of_a_desk_started_together_come_due_spread_over_the_period():
    from marketdata.sink import POSITION_FIGURES_EVERY_S, rows_phase_s

    phases = sorted(rows_phase_s(a) for a in range(1, 201))
    assert phases[0] >= 0 and phases[-1] < POSITION_FIGURES_EVERY_S
    per_tenth = [sum(1 for p in phases if k * 6 <= p < (k + 1) * 6) for k in range(10)]
    assert min(per_tenth) >= 15  # 200 accounts: ~20 in every 6 s of the minute, none bunched


@pytest.mark.django_db(transaction=True)
def test_marks_reach_symbol_rows_and_one_history_row_per_minute(desk):
    from marketdata.models import TickerHistory

    sink = DjangoSink()
    minute = 1_700_000_040_000  # 22:14:00 UTC
    asyncio.run(sink.marks_changed({"BTCUSDT": (D("43000.1"), minute + 1000), "ETHUSDT": (D("3000.2"), minute)}))
    assert sink.drain()
    btc = Symbol.objects.get(name="BTCUSDT")
    assert btc.mark_price == D("43000.1") and int(btc.mark_price_at.timestamp() * 1000) == minute + 1000
    assert TickerHistory.objects.count() == 2
    sink._marks_written_at = -1e9  # the next flush is due to write (MARKS_WRITE_EVERY_S)
    asyncio.run(sink.marks_changed({"BTCUSDT": (D("43001"), minute + 2000)}))  # the same minute
    assert sink.drain()
    assert Symbol.objects.get(name="BTCUSDT").mark_price == D("43001") and TickerHistory.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_position_change_inside_the_snapshot_window_is_written_at_once(desk, monkeypatch):
    monkeypatch.setattr("marketdata.sink.rows_phase_s", lambda account_id: 0.0)
    book, ids = desk
    account = ids[0]
    clock = [1000.0]
    sink = DjangoSink(clock=lambda: clock[0])

    def flush(at: float) -> None:
        clock[0] = at
        asyncio.run(sink.account_changed(account, book, []))
        assert sink.drain()

    def held() -> dict:
        return dict(
            Position.objects.filter(account_id=account).values_list("symbol__name", "quantity").order_by("symbol")
        )

    flush(1000.0)
    assert held() == {"BTCUSDT": D("0.5"), "ETHUSDT": D(2)}
    book.upsert_position(
        account, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.8"), entry_price=D(42000), leverage=5)
    )
    flush(1000.5)  # half a second later, well inside PERSIST_EVERY_S
    assert held() == {"BTCUSDT": D("0.8"), "ETHUSDT": D(2)}
    book.upsert_position(
        account, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.8"), entry_price=D(42000), leverage=25)
    )
    flush(1001.0)  # re-levered on the exchange: the row carries the new leverage
    assert Position.objects.get(account_id=account, symbol__name="BTCUSDT").leverage == 25
    snapshots = AccountSnapshot.objects.count()
    book.apply_mark("BTCUSDT", D("43500"), ts=5)
    flush(1001.5)  # figures only, inside the window: nothing is due
    assert AccountSnapshot.objects.count() == snapshots


@pytest.mark.django_db(transaction=True)
def test_an_account_left_flat_loses_its_rows_within_the_flush(desk, monkeypatch):
    monkeypatch.setattr("marketdata.sink.rows_phase_s", lambda account_id: 0.0)
    book, ids = desk
    account = ids[0]
    clock = [1000.0]
    sink = DjangoSink(clock=lambda: clock[0])
    for account_id in ids:
        asyncio.run(sink.account_changed(account_id, book, []))
    assert sink.drain() and Position.objects.filter(account_id=account).count() == 2
    for symbol, side in (("BTCUSDT", "BOTH"), ("ETHUSDT", "LONG"), ("SOLUSDT", "BOTH")):
        book.remove_position(account, symbol, side)
    clock[0] = 1001.0  # the exchange closed everything a second after the last write
    asyncio.run(sink.account_changed(account, book, []))
    assert sink.drain()
    assert not Position.objects.filter(account_id=account).exists()
    assert Position.objects.filter(account_id=ids[1]).count() == 2  # the other account's rows stay


def test_rows_queued_behind_a_write_are_merged_not_dropped():
    """Two changes inside one gather window: the newer rows win, a snapshot after them keeps them."""
    from marketdata.sink import Batches, _keep_rows

    handled: list[dict] = []
    batches = Batches("test", handled.append, gather_s=0.2)
    batches.put(1, ("risk 1", ["rows 1"]), merge=_keep_rows)
    batches.put(1, ("risk 2", ["rows 2"]), merge=_keep_rows)
    batches.put(1, ("risk 3", None), merge=_keep_rows)
    assert batches.drain()
    assert handled == [{1: ("risk 3", ["rows 2"])}]
