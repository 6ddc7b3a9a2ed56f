"""Stream recovery at desk scale (issue 15's open bound). Prints figures; never asserts a time.

    python -m bench.recovery                      # 2,000 accounts, the adapter's weight guard as it is
    python -m bench.recovery --lifted             # the same with the guard lifted (the engine alone)
    python -m bench.recovery --write-doc          # also update docs/PERFORMANCE.md's section

The simulator (its own process, bench/_common.SimProcess) holds the desk; a StreamEngine in this
process syncs it over REST and opens the market socket and one user-data socket per account (the
start-up runs with the weight guard lifted, as bench/streams.py does: with it, 2,000 accounts
take ~46 minutes to start). Then, at the start of a fresh UTC minute (the simulator's weight
window is per minute, as Binance's), the simulator's ``drop`` fault closes every socket at once
with 1001 "going away" and keeps answering: the exchange answers again at once. Measured from the
fault's answer:

- market: the first frame the engine applies after it (bound: 5 s);
- each user stream: its socket open again on a new listen key, events flowing
  (``FeedStatus.reconnects`` moved on, ``connected``) (bound: 10 s);
- each account's state live again: its REST re-sync landed (``stale`` false). Re-syncs run after
  the socket opens, in turn, within the adapter's bulk share of the IP's weight; the time Binance's
  limit implies for all of them is printed beside what the run saw.

The run watches for ``--cap`` seconds; accounts not back by then are counted as such.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field

import requests

from bench._common import (
    SimOptions,
    SimProcess,
    command_line,
    desk_accounts,
    machine,
    percentile,
    progress,
    synthetic_universe,
    write_doc,
)
from bench.streams import NullSink, engine_for, specs

HEADING = "## Stream recovery (issue 15)"
MARKET_BOUND_S = 5.0
USER_BOUND_S = 10.0
SYNC_WEIGHT = (
    1 + 55
)  # a new listen key, then the REST re-sync (positionRisk 5, symbolConfig 5, open orders 40, account 5)


@dataclass
class Recovery:
    accounts: int
    guard: str
    startup_s: float = 0.0
    market_s: float | None = None
    user_s: list[float] = field(default_factory=list)
    synced_s: list[float] = field(default_factory=list)
    cap_s: float = 0.0
    used_weight: int = 0


def set_guard(lifted: bool) -> None:
    from marketdata import exchange

    exchange.WEIGHT_SLOWDOWN_AT = float("inf") if lifted else 0.9


async def _run(args: argparse.Namespace, sim: SimProcess, n: int) -> Recovery:
    from marketdata import exchange

    result = Recovery(n, "lifted" if args.lifted else f"as it is ({exchange.WEIGHT_SLOWDOWN_AT:.0%} of 2,400/min)")
    set_guard(True)
    engine = engine_for(sim, specs(range(n)), NullSink())
    started = time.monotonic()
    await engine.start()

    # Live: the socket open and the start-up re-sync landed (a fault during the start-up's re-syncs
    # would find the minute's weight spent).
    def live() -> int:
        return sum(f.connected and not f.stale for f in engine.user_feeds.values())

    while live() < n or not engine.market.connected:
        if time.monotonic() - started > args.startup_timeout:
            raise SystemExit(f"start-up: only {live()} of {n} live")
        progress("user streams live", live(), n)
        await asyncio.sleep(0.5)
    result.startup_s = time.monotonic() - started
    set_guard(args.lifted)
    # A fault long after the start finds a fresh weight window: wait for the next UTC minute.
    await asyncio.sleep(61 - time.time() % 60)
    before = {a: f.reconnects for a, f in engine.user_feeds.items()}
    market_before = engine.market.reconnects
    answered = await asyncio.to_thread(requests.post, f"{sim.base_url}/_sim/fault", json={"mode": "drop"}, timeout=10)
    answered.raise_for_status()
    fault_at = time.monotonic()
    fault_ms = int(time.time() * 1000)
    back: dict[int, float] = {}
    synced: dict[int, float] = {}
    while time.monotonic() - fault_at < args.cap:
        now = time.monotonic() - fault_at
        m = engine.market
        if result.market_s is None and m.reconnects > market_before and (m.last_message_ms or 0) > fault_ms:
            result.market_s = now
        for a, f in engine.user_feeds.items():
            if a not in back and f.connected and f.reconnects > before[a]:
                back[a] = now
            if a in back and a not in synced and not f.stale:
                synced[a] = now
        if len(synced) == n and result.market_s is not None:
            break
        await asyncio.sleep(0.05)
    result.user_s = sorted(back.values())
    result.synced_s = sorted(synced.values())
    result.cap_s = args.cap
    result.used_weight = engine._adapters and next(iter(engine._adapters.values())).rate.used_weight or 0
    await engine.stop()
    return result


def _open_concurrency() -> int:
    from marketdata import streams

    return streams.SOCKET_OPEN_CONCURRENCY


def report(args: argparse.Namespace, r: Recovery, argv: list[str] | None) -> str:
    m = machine()
    within = sum(1 for s in r.user_s if s <= USER_BOUND_S)
    lines = [
        HEADING,
        "",
        f"Command: `{command_line('bench.recovery', argv)}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; the simulator in its own process.",
        f"Desk: {r.accounts:,} accounts ({args.per_account} position(s) each over {args.symbols} synthetic symbols);"
        f" start-up with the guard lifted {r.startup_s:.1f} s. Fault: the simulator's `drop` (every socket"
        " closed with 1001, REST answering throughout), at the start of a fresh UTC minute.",
        f"Weight guard: {r.guard}. User sockets opening at once: {_open_concurrency()}.",
        "",
        "| stream | bound | recovered | within bound | min | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    market = "not within the cap" if r.market_s is None else f"{r.market_s:.2f} s"
    ok = r.market_s is not None and r.market_s <= MARKET_BOUND_S
    lines.append(f"| market | {MARKET_BOUND_S:.0f} s | {market} | {'yes' if ok else 'no'} | | | | |")
    if r.user_s:
        p50, p99, mx = percentile(r.user_s, 50), percentile(r.user_s, 99), max(r.user_s)
        stats = f"{min(r.user_s):.2f} s | {p50:.2f} s | {p99:.2f} s | {mx:.2f} s"
    else:
        stats = "– | – | – | –"
    lines.append(
        f"| user streams | {USER_BOUND_S:.0f} s | {len(r.user_s):,} of {r.accounts:,} within {r.cap_s:.0f} s"
        f" | {within:,} of {r.accounts:,} | {stats} |"
    )
    from marketdata import exchange

    need = r.accounts * SYNC_WEIGHT
    minutes = need / (2400 * 0.9 * exchange.BULK_WEIGHT_FRACTION)
    if r.synced_s:
        p50, p99, mx = percentile(r.synced_s, 50), percentile(r.synced_s, 99), max(r.synced_s)
        stats = f"{min(r.synced_s):.2f} s | {p50:.2f} s | {p99:.2f} s | {mx:.2f} s"
    else:
        stats = "– | – | – | –"
    synced_within = sum(1 for s in r.synced_s if s <= USER_BOUND_S)
    lines.append(
        f"| account state re-synced (REST) | – | {len(r.synced_s):,} of {r.accounts:,} within {r.cap_s:.0f} s"
        f" | {synced_within:,} of {r.accounts:,} within {USER_BOUND_S:.0f} s | {stats} |"
    )
    lines += [
        "",
        f"Re-syncing every account costs {need:,} weight ({SYNC_WEIGHT} each); at Binance's 2,400 a minute per IP"
        f" (re-syncs wait at {0.9 * exchange.BULK_WEIGHT_FRACTION:.0%}, the rest kept for listen keys, the marks and"
        f" the kill switch) that is {minutes:.0f} minutes for the last account's state, whatever the supervision"
        " does; until then the gate denies that account's new orders (ACCOUNT_STATE_STALE) and lets exits through."
        " The simulator counts weight but enforces no limit, so the lifted run shows the engine alone.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--per-account", type=int, default=1)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cap", type=float, default=90.0, help="seconds to watch after the fault")
    parser.add_argument("--startup-timeout", type=float, default=900.0)
    parser.add_argument("--lifted", action="store_true", help="lift the adapter's weight guard for the recovery too")
    parser.add_argument(
        "--open-concurrency", type=int, default=None, help="user sockets opening at once (SOCKET_OPEN_CONCURRENCY)"
    )
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.open_concurrency:
        from marketdata import streams

        streams.SOCKET_OPEN_CONCURRENCY = args.open_concurrency
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("binance").setLevel(logging.CRITICAL)  # it logs every 1001 close at ERROR
    universe = synthetic_universe(args.symbols, args.seed)
    desk = desk_accounts(seed=args.seed, accounts=args.accounts, per_account=args.per_account, universe=universe)
    with SimProcess(SimOptions(desk, args.symbols, args.seed, 1.0)) as sim:
        result = asyncio.run(_run(args, sim, len(desk)))
    text = report(args, result, argv)
    print(text)
    if args.write_doc:
        write_doc(HEADING, text)
    sys.exit(0)


if __name__ == "__main__":
    main()
