"""The evaluator keeps the alert rows true: seeded and reconciled on start, reconciled on a profile
save (limit_changed), cleared after the dwell and re-opened on the same row, values refreshed
quietly, and no job written about a position the exchange has closed since its measurement.

A stand-in engine (a RiskBook and the fields the evaluator reads) instead of the stream engine:
the evaluator is under test, not the sockets. The writer runs in the test's thread."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from alerts import services as alert_services
from alerts.models import Alert, Level
from positions.book import BookPosition, RiskBook
from positions.margin import brackets_from_binance
from rules import evaluator as ev
from rules import services
from rules.models import RiskProfile

FIXTURE = Path(__file__).resolve().parents[2] / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
TABLES = {row["symbol"]: brackets_from_binance(row["brackets"]) for row in json.loads(FIXTURE.read_text())}
BTC = "BTCUSDT:BOTH"


class Engine:
    def __init__(self, account_id: int) -> None:
        self.accounts = {account_id: None}
        self.book = RiskBook(capacity=8)
        for symbol in ("BTCUSDT", "ETHUSDT"):
            self.book.set_brackets(symbol, TABLES[symbol])
        self.book.apply_marks({"BTCUSDT": D(43000), "ETHUSDT": D(3000)}, ts=1)
        self.book.set_wallet(account_id, D(100000))
        self.brackets, self.step_sizes = {}, {}
        self.closed_positions: dict[tuple[int, str], int] = {}

    def hold(self, account_id: int, leverage: int, symbol: str = "BTCUSDT", qty: str = "0.1") -> None:
        position = BookPosition(symbol=symbol, side="BOTH", qty=D(qty), entry_price=D(43000), leverage=leverage)
        self.book.upsert_position(account_id, position)


class Clock:
    def __init__(self, monkeypatch) -> None:
        self.ms = 1_700_000_000_000
        monkeypatch.setattr(ev, "now_ms", lambda: self.ms)

    def tick(self, seconds: float) -> int:
        self.ms += int(seconds * 1000)
        return self.ms


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def desk(account_a):
    profile = RiskProfile.objects.create(
        name="desk",
        is_default=True,
        max_leverage_warning=10,
        max_leverage_critical=20,
        breach_after_n=1,
        hysteresis=D(0),
        clear_dwell_s=30,
        reopen_window_s=600,
    )
    engine = Engine(account_a.id)
    return account_a.id, engine, profile


def start(engine) -> ev.Evaluator:
    evaluator = ev.Evaluator(engine)
    evaluator.limits = ev.load_limits(list(engine.accounts))
    evaluator.seed(ev.open_levels(list(engine.accounts)))
    return evaluator


def write(evaluator: ev.Evaluator) -> None:
    """What the writer thread does, here, with the test's database connection."""
    evaluator.queue.put(None)
    evaluator.write_forever(own_connection=False)


def rows(account_id: int, rule: str = "leverage") -> list[Alert]:
    return list(Alert.objects.filter(account_id=account_id, rule=rule).order_by("pk"))


def raise_open(account_id: int, rule: str, subject: str, level: int, value: str, limit: str) -> Alert:
    alert, _ = alert_services.alert_raise(
        account_id=account_id,
        rule=rule,
        subject=subject,
        level=level,
        reason_code="X",
        value=D(value),
        limit=D(limit),
        mark_price=None,
        details={},
    )
    return alert


def test_the_message_is_a_code_with_the_present_levels_limit_and_at_when_equal(desk, clock):
    account_id, engine, _ = desk
    engine.hold(account_id, leverage=20)  # exactly on the critical limit
    evaluator = start(engine)
    evaluator.on_change({account_id})
    write(evaluator)
    [alert] = rows(account_id)
    assert alert.level == Level.CRITICAL and alert.limit == D(20)  # the critical limit, not the warning's
    assert alert.message_code == "limit_breach"
    params = alert.message_params
    assert (params["comparison"], params["level"], D(params["limit"]), params["subject"]) == (
        "at",
        "critical",
        D(20),
        BTC,
    )
    assert "above" not in alert.message  # never "20 is above the critical limit 20"


