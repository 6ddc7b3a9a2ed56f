"""Desk VaR benchmark (issue 18). Prints figures; never asserts a time.

    taskset -c 0 python -m bench.var                # 2,000 accounts, 100k positions, 300 symbols, 1,000 scenarios
    taskset -c 0 python -m bench.var --write-doc    # also update its section of docs/PERFORMANCE.md

Measured: ``positions.portfolio.var.desk_var`` (full historical-simulation desk VaR and ES with
the margin mechanics, per-account stand-alone VaR/ES and component VaR/ES per account and per
symbol), and the delta-normal cross-check ``parametric_var``; wall time (perf_counter), CPU time
(process_time) and the process's peak resident memory (ru_maxrss), best and median of
``--repeat`` runs.

The desk is random but seeded, built straight as arrays (``var.Desk``; building 100k Decimal
``PositionInput`` objects is the caller's cost, not the engine's): symbol i uses the bracket
table of fixture symbol i mod 27 (the 2024-10-24 leverageBracket fixture), 40 % of accounts are
hedge (a third of their symbols both legs), 25 % of positions isolated (wallet 1.0 to 1.5 × the
initial margin), notionals log-uniform 100 .. 1M USDT, leverage 2..20, cross wallets 0.8 to 3 ×
the cross initial margin (so a share of pools and positions do get liquidated in the tail).
Scenarios: 1,000 daily moves of a one-factor model with Student-t (4 d.o.f.) shocks, daily vol
2 .. 8 % per symbol, path low/high a little beyond the end move (what ``historical_scenarios``
produces from minute closes; building them from 90 days of minute bars is not part of the target).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

# One core, as the target says: keep BLAS from spreading the matrix products over threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402 - after the thread caps above

from bench._common import command_line, machine, percentile, write_doc  # noqa: E402
from positions.margin import brackets_from_binance  # noqa: E402
from positions.portfolio.scenarios import ScenarioSet  # noqa: E402
from positions.portfolio.var import Desk, bracket_tables, desk_var, parametric_var  # noqa: E402
from positions.portfolio.volatility import EwmaEstimate  # noqa: E402

FIXTURE = ROOT / "marketdata" / "data" / "binance_um_leverageBracket_majors_2024-10-24.json"
HEADING = "## Desk VaR (issue 18)"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def build_desk(*, seed: int, accounts: int, positions: int, symbols: int, single_share: float = 0.0) -> Desk:
    rng = np.random.default_rng(seed)
    rows = json.loads(FIXTURE.read_text())
    tables = [brackets_from_binance(r["brackets"]) for r in rows]
    names = tuple(f"S{i:03d}USDT" for i in range(symbols))
    floor, mmr, cum, lev = bracket_tables(names, {n: tables[i % len(tables)] for i, n in enumerate(names)})
    marks = 10 ** rng.uniform(-2, 4.5, symbols)
    per = np.full(accounts, positions // accounts)
    per[: positions % accounts] += 1
    acct = np.repeat(np.arange(accounts), per)
    hedge = rng.random(accounts) < 0.4
    sym = np.empty(positions, dtype=np.int64)
    sides = []
    start = 0
    for a in range(accounts):  # distinct symbols per account, hedge accounts may hold both legs
        n = per[a]
        picks = rng.choice(symbols, size=n, replace=False)
        if hedge[a]:
            both = rng.random(n) < 1 / 3
            out, side = [], []
            for s, b in zip(picks, both, strict=True):
                if b and len(out) + 2 <= n:
                    out += [s, s]
                    side += ["LONG", "SHORT"]
                else:
                    out.append(s)
                    side.append(rng.choice(["LONG", "SHORT"]))
                if len(out) >= n:
                    break
            sym[start : start + n] = out[:n]
            sides += side[:n]
        else:
            sym[start : start + n] = picks
            sides += ["BOTH"] * n
        start += n
    side_arr = np.array(sides)
    mark = marks[sym]
    entry = mark * rng.uniform(0.95, 1.05, positions)
    notional = 10 ** rng.uniform(2, 6, positions)
    qty = notional / entry
    sign = np.where(side_arr == "SHORT", -1.0, np.where(side_arr == "LONG", 1.0, rng.choice([-1.0, 1.0], positions)))
    qty *= sign
    leverage = rng.choice([2, 3, 5, 10, 20], positions)
    isolated = rng.random(positions) < 0.25
    # hedge legs share the margin type (Binance sets it per symbol)
    key = acct * symbols + sym
    _, inverse = np.unique(key, return_inverse=True)
    isolated = isolated[np.unique(key, return_index=True)[1]][inverse]
    if single_share > 0:  # these accounts keep one cross position (a single-symbol pool), the rest isolated
        first = np.r_[True, acct[1:] != acct[:-1]]
        chosen = rng.random(accounts) < single_share
        isolated = np.where(chosen[acct], ~first, isolated)
    im = np.abs(qty) * entry / leverage
    iso_wallet = np.where(isolated, im * rng.uniform(1.0, 1.5, positions), 0.0)
    pool = np.where(isolated, -1, acct)  # one USDT cross pool per account
    cross_im = np.bincount(acct[~isolated], im[~isolated], minlength=accounts)
    wallet = cross_im * rng.uniform(0.8, 3.0, accounts) + 100.0
    return Desk(
        accounts=tuple(range(accounts)),
        symbols=names,
        account=acct,
        symbol=sym,
        qty=qty,
        entry=entry,
        mark=mark,
        isolated=isolated,
        iso_wallet=iso_wallet,
        pool=pool,
        pool_account=np.arange(accounts),
        pool_asset=["USDT"] * accounts,
        pool_wallet=wallet,
        tier_floor=floor,
        tier_mmr=mmr,
        tier_cum=cum,
        tier_lev=lev,
        sides=list(side_arr),
    )


def build_scenarios(*, seed: int, scenarios: int, symbols: tuple[str, ...]) -> ScenarioSet:
    rng = np.random.default_rng(seed + 1)
    s = len(symbols)
    vol = rng.uniform(0.02, 0.08, s)
    beta = rng.uniform(0.5, 1.5, s)
    market = rng.standard_t(4, scenarios) * 0.035 / np.sqrt(2)
    idio = rng.standard_t(4, (scenarios, s)) / np.sqrt(2)
    log_move = beta * market[:, None] + np.sqrt(np.maximum(vol**2 - (beta * 0.035) ** 2, (0.3 * vol) ** 2)) * idio
    moves = np.expm1(log_move)
    wiggle = np.abs(rng.normal(0, 0.3, (scenarios, s))) * vol
    low = np.minimum(moves - wiggle, 0.0)
    high = np.maximum(moves + wiggle, 0.0)
    low = np.maximum(low, -0.95)
    moves = np.maximum(moves, low)
    return ScenarioSet(
        names=tuple(f"window {k}" for k in range(scenarios)), symbols=symbols, moves=moves, low=low, high=high
    )


def estimate_from(scenarios: ScenarioSet) -> EwmaEstimate:
    r = np.log1p(scenarios.moves)
    cov = r.T @ r / r.shape[0]
    vol = np.sqrt(np.diag(cov))
    corr = cov / vol[:, None] / vol[None, :]
    return EwmaEstimate(
        symbols=scenarios.symbols,
        horizon_minutes=1440,
        half_life_days=1e9,
        vol=vol,
        daily_vol=vol,
        cov=cov,
        corr=corr,
        n_returns=np.full(vol.size, r.shape[0]),
    )


def single_pools(desk: Desk) -> int:
    cross = ~desk.isolated
    first = {}
    mixed = set()
    for p, s in zip(desk.pool[cross].tolist(), desk.symbol[cross].tolist(), strict=True):
        if first.setdefault(p, s) != s:
            mixed.add(p)
    return len(first) - len(mixed)


def timed(fn, repeat: int) -> tuple[list[float], list[float], object]:
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--scenarios", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--single-share",
        type=float,
        default=0.0,
        help="share of accounts whose cross pool holds one symbol (checked along the path: extra work)",
    )
    parser.add_argument("--write-doc", action="store_true", help=f"update '{HEADING}' in docs/PERFORMANCE.md")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    desk = build_desk(
        seed=args.seed,
        accounts=args.accounts,
        positions=args.positions,
        symbols=args.symbols,
        single_share=args.single_share,
    )
    scen = build_scenarios(seed=args.seed, scenarios=args.scenarios, symbols=desk.symbols)
    estimate = estimate_from(scen)
    print(f"desk and scenarios generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rss_before = rss_mb()
    walls, cpus, result = timed(lambda: desk_var(desk, scen), args.repeat)
    p_walls, p_cpus, p_result = timed(lambda: parametric_var(desk, estimate), args.repeat)
    rss = rss_mb()
    liquidated = len(result.liquidations(result.var_scenario))
    m = machine()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = [
        HEADING,
        "",
        f"Command: `taskset -c 0 {command_line('bench.var', argv)}` (one core; BLAS threads capped at 1).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {np.__version__}. "
        f"Load average at the end of the run: {load} (other work on the machine inflates wall time; CPU time "
        "is the process's own).",
        "",
        f"Desk (seed {args.seed}): {desk.n_positions:,} positions, {args.accounts:,} accounts, {args.symbols} "
        f"symbols, {int(desk.isolated.sum()):,} isolated, {single_pools(desk):,} single-symbol cross pools; "
        f"{args.scenarios:,} scenarios.",
        f"Desk VaR 99 % {result.desk.var:,.0f} USDT, ES {result.desk.es:,.0f} USDT; "
        f"{liquidated} liquidations (pools + isolated positions) in the VaR scenario; "
        f"delta-normal VaR {p_result.desk.var:,.0f} USDT.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| `desk_var` (VaR, ES, stand-alone per account, components per account and per symbol), wall, "
        f"best / median of {args.repeat} | {ms(min(walls))} / {ms(percentile(walls, 50))} | ≤ 1 s |",
        f"| `desk_var`, CPU time, best / median | {ms(min(cpus))} / {ms(percentile(cpus, 50))} | ≤ 1 s |",
        f"| `parametric_var` (delta-normal with components), wall, best / median | "
        f"{ms(min(p_walls))} / {ms(percentile(p_walls, 50))} | |",
        f"| `parametric_var`, CPU time, median | {ms(percentile(p_cpus, 50))} | |",
        f"| peak resident memory (ru_maxrss, whole process) | {rss:.0f} MB (before the runs: {rss_before:.0f} MB) "
        "| ≤ 500 MB |",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write_doc:
        write_doc(HEADING, section)
        print("wrote docs/PERFORMANCE.md", file=sys.stderr)


if __name__ == "__main__":
    main()
