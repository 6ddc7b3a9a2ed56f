"""The quiet screen's cost per frame with the issue 17 limits (HHI, risk score, per-symbol overrides).
Prints figures; never asserts a time.

    PYTHONPATH=. taskset -c 1 python -m bench.risk_screen

A random desk of 2,000 accounts (rules/tests/test_quiet_screen.Desk: cross, isolated, hedged, two
margin assets) and one profile per run with limits far from every figure, so the screen does the
whole test on every account; 20 passes over every account, median and worst.
"""

from __future__ import annotations

import os
import random
import time
from decimal import Decimal as D

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskdesk.settings")
django.setup()

from rules.levels import DayState, Limits  # noqa: E402
from rules.quiet_screen import Screen  # noqa: E402
from rules.tests.test_quiet_screen import Desk  # noqa: E402

BASE = {
    "max_position_notional_warning": D(10**9),
    "max_concentration_warning": D("0.999"),
    "margin_ratio_warning": D("0.9"),
}
RUNS = (
    ("profile without the new limits", {}),
    ("+ max_hhi", {"max_hhi_warning": D("0.999")}),
    ("+ max_hhi + risk_score", {"max_hhi_warning": D("0.999"), "risk_score_warning": D(99)}),
    ("+ per-symbol overrides", {"symbol_limits": {"BTCUSDT": {"max_position_notional_warning": D(10**8)}}}),
)


def main(n_accounts: int = 2000, passes: int = 20) -> None:
    desk = Desk(random.Random(1), n_accounts=n_accounts)
    arrays = desk.book.screen_arrays()
    ids = list(range(1, len(arrays["account_ids"])))
    days = {x: DayState("d", D(30000), D(31000)) for x in desk.accounts}
    for name, extra in RUNS:
        limits = {x: Limits.from_values({**BASE, **extra}) for x in desk.accounts}
        screen = Screen(limits)
        screen.quiet(arrays, ids, days)  # builds the bounds
        times = []
        for _ in range(passes):
            started = time.perf_counter()
            quiet = screen.quiet(arrays, ids, days)
            times.append(time.perf_counter() - started)
        times.sort()
        print(
            f"{name:34s} quiet {len(quiet)}/{len(ids)}  median {times[len(times) // 2] * 1e3:.2f} ms"
            f"  worst {times[-1] * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
