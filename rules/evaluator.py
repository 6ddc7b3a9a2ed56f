"""Rule evaluation inside the stream process: the Django edge of rules/levels.py.

`attach(engine)` subscribes to the engine's changes. Evaluation itself reads the
risk book only (no database on the tick path): a vectorised screen (rules/quiet_screen.py)
skips the accounts nowhere near a limit and the exact Decimal evaluation runs for the
rest. Level changes go straight to one writer thread, which turns them into alert rows
in order while the pass goes on. Profiles are re-read from the database every PROFILE_RELOAD_S.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min

from accounts.models import ExchangeAccount
from positions.book import PositionRisk
from positions.figures import PositionInput
from rules.actions import TRIGGERS, plan_action
from rules.levels import CRITICAL, NORMAL, RULES, Change, DayState, Latch, Limits
from rules.models import RiskProfile
from rules.quiet_screen import Screen, evaluate_accounts
from rules.services import action_record, profile_for_account

log = logging.getLogger(__name__)

PROFILE_RELOAD_S = 30.0
WRITE_ATTEMPTS = 8  # about two minutes of back-off before a change is given up (and logged)
LEVEL_NAMES = {NORMAL: "normal", 20: "warning", CRITICAL: "critical"}


@dataclass(frozen=True)
class Job:
    account_id: int
    change: Change
    at_ms: int
    action: tuple[str, str] | None = None  # (kind, mode) when the profile acts on this breach
    positions: tuple[PositionRisk, ...] = ()  # the book's view when the breach latched, for the plan
    cross_wallet: Decimal | None = None
    brackets: dict | None = None  # the tables the book used, so the plan matches its figures
    step_sizes: dict | None = None


def trading_day(now: datetime | None = None) -> str:
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    return (now or datetime.now(tz=zone)).astimezone(zone).date().isoformat()


def load_limits(account_ids: list[int]) -> dict[int, Limits | None]:
    # The default profile read once, not once per account without a profile of its own: this runs
    # every PROFILE_RELOAD_S on a thread of the stream process, whose GIL market frames need.
    default = RiskProfile.objects.filter(is_default=True).first()
    made: dict[int, Limits] = {}  # per profile: many accounts share one
    out: dict[int, Limits | None] = {}
    for account in ExchangeAccount.objects.filter(pk__in=account_ids).select_related("risk_profile"):
        profile = profile_for_account(account, default=default)
        if profile is not None and profile.pk not in made:
            made[profile.pk] = Limits.from_values(profile.limit_values())
        out[account.id] = made[profile.pk] if profile is not None else None
    return out


def load_day_states(account_ids: list[int], day: str) -> dict[int, DayState]:
    """Start-of-day and peak equity from today's snapshots, so a restart keeps the day's figures."""
    from positions.models import AccountSnapshot

    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    start = datetime.fromisoformat(day).replace(tzinfo=zone)
    states = {}
    today = AccountSnapshot.objects.filter(account_id__in=account_ids, time__gte=start)
    for row in today.values("account_id").annotate(first=Min("time"), peak=Max("margin_balance")):
        first = today.filter(account_id=row["account_id"], time=row["first"]).first()
        if first is not None:
            states[row["account_id"]] = DayState(day=day, start_equity=first.margin_balance, peak_equity=row["peak"])
    return states


def alert_payload(account_id: int, job: Job) -> dict[str, Any]:
    change = job.change
    m, t = change.measurement, change.thresholds
    limit = t.critical if change.level == CRITICAL else t.warning
    details = {
        "value": str(m.value),
        "limit": None if limit is None else str(limit),
        "level": LEVEL_NAMES.get(change.level),
        "previous_level": LEVEL_NAMES.get(change.previous),
        "warning": None if t.warning is None else str(t.warning),
        "critical": None if t.critical is None else str(t.critical),
        "mark": None if m.mark is None else str(m.mark),
        "lower_is_worse": t.lower_is_worse,
        "time_ms": job.at_ms,
    }
    word = "below" if t.lower_is_worse else "above"
    return dict(
        account_id=account_id,
        rule=change.rule,
        subject=change.subject,
        level=change.level,
        reason_code=RULES[change.rule][1],
        value=m.value,
        limit=limit,
        mark_price=m.mark,
        details=details,
        message=f"{change.rule} {change.subject}: {m.value} is {word} the {LEVEL_NAMES[change.level]} limit {limit}",
    )


def write_alerts(jobs: list[Job]) -> None:
    from alerts import services as alert_services

    for job in jobs:
        # Each service call is its own transaction (alert row and outbox rows together): not wrapped
        # in another, so it needs no savepoint, two round trips fewer on the alert's way to the desk.
        if job.change.level == NORMAL:
            alert_services.alert_clear(account_id=job.account_id, rule=job.change.rule, subject=job.change.subject)
            continue
        alert, event = alert_services.alert_raise(**alert_payload(job.account_id, job))
        if job.action and event in ("opened", "escalated"):
            try:
                with transaction.atomic():
                    record_action(job, alert_id=alert.id)
            except Exception:  # a plan that cannot be made must not cost the alert itself
                log.exception("planning the automatic action for alert %s failed", alert.id)


def record_action(job: Job, *, alert_id: int | None) -> None:
    """Plan the profile's action on the book's positions and record it (proposed, or queued to act)."""
    kind, mode = job.action
    inputs = [
        PositionInput(
            symbol=p.symbol,
            side=p.side,
            qty=p.qty,
            entry_price=p.entry_price,
            mark_price=p.mark,
            leverage=p.leverage,
            margin_type=p.margin_type,
            isolated_wallet=p.isolated_wallet,
            margin_asset=p.margin_asset,
        )
        for p in job.positions
        if p.mark is not None
    ]
    critical = job.change.thresholds.critical
    # Aim a little inside the limit, not on it, so the next tick does not re-trigger.
    ratio = critical * Decimal("0.95") if job.change.rule in ("margin_ratio", "risk_degree") and critical else None
    distance = critical * Decimal("1.05") if job.change.rule == "liq_distance" and critical else None
    plan = plan_action(
        kind=kind,
        trigger=job.change.rule,
        positions=inputs,
        cross_wallet=job.cross_wallet or Decimal(0),
        brackets=job.brackets or {},
        target_ratio=ratio,
        target_distance=distance,
        step_sizes=job.step_sizes or {},
    )
    action_record(account_id=job.account_id, alert_id=alert_id, plan=plan.as_json(), act=mode == "act")


class Evaluator:
    def __init__(self, engine: Any):
        self.engine = engine
        self.latches: dict[int, Latch] = defaultdict(Latch)
        self.limits: dict[int, Limits | None] = {}
        self.days: dict[int, DayState] = {}
        self.hot: set[int] = set()  # accounts whose latch is not all NORMAL with zero streaks
        self._screen: Screen | None = None
        # Jobs go straight to the writer's own thread (and database connection), not through the
        # event loop: a change found part-way through a pass is written while the pass goes on.
        # On asgiref's one shared sync thread an alert waited behind the sink's persistence (up to
        # ~0.3 s at p99, bench/alerts.py); behind the pass it waited for all of it (~0.24 s).
        self.queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.evaluations = 0
        self.last_eval_us = 0.0
        self.screened = 0  # accounts the screen found quiet in the last pass
        self._queued = self._done = 0  # jobs handed to the writer, and written or given up (each has one writer)

    async def load(self) -> None:
        """At start: the profiles, and the day's start and peak equity from today's snapshots."""
        await self.load_limits()
        self.days = await sync_to_async(load_day_states)(list(self.engine.accounts), trading_day())

    async def load_limits(self) -> None:
        limits = await sync_to_async(load_limits)(list(self.engine.accounts))
        # Profiles that did not change keep the screen built for them: a new one rebuilds its bounds
        # on the next frame's path (~10 ms at 200 accounts, every PROFILE_RELOAD_S; bench/alerts.py).
        if limits != self.limits:
            self.limits = limits

    def on_change(self, account_ids: set[int]) -> None:
        started = time.perf_counter()
        at_ms = int(time.time() * 1000)
        if self._screen is None or self._screen.limits is not self.limits:  # profiles (re)loaded
            self._screen = Screen(self.limits)
        evaluated = 0
        for account_id, changes, risk in evaluate_accounts(
            book=self.engine.book,
            account_ids=account_ids,
            limits=self.limits,
            latches=self.latches,
            days=self.days,
            day=trading_day(),
            hot=self.hot,
            screen=self._screen,
        ):
            evaluated += 1
            for change in changes:
                job = self._job(account_id, change, at_ms, self.limits[account_id], risk)
                self._queued += 1  # before the put: drain() must never see a job out and not counted
                self.queue.put(job)
        self.evaluations += 1
        self.screened = len(account_ids) - evaluated
        self.last_eval_us = (time.perf_counter() - started) * 1e6

    def _job(self, account_id: int, change: Change, at_ms: int, limits: Limits, risk: Any) -> Job:
        acts = change.level == CRITICAL and change.rule in TRIGGERS and limits.auto_action != "none"
        if not acts:
            return Job(account_id, change, at_ms)
        usdt = risk.per_asset.get("USDT")
        return Job(
            account_id,
            change,
            at_ms,
            action=(limits.auto_action, limits.auto_action_mode),
            positions=tuple(self.engine.book.positions(account_id)),
            cross_wallet=usdt.cross_wallet_balance if usdt is not None else None,
            brackets=dict(self.engine.brackets),
            step_sizes=dict(self.engine.step_sizes),
        )

    async def writer(self) -> None:
        """Runs the writer thread for as long as the engine runs; on stop the thread finishes the
        jobs already queued, then ends."""
        from alerts import broadcast

        broadcast.set_home_loop(asyncio.get_running_loop())  # embedded mode's in-memory layer lives here
        thread = threading.Thread(target=self.write_forever, name="alert-writer", daemon=True)
        thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.queue.put(None)

    def writing(self) -> bool:
        """A change is queued or being written (and pushed: the push runs on the write's commit)."""
        return self._done != self._queued

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued change is written (tests; an orderly shutdown). True when it was."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._done == self._queued:
                return True
            time.sleep(0.01)
        return False

    def write_forever(self) -> None:
        """One writer, in order. A failed write (database away) is retried with back-off, not dropped."""
        while (job := self.queue.get()) is not None:
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    write_alerts([job])
                    break
                except Exception:
                    log.exception("writing an alert change failed (attempt %d)", attempt + 1)
                    # The thread keeps its connection between writes (no reconnect per alert); after a
                    # failure it may be dead (database restarted), so the retry opens a fresh one.
                    connection.close()
                    time.sleep(min(30.0, 0.5 * 2**attempt))
            self._done += 1
        connection.close()

    async def reloader(self) -> None:
        while True:
            await asyncio.sleep(PROFILE_RELOAD_S)
            try:
                # Profiles only. The day states stay the ones evaluation keeps up to date on every
                # frame: re-read from snapshots (taken every 5 s) they lost the peaks seen in between,
                # and the query per account held the GIL from the loop for ~0.1 s every reload.
                await self.load_limits()
            except Exception:
                log.exception("reloading risk profiles failed; keeping the last ones")


def attach(engine: Any) -> Evaluator:
    """Evaluate every limit on every change the engine's book reports."""
    evaluator = Evaluator(engine)
    engine.listeners.append(evaluator.on_change)
    engine.startup.append(evaluator.load)
    engine.workers += [evaluator.writer, evaluator.reloader]
    engine.flush_defers_to.append(evaluator.writing)
    return evaluator
