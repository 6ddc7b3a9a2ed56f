"""Every check and submission becomes an OrderLog row, written off the check path by a
background thread in batches; nothing is lost (rows survive a failed write)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db.backends.utils import CursorWrapper

from positions.models import OrderDecision, OrderLog
from rules import gate
from rules.tests import test_gate_fixtures as fx
from rules.tests.test_gate_fixtures import long_btc, order_body, publish

gate_env = fx.gate_env  # pytest finds fixtures by name in the module


@pytest.mark.django_db(transaction=True)
def test_the_background_writer_stores_every_row(api_for, trader_a, account_a, gate_env, monkeypatch):
    publish(account_a.id, positions=[long_btc()])
    monkeypatch.setattr(gate, "BACKGROUND", True)  # the real path: the writer thread, committed rows
    api = api_for(trader_a)
    for i in range(40):
        api.post("/api/v1/orders/check", order_body(account_a.id, quantity=f"0.0{10 + i}"), format="json")
    deadline = time.monotonic() + 10
    while OrderLog.objects.filter(account=account_a).count() < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert OrderLog.objects.filter(account=account_a).count() == 40
    writer = gate.ORDER_LOG.thread
    assert writer is not None and writer.is_alive()
    assert not gate.ORDER_LOG.rows
    monkeypatch.setattr(gate, "BACKGROUND", False)
    writer.join(timeout=5)  # it stops on its next wake-up, before the database is flushed
    catalog_thread = gate.CATALOG.thread
    if catalog_thread is not None:
        catalog_thread.join(timeout=5)


def test_a_failed_write_keeps_its_rows_for_the_next_attempt(api_for, trader_a, account_a, gate_env, monkeypatch):
    publish(account_a.id, positions=[long_btc()])
    api = api_for(trader_a)
    for _ in range(3):
        api.post("/api/v1/orders/check", order_body(account_a.id), format="json")

    def broken(*args, **kwargs):
        raise RuntimeError("database away")

    with monkeypatch.context() as m:
        m.setattr(CursorWrapper, "execute", broken)  # the database, not the writer, fails
        with pytest.raises(RuntimeError):
            gate.order_log_flush()
    assert len(gate.ORDER_LOG.rows) == 3
    assert gate.order_log_flush() == 3
    assert (
        list(OrderLog.objects.filter(account=account_a).values_list("decision", flat=True))
        == [OrderDecision.ALLOWED] * 3
    )


def test_past_the_bound_the_request_writes_the_rows_itself(api_for, trader_a, account_a, gate_env, monkeypatch):
    publish(account_a.id, positions=[long_btc()])
    monkeypatch.setattr(gate, "ORDER_LOG_BOUND", 4)
    api = api_for(trader_a)
    for _ in range(5):
        api.post("/api/v1/orders/check", order_body(account_a.id), format="json")
    assert OrderLog.objects.filter(account=account_a).count() == 5 and not gate.ORDER_LOG.rows


def test_a_flush_writes_each_row_as_the_model_defines_it(api_for, trader_a, account_a, gate_env):
    # 60 rows: more than one INSERT's worth of parameters on SQLite (its statements then share a
    # transaction), one statement on MariaDB.
    publish(account_a.id, positions=[long_btc()])
    api = api_for(trader_a)
    for i in range(60):
        api.post("/api/v1/orders/check", order_body(account_a.id, quantity=f"0.{100 + i}"), format="json")
    assert gate.order_log_flush() == 60
    rows = list(OrderLog.objects.filter(account=account_a).order_by("id"))
    assert [r.quantity for r in rows] == [Decimal(f"0.{100 + i}") for i in range(60)]
    row = rows[0]
    answer = api.post("/api/v1/orders/check", order_body(account_a.id, quantity="0.100"), format="json").json()
    assert row.user_id == trader_a.id and row.symbol == "BTCUSDT" and row.created_at is not None
    assert row.decision == OrderDecision.ALLOWED and row.reason_codes == [] and row.exchange_order_id == ""
    assert row.details["action"] == "check" and row.details["projected"] == answer["projected"]
    assert row.details["counters"]["daily_orders"] >= 1 and row.details["counters"]["duplicate"] is False
