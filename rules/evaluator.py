"""Rule evaluation inside the stream process: the Django edge of rules/levels.py.

`attach(engine)` subscribes to the engine's changes. Evaluation itself reads the
risk book only (no database on the tick path): a vectorised screen (rules/quiet_screen.py)
skips the accounts nowhere near a limit and the exact Decimal evaluation runs for the
rest. Level changes go straight to one writer thread, which turns them into alert rows
in order while the pass goes on. Profiles are re-read from the database every PROFILE_RELOAD_S,
and within about a second of a save (rules.services bumps a cache key the reloader polls).

The alert rows are kept true to the latches: at start the latches are seeded from the open
alerts, and the first complete evaluation of each account resolves the ones that no longer hold
(`restart_reconciled`); after a limit change, the same with `limit_changed`. Open rows' values
are refreshed quietly (at most every ALERT_VALUE_REFRESH_S per row). A job about a position the
exchange has reported closed since the job's measurement is dropped, so nobody is paged about a
position that is gone.
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
from rules.quiet_screen import Screen, evaluate_accounts, seed_latches
from rules.services import action_record, profile_for_account, profiles_version

log = logging.getLogger(__name__)

PROFILE_RELOAD_S = 30.0
LIQUIDATION_AFTERMATH_MS = 300_000  # account-level clears this soon after a liquidation (dwell included) are its doing
VERSION_POLL_S = 1.0  # how often the reloader looks for a profile save (and re-evaluates dwelling accounts)
WRITE_ATTEMPTS = 8  # about two minutes of back-off before a change is given up (and logged)
LEVEL_NAMES = {NORMAL: "normal", 20: "warning", CRITICAL: "critical"}
# The exchange stamps a close with its own clock, the evaluator a measurement with the local one:
# a close this much "before" a measurement still counts as after it (clock skew, not a re-open).
CLOSE_SKEW_MS = 500
RESTART_RECONCILED, LIMIT_CHANGED = "restart_reconciled", "limit_changed"


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
    reopen_window_s: int | None = None  # the profile's; None: the alerts app's default
    resolution: str = ""  # for a clear: why it ended, when not simply back within its limit

    @property
    def subject(self) -> str:
        return self.change.subject


@dataclass(frozen=True)
class RefreshJob:
    """An open row's value, updated quietly (no delivery)."""

    account_id: int
    rule: str
    subject: str
    value: Decimal
    mark: Decimal | None
    at_ms: int


@dataclass(frozen=True)
class ReconcileJob:
    """Resolve the account's open alerts of `rules` that the latch no longer holds."""

    account_id: int
    holding: frozenset[tuple[str, str]]
    rules: frozenset[str]
    resolution: str
    at_ms: int
    subject: str = ""  # about no one position


def value_refresh_ms() -> int:
    return int(float(getattr(settings, "ALERT_VALUE_REFRESH_S", 5)) * 1000)


def is_position(subject: str) -> bool:
    return ":" in subject  # "BTCUSDT:LONG"; account subjects are "account", "cross" or an asset


def closed_after(closed: dict, account_id: int, subject: str, at_ms: int) -> bool:
    """The exchange reported the position closed at or after `at_ms` (the job's measurement)."""
    if not is_position(subject):
        return False
    closed_at = closed.get((account_id, subject))
    return closed_at is not None and closed_at >= at_ms - CLOSE_SKEW_MS


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
            # The risk score's weights are a desk setting, the same for every profile.
            made[profile.pk] = Limits.from_values(
                {**profile.limit_values(), "score_weights": settings.RISK_SCORE_WEIGHTS}
            )
        out[account.id] = made[profile.pk] if profile is not None else None
    return out


