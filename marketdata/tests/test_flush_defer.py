"""The engine's flush waits between accounts while an alert is on its way out, but only for
FLUSH_DEFER_MAX_S in all: a writer stuck retrying (database away) must not hold every account's
live state back by that much each."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

from marketdata.streams import FLUSH_DEFER_MAX_S, AccountSpec, StreamEngine
from marketdata.tests.test_streams import RecordingSink
from positions.book import BookPosition

ACCOUNTS = 20


def test_a_flush_defers_to_a_busy_writer_for_one_budget_not_one_per_account():
    sink = RecordingSink()
    engine = StreamEngine(
        accounts=[AccountSpec(i, f"a{i}", "k", "s") for i in range(1, ACCOUNTS + 1)],
        rest_url="http://127.0.0.1:9",  # never started: only the flush runs
        ws_url="ws://127.0.0.1:9",
        sink=sink,
    )
    for i in range(1, ACCOUNTS + 1):
        engine.book.upsert_position(
            i, BookPosition(symbol="BTCUSDT", side="BOTH", qty=D("0.1"), entry_price=D(60000), leverage=5)
        )
    engine._pending.accounts = set(range(1, ACCOUNTS + 1))
    engine.flush_defers_to.append(lambda: True)  # an alert writer that never finishes

    started = time.monotonic()
    asyncio.run(engine._flush())
    took = time.monotonic() - started

    assert set(sink.accounts) == set(range(1, ACCOUNTS + 1))  # every account still published
    assert took < ACCOUNTS * FLUSH_DEFER_MAX_S / 4  # one budget (0.2 s), not 20 of them (4 s)
