"""/allocation/ in a real browser (headless Chromium, riskdesk/tests/browser_fixtures.py): the page's
ECharts draw from the page's JSON under the CSP (no inline script), with no console error, and the
apply button writes the profile for a risk manager."""

from __future__ import annotations

import pytest

from riskdesk.tests import browser_fixtures as bf

live_desk, browser, console, open_page = bf.live_desk, bf.browser, bf.console, bf.open_page

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

# 25 days of synthetic 1-minute bars ending now, at the simulator's marks, then the beat job's refresh.
SEED = (
    "from datetime import datetime, UTC; from decimal import Decimal; "
    "from marketdata import bars; from rules.allocation import services; "
    "from rules.tests.test_allocation_fixtures import synthetic_closes; "
    "now = datetime.now(UTC).replace(second=0, microsecond=0); "
    "closes = synthetic_closes(as_of=now, days=25); "
    "bars.write_mark_bars([(s, t, Decimal(repr(c)), Decimal(repr(c)), Decimal(repr(c)), Decimal(repr(c))) "
    "for s, (ts, cs) in closes.items() for t, c in zip(ts, cs)]); "
    "r = services.risk_refresh(); print(r['available'], r['not_available'])"
)


def test_the_page_draws_every_chart_without_console_errors(open_page, live_desk):
    page = open_page("risk")  # signed in and live: the stream engine has published the accounts
    out = live_desk.manage("shell", "-c", SEED)
    assert out.strip().splitlines()[-1].startswith("True"), out
    page.goto(live_desk.url + "/allocation/")
    for chart in (
        "contrib-account-chart",
        "contrib-symbol-chart",
        "var-history-chart",
        "correlation-chart",
        "limits-chart",
    ):
        expect(page.locator(f"#{chart} canvas").first).to_be_visible()
    expect(page.locator("[data-testid=var-accounts] tbody tr")).to_have_count(4)
    page.locator("[data-testid=apply-forms] button").first.click()
    expect(page.locator(".messages .msg-success")).to_contain_text("allocation suggestion of")
