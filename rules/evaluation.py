"""Rule evaluation inside the stream process: the Django edge of rules/evaluate.py.

`attach(engine)` subscribes to the engine's changes. Evaluation itself reads the
risk book only (no database on the tick path); level changes are queued and one
writer task turns them into alert rows in order, off the tick path.
Profiles are re-read from the database every PROFILE_RELOAD_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min

from accounts.models import ExchangeAccount
from positions.book import PositionRisk
from positions.figures import PositionInput
from rules.actions import TRIGGERS, plan_action
from rules.evaluate import CRITICAL, NORMAL, RULES, Change, DayState, Latch, Limits, evaluate
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
    out: dict[int, Limits | None] = {}
    for account in ExchangeAccount.objects.filter(pk__in=account_ids).select_related("risk_profile"):
        profile = profile_for_account(account)
        out[account.id] = Limits.from_values(profile.limit_values()) if profile else None
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
        with transaction.atomic():
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
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.evaluations = 0
        self.last_eval_us = 0.0
        # The writer's own thread (and database connection). On asgiref's one shared sync thread an
        # alert waited behind the sink's persistence, one account's positions and snapshot per call
        # (~0.1 s each on MariaDB): up to ~0.3 s at p99 on the tick-to-alert path (bench/alerts.py).
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-writer")

    async def load(self) -> None:
        ids = list(self.engine.accounts)
        self.limits = await sync_to_async(load_limits)(ids)
        day = trading_day()
        self.days = await sync_to_async(load_day_states)(ids, day)

    def on_change(self, account_ids: set[int]) -> None:
        started = time.perf_counter()
        at_ms = int(time.time() * 1000)
        day = trading_day()
        for account_id in account_ids:
            limits = self.limits.get(account_id)
            if limits is None:
                continue
            risk = self.engine.book.account(account_id)
            state = self._day_state(account_id, day, risk.margin_balance)
            changes = evaluate(
                latch=self.latches[account_id],
                limits=limits,
                risk=risk,
                positions=self.engine.book.positions(account_id),
                day=state,
            )
            for change in changes:
                self.queue.put_nowait(self._job(account_id, change, at_ms, limits, risk))
        self.evaluations += 1
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

    def _day_state(self, account_id: int, day: str, equity: Decimal | None) -> DayState | None:
        state = self.days.get(account_id)
        if equity is None:
            return state
        if state is None or state.day != day:  # a new trading day starts from the equity seen first
            state = self.days[account_id] = DayState(day=day, start_equity=equity, peak_equity=equity)
        state.observe(equity)
        return state

    async def writer(self) -> None:
        """One writer, in order. A failed write (database away) is retried with back-off, not dropped."""
        while True:
            job = await self.queue.get()
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    await sync_to_async(write_alerts, thread_sensitive=False, executor=self._write_thread)([job])
                    break
                except Exception:
                    log.exception("writing an alert change failed (attempt %d)", attempt + 1)
                    await asyncio.sleep(min(30.0, 0.5 * 2**attempt))

    async def reloader(self) -> None:
        while True:
            await asyncio.sleep(PROFILE_RELOAD_S)
            try:
                await self.load()
            except Exception:
                log.exception("reloading risk profiles failed; keeping the last ones")


def attach(engine: Any) -> Evaluator:
    """Evaluate every limit on every change the engine's book reports."""
    evaluator = Evaluator(engine)
    engine.listeners.append(evaluator.on_change)
    engine.startup.append(evaluator.load)
    engine.workers += [evaluator.writer, evaluator.reloader]
    return evaluator
