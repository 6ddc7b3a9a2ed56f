"""The dead-man switch on the exchange (issue 17 item 2): Binance's countdownCancelAll.

For every account with resting orders the stream process arms ``POST /fapi/v1/countdownCancelAll``
per symbol (``countdownTime`` ms; 0 disarms) and renews it every ``renew_every_s`` while it sees the
account: its user stream connected (so the book holds the exchange's state) and the market feed
fresh. If the process dies (SIGKILL included), hangs, or goes blind, nothing renews and the
exchange cancels the symbol's open orders itself when the countdown runs out.

What was armed (per account and symbol: the earliest moment the countdown can fire, and the orders
open when it was last renewed) is kept in the shared cache, so the next process knows it. When the
desk sees an account again after a countdown ran out, the orders of that arm that are no longer
open were cancelled by the exchange: ``DEADMAN_FIRED`` (one alert per account and symbol). A few of
them are asked about (GET /fapi/v1/order): a CANCELED/EXPIRED answer at or after the deadline
confirms, a FILLED one is left out; Binance's ORDER_TRADE_UPDATE carries no cancel reason.

REST weight: countdownCancelAll weighs 10 (IP limit 2,400 a minute). The switch spends at most
``weight_per_min`` (default 600, a quarter); past that the renewal interval stretches and a warning
says the countdown is not covered. No per-frame work: the engine's hot path is untouched.

Plain asyncio, no Django, except ``cache_load``/``cache_save``/``record_fired`` which run_streams
passes in (they import Django lazily).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marketdata.exchange import ExchangeError

if TYPE_CHECKING:
    from marketdata.streams import StreamEngine

log = logging.getLogger(__name__)

CALL_WEIGHT = 10  # countdownCancelAll's request weight
CALLS_IN_FLIGHT = 8
CONFIRM_QUERIES = 5  # orders asked about per fired arm (weight 1 each)
CONFIRM_SLACK_MS = 2_000  # clock skew between the desk and the exchange
CACHE_KEY = "live:deadman"
CACHE_TTL_S = 7 * 24 * 3600
FINAL_STATES = ("CANCELED", "EXPIRED")


@dataclass
class Arm:
    deadline_ms: int  # the earliest time the exchange can fire: request sent + countdown
    orders: dict[str, str] = field(default_factory=dict)  # orderId -> clientOrderId open when armed

    def plain(self) -> list:
        return [self.deadline_ms, self.orders]


class DeadMan:
    """Arms, renews and disarms the countdown; reports the ones that fired. Run ``run()`` as an
    engine worker (``engine.workers``): it starts after the first REST sync."""

    def __init__(
        self,
        engine: StreamEngine,
        *,
        countdown_s: float = 60.0,
        renew_every_s: float = 20.0,
        weight_per_min: int = 600,
        load: Callable[[], dict] | None = None,
        save: Callable[[dict], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.engine = engine
        self.countdown_ms = int(countdown_s * 1000)
        self.renew_every_s = renew_every_s
        self.weight_per_min = max(CALL_WEIGHT, weight_per_min)
        self.load, self.save = load, save
        self.clock = clock
        self.armed: dict[int, dict[str, Arm]] = {}
        self.calls = 0  # countdownCancelAll requests sent (arm, renew, disarm)
        self.fired: list[dict] = []  # what was reported, for tests and the bench
        self._saved: dict | None = None
        self._warned_at = 0.0

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        if self.countdown_ms <= 0:
            return
        await self._load()
        while not self.engine._stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.warning("dead-man pass failed; again at the next one", exc_info=True)
            await asyncio.sleep(self.interval_s())

    def interval_s(self) -> float:
        """``renew_every_s``, stretched to keep the weight within ``weight_per_min``."""
        arms = sum(len(a) for a in self.armed.values())
        needed = arms * CALL_WEIGHT * 60.0 / self.weight_per_min
        interval = max(self.renew_every_s, needed)
        if interval * 1.5 > self.countdown_ms / 1000 and time.monotonic() - self._warned_at > 300:
            self._warned_at = time.monotonic()
            log.warning(
                "dead-man: %s armed symbols need a renewal every %.1f s, too close to the %.0f s countdown;"
                " raise DEADMAN_WEIGHT_PER_MIN or DEADMAN_COUNTDOWN_S",
                arms,
                interval,
                self.countdown_ms / 1000,
            )
        return interval

    def sees(self, account_id: int) -> bool:
        feed = self.engine.user_feeds.get(account_id)
        return bool(feed and feed.connected and not feed.stale) and not self.engine.is_stale()

    async def tick(self) -> None:
        """One pass over the accounts the desk sees: report fired arms, renew or arm the symbols
        with open orders, disarm the others."""
        work: list[tuple[int, str, dict[str, str] | None]] = []  # (account, symbol, orders or None: disarm)
        fired: list[tuple[int, str, Arm]] = []
        now_ms = int(self.clock() * 1000)
        for account_id in self.engine.accounts:
            if not self.sees(account_id):
                continue
            by_symbol: dict[str, dict[str, str]] = {}
            for order in self.engine.open_orders.get(account_id, {}).values():
                by_symbol.setdefault(order["symbol"], {})[str(order["orderId"])] = str(order.get("clientOrderId", ""))
            arms = self.armed.get(account_id, {})
            for symbol, arm in list(arms.items()):
                if arm.deadline_ms <= now_ms:  # ran out unrenewed: whatever of it is gone, the exchange took
                    del arms[symbol]
                    gone = {o: c for o, c in arm.orders.items() if o not in by_symbol.get(symbol, {})}
                    if gone:
                        fired.append((account_id, symbol, Arm(arm.deadline_ms, gone)))
            work += [(account_id, symbol, orders) for symbol, orders in by_symbol.items()]
            work += [(account_id, symbol, None) for symbol in arms if symbol not in by_symbol]
        for account_id, symbol, arm in fired:
            await self._report(account_id, symbol, arm)
        semaphore = asyncio.Semaphore(CALLS_IN_FLIGHT)

        async def one(account_id: int, symbol: str, orders: dict[str, str] | None) -> None:
            async with semaphore:
                await self._arm(account_id, symbol, orders)

        await asyncio.gather(*(one(*w) for w in work))
        await self._save()

    async def _arm(self, account_id: int, symbol: str, orders: dict[str, str] | None) -> None:
        countdown = self.countdown_ms if orders else 0
        sent_ms = int(self.clock() * 1000)
        try:
            await self.engine.adapter(account_id).countdown_cancel_all(symbol=symbol, countdown_ms=countdown)
        except ExchangeError as exc:
            # The previous arm (if any) stands with its deadline; if it runs out, the exchange acts.
            log.warning("dead-man: countdown for account %s %s not set (%s)", account_id, symbol, exc)
            return
        finally:
            self.calls += 1
        arms = self.armed.setdefault(account_id, {})
        if orders:
            arms[symbol] = Arm(sent_ms + self.countdown_ms, dict(orders))
        else:
            arms.pop(symbol, None)

    async def _report(self, account_id: int, symbol: str, arm: Arm) -> None:
        """Ask about a few of the orders gone: a fill is no dead-man cancel; an error leaves it unconfirmed."""
        adapter = self.engine.adapter(account_id)
        rows: list[dict[str, Any]] = []
        for n, (order_id, client_id) in enumerate(sorted(arm.orders.items())):
            row = {"order_id": order_id, "client_order_id": client_id, "status": "", "confirmed": False}
            if n < CONFIRM_QUERIES and client_id:
                with contextlib.suppress(ExchangeError):
                    answer = await adapter.query_order(symbol=symbol, client_order_id=client_id)
                    status, updated = str(answer.get("status", "")), int(answer.get("updateTime") or 0)
                    if status not in FINAL_STATES or updated < arm.deadline_ms - CONFIRM_SLACK_MS:
                        continue  # filled, or cancelled before the countdown could fire: not the switch
                    row["status"], row["confirmed"] = status, True
            rows.append(row)
        if not rows:
            return
        details = {
            "symbol": symbol,
            "count": len(rows),
            "confirmed": sum(1 for r in rows if r["confirmed"]),
            "deadline_ms": arm.deadline_ms,
            "countdown_s": self.countdown_ms / 1000,
            "orders": rows,
        }
        self.fired.append({"account_id": account_id, **details})
        log.warning("dead-man fired: account %s %s, %s order(s) cancelled", account_id, symbol, len(rows))
        await self.engine._tell("deadman_fired", account_id, details)

    # --- what was armed, across processes -------------------------------------------------------

    def state(self) -> dict:
        return {str(a): {s: arm.plain() for s, arm in arms.items()} for a, arms in self.armed.items() if arms}

    async def _load(self) -> None:
        if self.load is None:
            return
        try:
            saved = await asyncio.get_running_loop().run_in_executor(None, self.load) or {}
        except Exception:
            log.warning("dead-man: what the last process armed is unreadable", exc_info=True)
            return
        for account, arms in saved.items():
            if int(account) in self.engine.accounts:
                self.armed[int(account)] = {s: Arm(int(d), dict(o)) for s, (d, o) in arms.items()}
        self._saved = self.state()

    async def _save(self) -> None:
        state = self.state()
        if self.save is None or state == self._saved:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.save, state)
            self._saved = state
        except Exception:
            log.warning("dead-man: the armed state was not saved; again next pass", exc_info=True)


def attach(engine: StreamEngine, **options: Any) -> DeadMan:
    deadman = DeadMan(engine, **options)
    engine.workers.append(deadman.run)
    engine.deadman = deadman
    return deadman


# --- Django side (run_streams) ----------------------------------------------------------------


def cache_load() -> dict:
    from django.core.cache import cache

    return cache.get(CACHE_KEY) or {}


def cache_save(state: dict) -> None:
    from django.core.cache import cache

    cache.set(CACHE_KEY, state, CACHE_TTL_S)


def record_fired(*, account_id: int, details: dict) -> None:
    """DEADMAN_FIRED: critical, one per account and symbol."""
    from decimal import Decimal

    from django.db import transaction

    from alerts import services as alert_services
    from alerts.models import Level

    with transaction.atomic():
        alert_services.alert_raise(
            account_id=account_id,
            rule="deadman",
            subject=details["symbol"],
            level=Level.CRITICAL,
            reason_code="DEADMAN_FIRED",
            value=Decimal(details["count"]),
            limit=None,
            mark_price=None,
            details=details,
            message_code="deadman_fired",
            message_params={
                "symbol": details["symbol"],
                "count": details["count"],
                "countdown_s": details["countdown_s"],
                "deadline_ms": details["deadline_ms"],
            },
        )