def anomaly_loads(account_ids: list[int]) -> dict[int, Decimal]:
    """Each account's open anomaly alerts (rules/anomaly_alerts.py, message code "anomaly") as the
    risk score's load: 1 per critical, 0.5 per warning (rules.score.anomaly_load)."""
    from alerts.models import Alert, AlertStatus
    from rules.score import anomaly_load

    levels: dict[int, list[int]] = {}
    rows = Alert.objects.filter(
        account_id__in=account_ids, message_code="anomaly", status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]
    ).values_list("account_id", "level")
    for account_id, level in rows:
        levels.setdefault(account_id, []).append(level)
    return {a: anomaly_load(lv) for a, lv in levels.items()}


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


def comparison(value: Decimal, limit: Decimal | None, lower_is_worse: bool) -> str:
    """How the value stands to the limit, as the evaluator compares (a breach is >= or <=)."""
    if limit is None or value == limit:
        return "at" if limit is not None else ("below" if lower_is_worse else "above")
    return "above" if value > limit else "below"


def alert_payload(account_id: int, job: Job) -> dict[str, Any]:
    change = job.change
    m, t = change.measurement, change.thresholds
    limit = t.critical if change.level == CRITICAL else t.warning  # the present level's limit
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
    params = {
        "rule": change.rule,
        "subject": change.subject,
        "value": str(m.value),
        "limit": None if limit is None else str(limit),
        "level": LEVEL_NAMES[change.level],
        "comparison": comparison(m.value, limit, t.lower_is_worse),
        "reason_code": RULES[change.rule][1],
    }
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
        # The text is rendered from the code in each reader's language (alerts.messages).
        message_code="limit_breach",
        message_params=params,
        reopen_window_s=job.reopen_window_s,
    )


def write_alerts(jobs: list) -> None:
    from alerts import services as alert_services

    for job in jobs:
        # Each service call is its own transaction (alert row and outbox rows together): not wrapped
        # in another, so it needs no savepoint, two round trips fewer on the alert's way to the desk.
        if isinstance(job, RefreshJob):
            alert_services.alert_refresh(
                account_id=job.account_id, rule=job.rule, subject=job.subject, value=job.value, mark_price=job.mark
            )
            continue
        if isinstance(job, ReconcileJob):
            alert_services.alerts_reconcile(
                account_id=job.account_id,
                holding=set(job.holding),
                rules=set(job.rules),
                resolution=job.resolution,
            )
            continue
        change = job.change
        if change.level == NORMAL:
            # A position that left the book without a close the engine saw (a sync, say): gone,
            # not back within its limit. (One the exchange reported closed is not written at all:
            # its close or liquidation resolves the alert, with the reason.)
            resolution = job.resolution or (
                "position_closed" if change.vanished and is_position(change.subject) else "cleared"
            )
            alert_services.alert_clear(
                account_id=job.account_id, rule=change.rule, subject=change.subject, resolution=resolution
            )
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


def changed_rules(old: Limits | None, new: Limits | None) -> set[str]:
    """The evaluator's rules whose thresholds differ between two profiles' limits."""
    if old is None or new is None:
        return set(RULES) if old is not new else set()
    rules = {r for r in RULES if old.by_rule.get(r) != new.by_rule.get(r)}
    if old.asset_caps != new.asset_caps:
        rules.add("asset_cap")
    return rules


