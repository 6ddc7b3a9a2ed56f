"""DjangoSink persistence in bulk (marketdata.sink.persist_accounts): Position rows mirror the
book (updated, created, closed ones deleted, unknown symbols skipped) and snapshots keep their
rate, on whichever database the tests run (the MySQL upsert is its own code path)."""

from __future__ import annotations

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
