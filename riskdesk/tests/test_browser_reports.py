"""/reports/ in a real browser (headless Debian Chromium via Playwright, riskdesk/tests/browser_fixtures.py):
a risk manager generates a report for a date range and reads it with its charts; a trader sees
only the reports of their own accounts. The console stays clean (CSP on: no inline script or style).

RISKDESK_REPORT_SCREENSHOT=path saves the report page (docs/img/report-sample.png comes from here).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from riskdesk.tests import browser_fixtures as bf

live_desk, browser, console, open_page = bf.live_desk, bf.browser, bf.console, bf.open_page  # fixtures by name

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402


def test_a_risk_manager_generates_a_report_and_reads_it_with_its_charts(open_page, live_desk):
    page = open_page("risk")
    page.goto(live_desk.url + "/reports/")
    bf.wait_live(page)
    today = datetime.now(UTC).date().isoformat()
    form = page.get_by_test_id("generate-form")
    form.locator("input[name=from]").fill(today)
    form.locator("input[name=to]").fill(today)
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/reports/*/", timeout=60000)
    bf.wait_live(page)
    figures = page.get_by_test_id("report-figures")
    expect(figures.locator("thead th")).to_have_count(1 + 1 + len(live_desk.account_ids))  # metric, desk, accounts
    expect(figures).to_contain_text("Intraday max drawdown")
    charts = page.locator("img.chart")
    expect(charts).to_have_count(3)
    for i in range(3):
        assert charts.nth(i).evaluate("img => img.complete && img.naturalWidth > 100")
    expect(page.get_by_test_id("report-risks").locator("tbody tr")).to_have_count(5)  # the demo holds 5 legs
    if os.environ.get("RISKDESK_REPORT_SCREENSHOT"):
        page.screenshot(path=os.environ["RISKDESK_REPORT_SCREENSHOT"], full_page=True)
    pdf = page.request.get(live_desk.url + page.get_by_test_id("pdf-link").get_attribute("href"))
    assert pdf.ok and pdf.body().startswith(b"%PDF")


def test_a_trader_sees_only_the_reports_of_their_own_accounts(open_page, live_desk):
    alpha = live_desk.account_ids["alpha-btc-20x"]
    ids = live_desk.manage(
        "shell", "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from accounts.models import ExchangeAccount as A; from alerts.reports import services as s; "
        "end = timezone.now(); start = end - timedelta(hours=1); "
        f"mine = s.report_generate(period='custom', start=start, end=end, accounts=[A.objects.get(pk={alpha})]); "
        "desk = s.report_generate(period='custom', start=start, end=end); print(mine.id, desk.id)",
    ).split()[-2:]  # fmt: skip
    mine, desk = (int(x) for x in ids)
    page = open_page("alice")
    page.goto(live_desk.url + "/reports/")
    bf.wait_live(page)
    expect(page.locator(f"tr[data-report='{mine}']")).to_be_visible()
    expect(page.locator(f"tr[data-report='{desk}']")).to_have_count(0)
    expect(page.get_by_test_id("generate-form")).to_have_count(0)
    page.locator(f"tr[data-report='{mine}'] a").first.click()
    expect(page.get_by_test_id("report-figures")).to_contain_text("alpha-btc-20x")