class Evaluator:
    def __init__(self, engine: Any):
        self.engine = engine
        self.latches: dict[int, Latch] = defaultdict(Latch)
        self.limits: dict[int, Limits | None] = {}
        self.anomaly_loads: dict[int, Decimal] = {}
        self.days: dict[int, DayState] = {}
        self.hot: set[int] = set()  # accounts whose latch is not all NORMAL with zero streaks
        # Accounts whose next complete evaluation settles their latch and resolves what no longer
        # holds: account -> (resolution, the rules concerned). Set at start (seeded latches) and
        # when a reload changes an account's limits; usually empty, so the tick pays nothing.
        self.settle: dict[int, tuple[str, set[str]]] = {}
        # A level waits for its clearing dwell or its breach confirmation (Latch.dwelling): re-evaluated
        # each second, so a market frozen at a breach still confirms it (issue 14).
        self.dwelling: set[int] = set()
        self._screen: Screen | None = None
        self._version: int | None = None
        # Jobs go straight to the writer's own thread (and database connection), not through the
        # event loop: a change found part-way through a pass is written while the pass goes on.
        # On asgiref's one shared sync thread an alert waited behind the sink's persistence (up to
        # ~0.3 s at p99, bench/alerts.py); behind the pass it waited for all of it (~0.24 s).
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.evaluations = 0
        self.last_eval_us = 0.0
        self.screened = 0  # accounts the screen found quiet in the last pass
        self.dropped = 0  # jobs dropped because the exchange had closed their position
        self._queued = self._done = 0  # jobs handed to the writer, and written or given up (each has one writer)

    @property
    def closed_positions(self) -> dict:
        # The engine's (marketdata.streams): (account_id, "SYM:SIDE") -> closed_at_ms, a re-opened
        # position removes its key. An engine without it closes nothing.
        return getattr(self.engine, "closed_positions", None) or {}

    async def load(self) -> None:
        """At start: the profiles, the day's start and peak equity from today's snapshots, and the
        latches seeded from the open alerts (a breach standing through a restart is not opened and
        paged again; one that ended while the desk was down resolves on the first evaluation)."""
        self._version = await sync_to_async(profiles_version)()
        await self.load_limits()
        account_ids = list(self.engine.accounts)
        self.days = await sync_to_async(load_day_states)(account_ids, trading_day())
        self.seed(await sync_to_async(open_levels)(account_ids))

    def seed(self, levels: dict[int, dict[tuple[str, str], int]]) -> None:
        mine = {a: {k: lv for k, lv in by_key.items() if k[0] in RULES} for a, by_key in levels.items()}
        mine = {a: by_key for a, by_key in mine.items() if by_key}
        for account_id in [a for a in mine if self.limits.get(a) is None]:
            # No profile governs the account (or it is not this process's): nothing will evaluate
            # it, so nothing it raised holds any more.
            del mine[account_id]
            self._put(ReconcileJob(account_id, frozenset(), frozenset(RULES), RESTART_RECONCILED, now_ms()))
        seed_latches(latches=self.latches, hot=self.hot, levels=mine)
        for account_id in mine:
            self.settle[account_id] = (RESTART_RECONCILED, set(RULES))

    async def load_limits(self) -> set[int]:
        """Re-read the profiles; the accounts whose limits changed (their alerts get reconciled)."""
        limits = await sync_to_async(load_limits)(list(self.engine.accounts))
        # The risk score's anomaly part: the open anomaly alerts' load, read with the profiles.
        self.anomaly_loads = await sync_to_async(anomaly_loads)(list(self.engine.accounts))
        # Profiles that did not change keep the screen built for them: a new one rebuilds its bounds
        # on the next frame's path (~10 ms at 200 accounts, every PROFILE_RELOAD_S; bench/alerts.py).
        if limits == self.limits:
            return set()
        old, self.limits = self.limits, limits
        if not old:
            return set()  # the first load: nothing was evaluated under other limits
        changed = set()
        for account_id, new in limits.items():
            rules = changed_rules(old.get(account_id), new)
            if not rules:
                continue
            changed.add(account_id)
            if new is None:
                # No profile governs the account any more: nothing evaluates it, so nothing it
                # raised holds. Resolve it all now.
                self.latches.pop(account_id, None)
                self.hot.discard(account_id)
                self.settle.pop(account_id, None)
                self._put(ReconcileJob(account_id, frozenset(), frozenset(RULES), LIMIT_CHANGED, now_ms()))
                continue
            resolution, pending = self.settle.get(account_id, (LIMIT_CHANGED, set()))
            self.settle[account_id] = (resolution, pending | rules)  # a restart's settle keeps its name
        return changed

    def on_change(self, account_ids: set[int], *, count: bool = True) -> None:
        """``count``: False for a re-visit on the clock (``revisit``): the figures are the ones last
        evaluated, so only the time moves (dwells, and the breach confirmation's timer)."""
        started = time.perf_counter()
        at_ms = now_ms()
        if self._screen is None or self._screen.limits is not self.limits:  # profiles (re)loaded
            self._screen = Screen(self.limits)
        settle = {a: self.settle[a][1] for a in account_ids if a in self.settle} if self.settle else None
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
            now_ms=at_ms,
            settle=settle,
            count=count,
            anomalies=self.anomaly_loads,
        ):
            evaluated += 1
            limits = self.limits[account_id]
            if settle and account_id in settle:
                changes = self._settled(account_id, changes, risk.complete, at_ms)
            for change in changes:
                self._queue_change(account_id, change, at_ms, limits, risk)
            if account_id in self.hot:
                self._refresh(account_id, at_ms)
                if self.latches[account_id].dwelling():
                    self.dwelling.add(account_id)
                else:
                    self.dwelling.discard(account_id)
            else:
                self.dwelling.discard(account_id)
        if settle:
            for account_id in settle:
                if account_id not in self.hot:  # screened quiet: nothing latched, nothing open to settle
                    self.settle.pop(account_id, None)
        self.evaluations += 1
        self.screened = len(account_ids) - evaluated
        self.last_eval_us = (time.perf_counter() - started) * 1e6

    def _settled(self, account_id: int, changes: list[Change], complete: bool, at_ms: int) -> list[Change]:
        """The first evaluation after a restart or a limit change: what no longer holds is resolved
        by one reconcile (with its reason), not cleared one by one as if back within the limit."""
        resolution, rules = self.settle[account_id]
        kept = [c for c in changes if not (c.level == NORMAL and c.rule in rules)]
        if complete:  # a missing figure is not a recovery: settle on a complete evaluation only
            del self.settle[account_id]
            holding = frozenset(self.latches[account_id].holding(rules))
            self._put(ReconcileJob(account_id, holding, frozenset(rules), resolution, at_ms))
        return kept

    def _queue_change(self, account_id: int, change: Change, at_ms: int, limits: Limits, risk: Any) -> None:
        if change.level != NORMAL:
            state = self.latches[account_id].states.get((change.rule, change.subject))
            if state is not None:  # the raise writes the value (or is dropped): refreshes start from it
                state.written, state.written_ms = change.measurement.value, at_ms
        if self._gone(account_id, change.subject, at_ms, vanished=change.vanished):
            self.dropped += 1
            return
        self._put(self._job(account_id, change, at_ms, limits, risk))

    def _refresh(self, account_id: int, at_ms: int) -> None:
        """Open rows' values, quietly, at most every ALERT_VALUE_REFRESH_S per row, and only when
        the value moved (an open alert showed 1,674.69 while equity was 47.46)."""
        every = value_refresh_ms()
        for (rule, subject), state in self.latches[account_id].states.items():
            if state.level == NORMAL or state.value is None or state.value == state.written:
                continue
            if at_ms - state.written_ms < every:
                continue
            state.written, state.written_ms = state.value, at_ms
            self._put(RefreshJob(account_id, rule, subject, state.value, state.mark, at_ms))

    def _put(self, job: Any) -> None:
        self._queued += 1  # before the put: drain() must never see a job out and not counted
        self.queue.put(job)

    def _job(self, account_id: int, change: Change, at_ms: int, limits: Limits, risk: Any) -> Job:
        reopen = limits.reopen_window_s
        acts = change.level == CRITICAL and change.rule in TRIGGERS and limits.auto_action != "none"
        if change.level == NORMAL:
            return Job(
                account_id, change, at_ms, reopen_window_s=reopen, resolution=self._clear_reason(account_id, at_ms)
            )
        if not acts:
            return Job(account_id, change, at_ms, reopen_window_s=reopen)
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
            reopen_window_s=reopen,
        )

    def _clear_reason(self, account_id: int, at_ms: int) -> str:
        """An account-level limit that clears right after the exchange liquidated the account's
        positions (utilization, concentration, leverage fall to nothing) was ended by the
        liquidation, and says so: a risk manager must not read "back within limit" there."""
        liquidated_ms = getattr(self.engine, "liquidated_at", {}).get(account_id)
        if liquidated_ms is not None and at_ms - liquidated_ms <= LIQUIDATION_AFTERMATH_MS:
            return "liquidated"
        return ""

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

    def late(self, job: Any) -> bool:
        """Checked again just before the write: the user stream's close may have arrived while
        the job waited (the race is the tick's evaluation against the close event)."""
        if isinstance(job, ReconcileJob):
            return False
        vanished = isinstance(job, Job) and job.change.vanished
        return self._gone(job.account_id, job.subject, job.at_ms, vanished=vanished)

    def _gone(self, account_id: int, subject: str, at_ms: int, *, vanished: bool) -> bool:
        """The exchange has reported the position closed since the measurement: its close (or
        liquidation) resolves the alert with the reason, and a raise now would page about a
        position that is gone. A subject that left the book is left to that close whenever the
        engine saw one."""
        if not is_position(subject):
            return False
        closed = self.closed_positions
        if vanished:
            return (account_id, subject) in closed
        return closed_after(closed, account_id, subject, at_ms)

    def write_forever(self, *, own_connection: bool = True) -> None:
        """One writer, in order. A failed write (database away) is retried with back-off, not dropped.
        ``own_connection``: the thread's connection is its own, closed when the writer ends (False for
        a caller lending its connection, such as a test's, which must stay open in its transaction)."""
        while (job := self.queue.get()) is not None:
            if self.late(job):
                self.dropped += 1
                self._done += 1
                continue
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
        if own_connection:
            connection.close()

    async def reloader(self) -> None:
        """Every VERSION_POLL_S: a profile saved since the last look reloads the profiles at once
        (else every PROFILE_RELOAD_S), and accounts whose limits changed, whose latch waits for a
        dwell or still has to settle are evaluated again without waiting for their next change."""
        last_reload = time.monotonic()
        while True:
            await asyncio.sleep(VERSION_POLL_S)
            try:
                changed: set[int] = set()
                version = await sync_to_async(profiles_version)()
                if version != self._version or time.monotonic() - last_reload >= PROFILE_RELOAD_S:
                    # Profiles only. The day states stay the ones evaluation keeps up to date on every
                    # frame: re-read from snapshots (taken every 5 s) they lost the peaks seen in between,
                    # and the query per account held the GIL from the loop for ~0.1 s every reload.
                    self._version, last_reload = version, time.monotonic()
                    changed = await self.load_limits()
                self.revisit(changed)
            except Exception:
                log.exception("reloading risk profiles failed; keeping the last ones")

    def revisit(self, extra: set[int] = frozenset()) -> None:
        due = (self.dwelling | set(self.settle) | set(extra)) & set(self.engine.accounts)
        if due:
            self.on_change(due, count=False)


def now_ms() -> int:
    return int(time.time() * 1000)


def open_levels(account_ids: list[int]) -> dict[int, dict[tuple[str, str], int]]:
    from alerts.selectors import alerts_open_levels

    return alerts_open_levels(account_ids=account_ids)


def attach(engine: Any) -> Evaluator:
    """Evaluate every limit on every change the engine's book reports."""
    evaluator = Evaluator(engine)
    engine.listeners.append(evaluator.on_change)
    engine.startup.append(evaluator.load)
    engine.workers += [evaluator.writer, evaluator.reloader]
    engine.flush_defers_to.append(evaluator.writing)
    return evaluator
