"""Command-line options of ``manage.py simulate_exchange``, kept here so the command stays thin
and the same parsing can be reused by scripts that do not load Django."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import TextIO

from .config import ConfigError, SimConfig, build_config
from .faults import FaultError, FaultSpec
from .replay import ReplayError
from .risk import pools
from .server import Simulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9100, help="REST + WebSocket port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--accounts", required=True, help="accounts YAML (see marketdata/fixtures/demo_accounts.yaml)")
    parser.add_argument(
        "--replay",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="1m bar CSV(s) to replay as marks: binance_spot_<SYMBOL>_... or SYMBOL=path",
    )
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per real second (default 60: one bar per second)"
    )
    parser.add_argument("--start-at", default=None, help="replay start: HH:MM on the data's first day, or ISO time")
    parser.add_argument("--no-loop", action="store_true", help="stop the replay at the end instead of looping")
    parser.add_argument("--tick-interval", type=float, default=1.0, help="seconds between mark frames (default 1)")
    parser.add_argument(
        "--marks",
        nargs="+",
        action="extend",
        default=[],
        metavar="SYMBOL=PRICE",
        help="fixed marks for symbols not replayed (default: the accounts' entry prices)",
    )
    parser.add_argument(
        "--synthetic-symbols",
        type=int,
        default=0,
        metavar="N",
        help="add N random-walking SYNnnnUSDT symbols (benchmarks)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for synthetic symbols and walks")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MODE[:k=v,...]",
        help="inject a fault, e.g. drop:after=30,every=60 or http429:count=3,retry_after=2",
    )
    parser.add_argument("--no-fees", action="store_true", help="charge no trading fees (default 0.04%% / 0.02%%)")
    parser.add_argument("--check", action="store_true", help="validate the configuration, print a summary, exit")


def _marks(items: Sequence[str]) -> dict[str, str]:
    marks = {}
    for item in items:
        symbol, sep, price = item.partition("=")
        if not sep:
            raise ConfigError(f"--marks {item!r}: expected SYMBOL=PRICE")
        marks[symbol.strip().upper()] = price.strip()
    return marks


def config_from_options(options: dict) -> SimConfig:
    """``SimConfig`` from parsed options; raises ConfigError with a message fit for the user."""
    try:
        faults = [FaultSpec.parse(text) for text in options.get("fault") or []]
        extra = {"taker_fee_rate": Decimal(0), "maker_fee_rate": Decimal(0)} if options.get("no_fees") else {}
        return build_config(
            accounts=options["accounts"],
            replay=options.get("replay") or [],
            synthetic_symbols=options.get("synthetic_symbols") or 0,
            seed=options.get("seed") or 0,
            marks=_marks(options.get("marks") or []),
            speed=options.get("speed", 60.0),
            tick_interval_s=options.get("tick_interval", 1.0),
            loop_replay=not options.get("no_loop"),
            start_at=options.get("start_at"),
            faults=faults,
            **extra,
        )
    except (FaultError, ReplayError) as exc:
        raise ConfigError(str(exc)) from None


def summary(config: SimConfig, out: TextIO) -> None:
    """One line per account and position with the liquidation price the exchange will report."""
    sim = Simulator(config)
    out.write(
        f"{len(config.symbols)} symbols, {len(config.accounts)} accounts, "
        f"replay: {', '.join(f'{s.symbol}={s.path}' for s in config.replay) or 'none'}\n"
    )
    out.write(f"replay clock: {sim.market.describe()['replay']}\n")
    for account in sim.exchange.accounts.values():
        view = sim.exchange.view(account)
        ratios = ", ".join(f"{':'.join(p.key)} {p.ratio:.4%}" for p in pools(view))
        out.write(
            f"{account.api_key} ({'hedge' if account.hedge else 'one-way'}) wallets "
            f"{ {a: str(v) for a, v in account.wallets.items()} } margin ratio {ratios or '-'}\n"
        )
        for pv in view.positions:
            lp = view.liquidation_price(pv, config.symbols)
            out.write(
                f"  {pv.position.symbol} {pv.position.side} {pv.position.qty} @ {pv.position.entry_price} "
                f"{pv.margin_type} x{pv.leverage} mark {pv.mark} liq {'-' if lp is None else f'{lp:.2f}'}\n"
            )


async def serve(config: SimConfig, host: str, port: int, out: TextIO = sys.stdout) -> None:
    """Run until SIGINT/SIGTERM."""
    sim = Simulator(config)
    actual = await sim.start(host, port)
    out.write(
        f"Binance USDⓈ-M simulator on http://{host}:{actual} (REST) and ws://{host}:{actual}/ (WebSocket); "
        f"control API under /_sim/. Ctrl-C to stop.\n"
    )
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
