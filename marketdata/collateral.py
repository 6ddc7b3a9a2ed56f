"""Every wallet asset into the risk book, and multi-assets collateral (issue 17 item 3).

The stream engine hands every balance it hears of (ACCOUNT_UPDATE ``B`` rows, the REST account's
``assets``) to ``Wallets.apply``, which puts them into the book (positions/collateral.py says how):

- single-asset mode: each asset its own pool at its cross wallet; USDT, USDC, FDUSD count in the
  account's totals, BTC, BNB... do not (they are no margin there) but are tracked, capped and shown;
- multi-assets mode: the account's USDT pool carries the haircut collateral value in USD of every
  asset (Binance pools the margin of the whole account), the other assets' pools hold their units
  and do not count. An asset the index does not list is valued at 0 (less collateral, not more) and
  named in the account's published balances.

``Wallets.run`` (an engine worker) reads ``GET /fapi/v1/assetIndex`` every ``refresh_s`` while any
account holds an asset besides USDT (weight 10), asks ``GET /fapi/v1/multiAssetsMargin`` once for
an account whose mode is unknown and which holds such an asset (weight 30), re-values the
multi-assets accounts, and publishes each account's balances by asset and the index for the pages
(``publish``; run_streams passes the cache writer). Nothing here runs per market frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from marketdata.exchange import ExchangeError
from positions.collateral import PAR_ASSETS, AssetIndex, collateral, parse_asset_index

if TYPE_CHECKING:
    from marketdata.streams import StreamEngine

log = logging.getLogger(__name__)

REFRESH_S = 30.0  # the index (Binance updates it every second; haircuts move rarely)
CHECK_S = 2.0  # mode changes and balances to publish
ASSETS_KEY = "live:assets:{id}"
INDEX_KEY = "live:asset_index"
TTL_S = 24 * 3600


class Wallets:
    def __init__(self, engine: StreamEngine, *, refresh_s: float = REFRESH_S):
        self.engine = engine
        self.refresh_s = refresh_s
        self.balances: dict[int, dict[str, Decimal]] = {}  # account -> asset -> cross wallet balance
        self.index: dict[str, AssetIndex] = {}
        self.index_ms = 0
        self.publish: Callable[[dict[int, dict], dict | None], None] | None = None
        self._applied_mode: dict[int, bool] = {}
        self._dirty: set[int] = set()
        self._asked_mode: set[int] = set()

    # --- from the engine (event path: ACCOUNT_UPDATE, REST sync) ---------------------------

    def apply(self, account_id: int, wallets: Mapping[str, Decimal], *, replace: bool = False) -> set[int]:
        """``wallets``: asset -> cross wallet balance. ``replace``: a full REST picture (assets it
        does not list are gone to 0). Returns the accounts whose book figures changed."""
        held = self.balances.setdefault(account_id, {})
        if replace:
            for asset in set(held) - set(wallets):
                held[asset] = Decimal(0)
        held.update(wallets)
        self._dirty.add(account_id)
        return self._to_book(account_id)

    def multi_assets(self, account_id: int) -> bool:
        return bool(self.engine.multi_assets.get(account_id))

    def _to_book(self, account_id: int) -> set[int]:
        held = self.balances.get(account_id) or {}
        book, multi = self.engine.book, self.multi_assets(account_id)
        self._applied_mode[account_id] = multi
        changed: set[int] = set()
        if multi:
            value = collateral(held, self.index, multi_assets=True)
            total = sum((a.value for a in value.assets if a.value is not None), Decimal(0))
            for asset, balance in held.items():
                if asset != "USDT":
                    changed |= book.set_wallet(account_id, balance, asset=asset, counted=False)
            changed |= book.set_wallet(account_id, total, asset="USDT", counted=True)
        else:
            if "USDT" not in held:
                held["USDT"] = Decimal(0)  # the USDT pool always exists (an account with nothing is 0, not missing)
            for asset, balance in held.items():
                changed |= book.set_wallet(account_id, balance, asset=asset, counted=asset in PAR_ASSETS)
        return changed

    # --- the worker ------------------------------------------------------------------------

    def needs_index(self) -> bool:
        return any(b != 0 and a not in ("USDT",) for held in self.balances.values() for a, b in held.items()) or any(
            self.engine.multi_assets.values()
        )

    async def run(self) -> None:
        due = 0.0
        loop = asyncio.get_running_loop()
        while not self.engine._stopping.is_set():
            try:
                await self._ask_modes()
                if self.needs_index() and loop.time() >= due:
                    due = loop.time() + self.refresh_s
                    if await self.refresh_index():
                        self._dirty |= {a for a in self.balances if self.multi_assets(a)}
                for account_id in list(self.balances):
                    if self._applied_mode.get(account_id) != self.multi_assets(account_id) or (
                        account_id in self._dirty and self.multi_assets(account_id)
                    ):
                        self.engine._note_changed(self._to_book(account_id) | {account_id})
                await self._publish()
            except Exception:
                log.warning("wallets: pass failed; again shortly", exc_info=True)
            await asyncio.sleep(CHECK_S)

    async def refresh_index(self) -> bool:
        spec = self.engine._market_spec
        try:
            rows = await self.engine.adapter(spec.id).asset_index()
        except ExchangeError as exc:
            log.warning("assetIndex unavailable (%s); multi-assets collateral keeps the last index", exc)
            return False
        index = parse_asset_index(rows)
        changed = index != self.index
        self.index = index
        self.index_ms = max((r.time_ms for r in index.values()), default=0)
        return changed

    async def _ask_modes(self) -> None:
        """The mode of an account holding something besides USDT, when no event has said it yet."""
        for account_id, held in list(self.balances.items()):
            if account_id in self.engine.multi_assets or account_id in self._asked_mode:
                continue
            if not any(b != 0 for a, b in held.items() if a != "USDT"):
                continue
            self._asked_mode.add(account_id)
            with contextlib.suppress(ExchangeError):
                self.engine.multi_assets[account_id] = await self.engine.adapter(account_id).multi_assets_mode()

    def account_assets(self, account_id: int) -> dict[str, Any]:
        """What the pages show: every asset's balance, index, haircut and worth as margin."""
        held = self.balances.get(account_id) or {}
        multi = self.multi_assets(account_id)
        value = collateral(held, self.index, multi_assets=multi)
        return {
            "multi_assets": multi,
            "total": None if value.total is None else str(value.total),
            "missing": list(value.missing),
            "index_ms": self.index_ms,
            "assets": [
                {
                    "asset": a.asset,
                    "balance": str(a.balance),
                    "index": None if a.index is None else str(a.index),
                    "haircut": None if a.haircut is None else str(a.haircut),
                    "rate": None if a.rate is None else str(a.rate),
                    "value": None if a.value is None else str(a.value),
                }
                for a in value.assets
            ],
        }

    async def _publish(self) -> None:
        if self.publish is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        states = {a: self.account_assets(a) for a in dirty}
        index = {asset: row.plain() for asset, row in self.index.items()}
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.publish, states, index)
        except Exception:
            self._dirty |= dirty
            raise


def cache_publish(states: dict[int, dict], index: dict | None) -> None:
    from django.core.cache import cache

    cache.set_many({ASSETS_KEY.format(id=a): s for a, s in states.items()}, TTL_S)
    if index is not None:
        cache.set(INDEX_KEY, index, TTL_S)


def account_assets_get(account_id: int) -> dict | None:
    from django.core.cache import cache

    return cache.get(ASSETS_KEY.format(id=account_id))