def test_a_level_clears_after_the_dwell_and_a_recrossing_reopens_the_same_row(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.hold(account_id, leverage=12)
    evaluator.on_change({account_id})
    engine.hold(account_id, leverage=5)
    clock.tick(1)
    evaluator.on_change({account_id})
    clock.tick(20)
    evaluator.on_change({account_id})
    write(evaluator)
    [alert] = rows(account_id)
    assert alert.status == "open" and alert.resolution == ""  # 21 s inside: still dwelling
    assert account_id in evaluator.dwelling
    clock.tick(10)
    evaluator.revisit()  # the reloader's 1 s visit: no book change needed to finish the dwell
    write(evaluator)
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolution == "cleared"
    assert account_id not in evaluator.dwelling

    engine.hold(account_id, leverage=12)  # back within the re-open window
    clock.tick(5)
    evaluator.on_change({account_id})
    write(evaluator)
    [again] = rows(account_id)
    assert again.pk == alert.pk and again.status == "open" and again.reopen_count == 1
    assert again.notified_level == Level.WARNING  # the same level: not notified a second time


def test_open_values_are_refreshed_quietly_at_most_every_five_seconds(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.hold(account_id, leverage=12)
    evaluator.on_change({account_id})
    write(evaluator)
    engine.hold(account_id, leverage=15)
    clock.tick(2)
    evaluator.on_change({account_id})
    assert evaluator.queue.empty()  # too soon
    clock.tick(4)
    evaluator.on_change({account_id})
    [job] = [evaluator.queue.get()]
    evaluator._queued -= 1
    assert isinstance(job, ev.RefreshJob) and job.value == D(15)
    ev.write_alerts([job])
    [alert] = rows(account_id)
    assert alert.value == D(15) and alert.level == Level.WARNING and alert.peak_value == D(15)
    clock.tick(6)
    evaluator.on_change({account_id})
    assert evaluator.queue.empty()  # the value did not move: nothing to write


def test_on_start_latches_are_seeded_and_what_no_longer_holds_resolves_restart_reconciled(desk, clock):
    account_id, engine, _ = desk
    holds = raise_open(account_id, "leverage", BTC, Level.CRITICAL, "25", "20")
    ended = raise_open(account_id, "leverage", "ETHUSDT:BOTH", Level.WARNING, "11", "10")  # closed while down
    drawdown = raise_open(account_id, "drawdown", "account", Level.WARNING, "0.1", "0.05")  # no longer a limit
    other = raise_open(account_id, "feed_stale", "market", Level.WARNING, "1", "1")  # not the evaluator's
    engine.hold(account_id, leverage=25)
    evaluator = start(engine)
    assert account_id in evaluator.hot and evaluator.latches[account_id].holding()
    evaluator.on_change({account_id})
    write(evaluator)
    for alert in (holds, ended, drawdown, other):
        alert.refresh_from_db()
    assert holds.status == "open" and holds.level == Level.CRITICAL
    assert rows(account_id) == [holds, ended]  # no second row for the breach that still holds
    assert (ended.status, ended.resolution) == ("resolved", "restart_reconciled")
    assert (drawdown.status, drawdown.resolution) == ("resolved", "restart_reconciled")
    assert other.status == "open"
    assert account_id not in evaluator.settle


def test_a_seeded_level_that_no_longer_holds_resolves_at_once_not_after_the_dwell(desk, clock):
    account_id, engine, _ = desk
    alert = raise_open(account_id, "leverage", BTC, Level.WARNING, "12", "10")
    engine.hold(account_id, leverage=3)
    evaluator = start(engine)
    evaluator.revisit()  # the reloader's first visit settles it even without a book change
    write(evaluator)
    alert.refresh_from_db()
    assert (alert.status, alert.resolution) == ("resolved", "restart_reconciled")


@pytest.mark.django_db(transaction=True)
def test_a_profile_save_reaches_evaluation_within_a_second_and_resolves_limit_changed(account_a, monkeypatch):
    monkeypatch.setattr(ev, "VERSION_POLL_S", 0.05)
    profile = RiskProfile.objects.create(
        name="desk", is_default=True, max_leverage_warning=10, breach_after_n=1, clear_dwell_s=30
    )
    engine = Engine(account_a.id)
    engine.hold(account_a.id, leverage=12)
    evaluator = ev.Evaluator(engine)

    async def scenario():
        await evaluator.load()
        evaluator.on_change({account_a.id})
        await asyncio.to_thread(evaluator.drain, 0)  # nothing written yet: the writer is below
        await asyncio.to_thread(services.profile_update, profile=profile, values={"max_leverage_warning": 15}, by=None)
        reloader = asyncio.create_task(evaluator.reloader())
        for _ in range(40):
            await asyncio.sleep(0.05)
            if evaluator.limits[account_a.id].by_rule["leverage"].warning == D(15) and not evaluator.settle:
                break
        reloader.cancel()

    asyncio.run(scenario())
    assert evaluator.limits[account_a.id].by_rule["leverage"].warning == D(15)
    write(evaluator)
    [alert] = rows(account_a.id)
    assert (alert.status, alert.resolution) == ("resolved", "limit_changed")


@pytest.mark.django_db(transaction=True)
def test_a_reload_keeps_a_breach_that_still_holds_under_the_new_limit(account_a):
    profile = RiskProfile.objects.create(name="desk", is_default=True, max_leverage_warning=10, breach_after_n=1)
    engine = Engine(account_a.id)
    engine.hold(account_a.id, leverage=12)
    evaluator = ev.Evaluator(engine)
    asyncio.run(evaluator.load())
    evaluator.on_change({account_a.id})
    services.profile_update(profile=profile, values={"max_leverage_warning": 11}, by=None)
    changed = asyncio.run(evaluator.load_limits())
    assert changed == {account_a.id} and evaluator.settle[account_a.id] == ("limit_changed", {"leverage"})
    evaluator.revisit()
    write(evaluator)
    [alert] = rows(account_a.id)
    assert alert.status == "open" and alert.limit == D(10)  # raised before the save; still holds


def test_a_job_measured_before_the_exchange_closed_its_position_is_not_written(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.hold(account_id, leverage=25)
    evaluator.on_change({account_id})  # critical queued at the tick...
    engine.closed_positions[(account_id, BTC)] = clock.ms + 3  # ...the user stream's close 3 ms later
    write(evaluator)
    assert rows(account_id) == [] and evaluator.dropped == 1


def test_a_job_is_not_even_queued_when_the_close_is_already_known(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.closed_positions[(account_id, BTC)] = clock.ms
    engine.hold(account_id, leverage=25)  # the book has not dropped the position yet
    evaluator.on_change({account_id})
    assert evaluator.queue.empty() and evaluator.dropped == 1


def test_a_position_reopened_after_its_close_is_alerted_again(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.closed_positions[(account_id, BTC)] = clock.ms - 60_000  # an older close, key not yet removed
    engine.hold(account_id, leverage=25)
    evaluator.on_change({account_id})
    write(evaluator)
    assert [a.level for a in rows(account_id)] == [Level.CRITICAL]


def test_a_closed_position_is_left_to_its_close_and_one_gone_otherwise_resolves_position_closed(desk, clock):
    account_id, engine, _ = desk
    evaluator = start(engine)
    engine.hold(account_id, leverage=25)
    engine.hold(account_id, leverage=25, symbol="ETHUSDT", qty="1")
    evaluator.on_change({account_id})
    write(evaluator)
    btc, eth = rows(account_id)
    engine.closed_positions[(account_id, BTC)] = clock.tick(1)  # the exchange's close: recorded elsewhere
    engine.book.remove_position(account_id, "BTCUSDT", "BOTH")
    engine.book.remove_position(account_id, "ETHUSDT", "BOTH")  # gone with no close seen (a sync)
    evaluator.on_change({account_id})
    write(evaluator)
    btc.refresh_from_db()
    eth.refresh_from_db()
    assert btc.status == "open"  # position_close_record resolves it (position_closed / liquidated)
    assert (eth.status, eth.resolution) == ("resolved", "position_closed")


def test_open_alerts_of_an_account_no_profile_governs_resolve_on_start(account_a, clock):
    alert = raise_open(account_a.id, "leverage", BTC, Level.WARNING, "12", "10")  # no profile at all
    engine = Engine(account_a.id)
    evaluator = start(engine)
    assert account_a.id not in evaluator.settle and account_a.id not in evaluator.hot
    write(evaluator)
    alert.refresh_from_db()
    assert (alert.status, alert.resolution) == ("resolved", "restart_reconciled")
