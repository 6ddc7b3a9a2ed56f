from __future__ import annotations

import asyncio
import logging
import signal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import ExchangeAccount
from marketdata import collateral, deadman, services
from marketdata.exchange import ExchangeError
from marketdata.sink import DjangoSink
from marketdata.streams import AccountSpec, StreamEngine, settle_gc
from riskdesk import metrics

log = logging.getLogger(__name__)


def account_specs() -> list[AccountSpec]:
    specs = []
    for account in ExchangeAccount.objects.filter(enabled=True).exclude(api_key_encrypted="").order_by("pk"):
        key, secret = account.credentials()
        specs.append(AccountSpec(id=account.id, name=account.name, api_key=key, api_secret=secret))
    return specs


def build_engine(specs: list[AccountSpec], *, sink_process: bool = False) -> StreamEngine:
    """``sink_process``: the sink's work in a child process (run_streams; not inside a web process)."""
    engine = StreamEngine(
        accounts=specs,
        rest_url=settings.BINANCE_FUTURES_REST_URL,
        ws_url=settings.BINANCE_FUTURES_WS_URL,
        sink=DjangoSink(process=sink_process),
        stale_after_s=settings.STREAM_STALE_AFTER_S,
    )
    engine.startup.append(lambda: _load_held(engine))
    deadman.attach(
        engine,
        countdown_s=settings.DEADMAN_COUNTDOWN_S,
        renew_every_s=settings.DEADMAN_RENEW_S,
        weight_per_min=settings.DEADMAN_WEIGHT_PER_MIN,
        load=deadman.cache_load,
        save=deadman.cache_save,
    )
    engine.wallets.publish = collateral.cache_publish  # balances by asset and the asset index, for the pages
    engine.workers.append(engine.wallets.run)
    metrics.instrument(engine)  # frame→book and frame→alert histograms, published for /metrics
    try:  # the rule evaluator subscribes to the engine's changes once the rules app provides it
        from rules.evaluator import attach
    except ImportError:
        return engine
    attach(engine)
    return engine


async def _load_held(engine: StreamEngine) -> None:
    """The Position rows as the last process left them: the first sync finds what closed meanwhile."""
    from positions.selectors import positions_held

    engine.held_at_start = await sync_to_async(positions_held)(account_ids=list(engine.accounts))


def refresh_reference() -> str:
    """Symbols and brackets from the exchange; on failure the database's copies are used."""
    try:
        return f"symbols: {services.symbols_sync()}, bracket rows: {services.brackets_sync()}"
    except (ExchangeError, OSError) as exc:
        log.warning("could not refresh symbols/brackets (%s); using what the database holds", exc)
        return f"could not refresh symbols/brackets ({exc}); using what the database holds"


class Command(BaseCommand):
    help = (
        "The stream process: the all-market mark-price stream and one user-data stream per enabled account, "
        "feeding the risk book; snapshots, live state and feed alerts. Restart it after adding accounts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-refresh", action="store_true", help="skip refreshing symbols and brackets at start")

    def handle(self, *args, no_refresh: bool, **options):
        specs = account_specs()
        if not specs:
            raise CommandError("no enabled exchange account with credentials; add one in the admin first")
        if not no_refresh:
            self.stdout.write(refresh_reference())
        self.stdout.write(
            f"streaming {len(specs)} accounts from {settings.BINANCE_FUTURES_REST_URL} / "
            f"{settings.BINANCE_FUTURES_WS_URL} (stale after {settings.STREAM_STALE_AFTER_S} s)"
        )
        asyncio.run(self._run(build_engine(specs, sink_process=settings.STREAM_SINK_PROCESS)))

    async def _run(self, engine: StreamEngine) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await engine.start()
        settle_gc()
        await stop.wait()
        await engine.stop()
