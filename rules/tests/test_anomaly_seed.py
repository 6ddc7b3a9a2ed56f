"""LOSS_VELOCITY's windows survive a restart (issue 17): the stream process's first load of the
detectors (rules.baselines.watch_load) seeds each account's margin-balance windows from the
AccountSnapshot rows of the last five minutes, so a fall that straddles a restart is measured over
its whole window, not from the first sample after the start."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from positions.models import AccountSnapshot
from rules import anomalies as an
from rules.baselines import balance_windows_load, watch_load
from rules.tests.test_anomalies import Clock

NOW = 1_800_000_000.0


def _snapshots(account, values_by_age: dict[float, str]) -> None:
    AccountSnapshot.objects.bulk_create(
        AccountSnapshot(
            account=account,
            time=datetime.fromtimestamp(NOW - age, tz=UTC),
            wallet_balance=D(value),
            margin_balance=D(value),
            maint_margin=D(0),
            unrealized_pnl=D(0),
        )
        for age, value in values_by_age.items()
    )


def _falling(account) -> None:
    # A snapshot every 10 s (SNAPSHOT_EVERY_S) over the 4 minutes before the restart: 10,000 down to
    # 9,300, a 7 % fall (past the 5 % warning of loss_5m, short of the 10 % critical).
    _snapshots(account, {240 - 10 * i: str(10_000 - 30 * i) for i in range(24)} | {0.0: "9300"})


def _watch() -> an.AnomalyWatch:
    return an.AnomalyWatch(clock=Clock(NOW + 5))


def test_a_fall_that_straddles_a_restart_fires_on_the_first_sample_after_it(db, account_a):
    _falling(account_a)
    watch = _watch()
    watch_load(watch)  # the stream process's first load, as the sink runs it at start
    found = watch.balance(account_a.id, "8950")  # 10.5 % below the 10,000 seen 245 s ago
    assert [(f.detector, f.level, f.details["measure"]) for f in found] == [(an.LOSS_VELOCITY, an.CRITICAL, "loss_5m")]
    assert found[0].details["baseline"]["high_5m"] == 10_000
    assert found[0].value == pytest.approx(0.105)


def test_without_the_seed_the_same_sample_says_nothing(db, account_a):
    _falling(account_a)
    watch = _watch()
    watch.load(levels={}, baselines={})  # a load that does not seed (as every later load)
    assert watch.balance(account_a.id, "8950") == []


def test_only_the_first_load_seeds_and_old_snapshots_do_not_count(db, account_a):
    _snapshots(account_a, {600.0: "20000", 30.0: "10000"})  # 20,000 ten minutes ago: outside the window
    assert balance_windows_load([account_a.id], now_s=NOW) == {account_a.id: [(NOW - 30, 10_000.0)]}
    watch = _watch()
    watch_load(watch)
    assert watch.balance(account_a.id, "9800") == []  # 2 % below 10,000: under the 5 % warning
    # a later load (every minute) does not seed again: the live windows are the truth by then
    AccountSnapshot.objects.create(
        account=account_a,
        time=datetime.fromtimestamp(NOW - 20, tz=UTC),
        wallet_balance=D("30000"),
        margin_balance=D("30000"),
        maint_margin=D(0),
        unrealized_pnl=D(0),
    )
    watch_load(watch)
    watch.clock.t += 5
    assert watch.balance(account_a.id, "9800") == []


def test_a_seeded_account_whose_state_already_exists_merges_in_time_order(db, account_a):
    """An order event may create the account's detector state before its first balance sample: the
    seed still goes in front of the window."""
    _falling(account_a)
    watch = _watch()
    watch.order_event(account_a.id, {"o": {"x": "NEW", "X": "NEW", "s": "BTCUSDT", "c": "x", "T": NOW * 1000}})
    watch_load(watch)
    found = watch.balance(account_a.id, "8950")
    assert found and found[0].level == an.CRITICAL
