"""Issue 14 item 3: `breach_after_n` counts evaluations, and a market frozen at a breach makes none:
a critical utilization sat unalerted for 60 s or more. Confirmation also completes with time, and
the evaluator's timer re-visits accounts whose confirmation is pending."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace

from rules import evaluator as evaluator_module
from rules.evaluator import Evaluator, Job
from rules.levels import CRITICAL, NORMAL, WARNING, Latch, Limits, Measurement, Thresholds
from rules.tests import test_evaluator_alerts
from rules.tests.test_levels import book_with_long

T = Thresholds(D("100"), D("200"))
# The evaluator tests' fixtures (a desk account on the test database, a clock), shared by name.
clock, desk = test_evaluator_alerts.clock, test_evaluator_alerts.desk


def _m(value: str) -> Measurement:
    return Measurement("position_notional", "BTCUSDT:BOTH", D(value))


def test_a_breach_held_for_n_minus_one_seconds_latches_without_another_frame():
    latch = Latch()
    assert latch.update(_m("250"), T, n=3, band=D("0"), now_ms=0) is None  # the one frame there is
    assert latch.dwelling()  # pending: the caller's timer must come back
    assert latch.update(_m("250"), T, n=3, band=D("0"), now_ms=1_000, count=False) is None
    change = latch.update(_m("250"), T, n=3, band=D("0"), now_ms=2_000, count=False)
    assert change is not None and (change.previous, change.level) == (NORMAL, CRITICAL)
    assert not latch.dwelling()


def test_re_visits_on_the_clock_do_not_count_as_evaluations():
    """A one-frame spike followed by a re-visit must not pass for two frames."""
    latch = Latch()
    assert latch.update(_m("150"), T, n=2, band=D("0"), now_ms=0) is None
    assert latch.update(_m("150"), T, n=2, band=D("0"), now_ms=100, count=False) is None
    assert latch.update(_m("50"), T, n=2, band=D("0"), now_ms=900) is None  # the spike is over
    assert latch.update(_m("50"), T, n=2, band=D("0"), now_ms=5_000, count=False) is None
    assert not latch.dwelling()


def test_frames_still_confirm_by_count_before_the_timer():
    latch = Latch()
    assert latch.update(_m("150"), T, n=2, band=D("0"), now_ms=0) is None
    change = latch.update(_m("150"), T, n=2, band=D("0"), now_ms=200)  # a fast market: 2 frames
    assert change is not None and change.level == WARNING


def test_the_evaluator_re_visits_a_frozen_breach_and_raises_it_on_the_timer(monkeypatch):
    now = {"ms": 1_000_000}
    monkeypatch.setattr(evaluator_module, "now_ms", lambda: now["ms"])
    book = book_with_long(qty="0.5", entry="43000")
    book.apply_mark("BTCUSDT", D("43000"), ts=now["ms"])  # 21,500 notional, far past the limit
    engine = SimpleNamespace(accounts={1: None}, book=book, closed_positions={})
    evaluator = Evaluator(engine)
    limits = Limits(by_rule={"position_notional": Thresholds(D("10000"), D("20000"))}, asset_caps={}, breach_after_n=3)
    evaluator.limits = {1: limits}

    evaluator.on_change({1})  # the last frame before the market froze
    assert evaluator.queue.empty() and 1 in evaluator.dwelling
    for _ in range(2):  # the reloader's one-second timer; no frame comes
        now["ms"] += 1_000
        evaluator.revisit()
    jobs = []
    while not evaluator.queue.empty():
        jobs.append(evaluator.queue.get())
    raised = [j for j in jobs if isinstance(j, Job) and j.change.level == CRITICAL]
    assert raised and raised[0].change.rule == "position_notional"
    assert raised[0].at_ms == 1_002_000  # (n - 1) s after the breach, not whenever the next frame comes


# --------------------------------------------------------------------------- issue 14 item 2


def test_two_breaches_that_cleared_while_the_stream_process_was_down_resolve_and_none_escalates(desk, clock):
    """The probe's finding: after a restart two of two breaches that had cleared stayed open, and the
    critical one was escalated to EMERGENCY and sent 5 minutes later. Seeded latches settle them."""
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Level
    from alerts.services import alerts_escalate_unacknowledged
    from rules.tests.test_evaluator_alerts import BTC, raise_open, start, write

    account_id, engine, _ = desk
    critical = raise_open(account_id, "leverage", BTC, Level.CRITICAL, "25", "20")
    warning = raise_open(account_id, "leverage", "ETHUSDT:BOTH", Level.WARNING, "11", "10")
    engine.hold(account_id, leverage=3)  # both ended while the desk was down
    evaluator = start(engine)
    evaluator.revisit()  # the reloader's first visit, with no frame
    write(evaluator)
    for alert in (critical, warning):
        alert.refresh_from_db()
        assert (alert.status, alert.resolution) == ("resolved", "restart_reconciled")
    assert alerts_escalate_unacknowledged(now=timezone.now() + timedelta(minutes=10)) == 0
