"""The desk in a real browser (headless Debian Chromium via Playwright) against a real server:
uvicorn serving riskdesk.asgi with the stream engine in-process, fed by the exchange simulator.

Each test signs in through the sign-in page, watches the console (no errors on any page) and,
where it matters, the WebSocket frames themselves. See riskdesk/tests/browser_fixtures.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from riskdesk.tests import browser_fixtures as bf
from rules.tests.test_gate_fixtures import sim_account

live_desk, browser, console, open_page = bf.live_desk, bf.browser, bf.console, bf.open_page  # fixtures by name

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

PAGES = ["/", "/positions/", "/alerts/", "/accounts/", "/rules/", "/positions/what-if/?mode=pct&symbol=ALL&shock=-10"]


def mark_cell(page, account_id: int, symbol: str, side: str = "BOTH"):
    return page.locator(f"#pos-{account_id}-{symbol}-{side} [data-col=mark]")


def test_every_page_renders_live_for_a_risk_manager_without_console_errors(open_page, live_desk):
    page = open_page("risk")
    for path in PAGES:
        page.goto(live_desk.url + path)
        bf.wait_live(page)
        expect(page.locator("#status [data-feed=market]")).to_be_visible()
        expect(page.locator("#status .stale-banner")).to_have_count(0, timeout=10000)  # every feed is live
    page.goto(live_desk.url + "/")
    bf.wait_live(page)
    expect(page.locator(".card")).to_have_count(4)
    expect(page.locator(f"#gauge-{live_desk.account_ids['alpha-btc-20x']} canvas")).to_be_visible()
    expect(page.locator("#exposure-chart canvas")).to_be_visible()
    expect(page.locator(".card .fresh.src-live").first).to_be_visible()


def test_a_tick_changes_the_positions_page_within_a_second(open_page, live_desk):
    page = open_page("risk")
    page.goto(live_desk.url + "/positions/")
    bf.wait_live(page)
    alpha = live_desk.account_ids["alpha-btc-20x"]
    expect(mark_cell(page, alpha, "BTCUSDT")).to_be_visible()
    for price, shown in (("50321.4", "50,321.4"), ("49876.5", "49,876.5")):
        live_desk.set_mark("BTCUSDT", price)
        # Engine flush (0.5 s) + push + one partial fetch: on the page within a second of the tick.
        # BTCUSDT's tick is 0.10: prices show to the tick.
        expect(mark_cell(page, alpha, "BTCUSDT")).to_have_text(shown, timeout=1000)
    # The same row, re-rendered by the same partial: the liquidation band and the freshness came along.
    row = page.locator(f"#pos-{alpha}-BTCUSDT-BOTH")
    expect(row).to_have_class(re.compile(r"band-(safe|warn|danger)"))
    expect(row.locator(".fresh.src-live")).to_be_visible()


def test_after_a_server_restart_the_page_reconnects_and_catches_up(open_page, live_desk, console):
    page = open_page("risk")
    page.goto(live_desk.url + "/positions/")
    bf.wait_live(page)
    alpha = live_desk.account_ids["alpha-btc-20x"]
    outage_started = time.monotonic()
    live_desk.server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=5000)
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    live_desk.set_mark("BTCUSDT", "48765.4")  # happens while the desk is down
    live_desk.server.start()
    expect(mark_cell(page, alpha, "BTCUSDT")).to_have_text("48,765.4", timeout=30000)
    bf.wait_live(page)
    # While the server was down the browser logged failed requests and socket attempts: expected.
    console.excused.append((outage_started, time.monotonic()))
    assert page.evaluate("window.desk.reconnects") >= 1
    live_desk.set_mark("BTCUSDT", "48800")  # and the new socket carries ticks again
    expect(mark_cell(page, alpha, "BTCUSDT")).to_have_text("48,800.0", timeout=2000)


def test_a_dropped_socket_reconnects_and_catches_up(open_page, live_desk):
    page = open_page("risk")
    page.goto(live_desk.url + "/positions/")
    bf.wait_live(page)
    alpha = live_desk.account_ids["alpha-btc-20x"]
    # Hold the reconnect back long enough to change the market while the page is deaf.
    page.evaluate("window.desk.socket.close()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=3000)
    live_desk.set_mark("BTCUSDT", "49111.1")
    expect(mark_cell(page, alpha, "BTCUSDT")).to_have_text("49,111.1", timeout=10000)
    bf.wait_live(page)


def test_a_trader_never_sees_another_traders_account_on_a_page_or_on_the_socket(open_page, live_desk):
    ids = live_desk.account_ids
    mine, theirs = {ids["beta-hedge"]}, {ids["alpha-btc-20x"], ids["alpha-eth"], ids["gamma-isolated"]}
    frames: list[dict] = []
    page = open_page(None)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))))
    bf.sign_in(page, live_desk.url, "bob")
    for path in PAGES:
        page.goto(live_desk.url + path)
        bf.wait_live(page)
        html = page.content()
        assert "beta-hedge" in html, path
        assert not any(name in html for name in ("alpha-btc-20x", "alpha-eth", "gamma-isolated")), path
    for other in theirs:
        for path in (
            f"/positions/?account={other}",
            f"/positions/_table?account={other}",
            f"/alerts/_table?account={other}",
            f"/accounts/{other}/kill/confirm",
        ):
            assert page.request.get(live_desk.url + path).status == 404, path
    live_desk.set_mark("BTCUSDT", "50500")  # moves alice's account and bob's
    live_desk.set_mark("ETHUSDT", "2480")  # moves alice's and gamma's only
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(f.get("type") == "risk.changed" for f in frames):
        page.wait_for_timeout(100)
    page.wait_for_timeout(1500)
    heard = {a["account_id"] for f in frames if f["type"] == "risk.changed" for a in f["accounts"]}
    heard |= {f["alert"]["account_id"] for f in frames if f["type"] == "alert.changed"} - {None}
    assert heard and heard <= mine, (heard, len(frames))


def test_an_outsider_is_refused_and_a_stranger_is_sent_to_sign_in(browser, live_desk):
    context = browser.new_context()  # no console watch: a 403 document is logged as a failed load
    page = context.new_page()
    page.goto(live_desk.url + "/positions/")
    assert page.url.startswith(live_desk.url + "/login/?next=/positions/")
    page.fill("input[name=username]", "outsider")
    page.fill("input[name=password]", bf.PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("No access")
    assert page.request.get(live_desk.url + "/positions/_table").status == 403
    context.close()


def test_the_kill_switch_asks_with_the_dry_run_plan_then_acts(open_page, live_desk):
    gamma = live_desk.account_ids["gamma-isolated"]
    page = open_page("risk")
    page.goto(live_desk.url + "/accounts/")
    bf.wait_live(page)
    page.click(f"[data-testid=kill-{gamma}]")
    dialog = page.locator("dialog#dialog")
    expect(dialog).to_be_visible()
    plan = dialog.locator("[data-testid=plan-close]")
    expect(plan).to_contain_text("ETHUSDT")
    expect(plan).to_contain_text("BUY MARKET reduceOnly")
    assert sim_account(live_desk.sim, "demo-key-4")["positions"], "the dry run must not act"
    dialog.locator("input[name=reason]").fill("browser drill")
    dialog.locator("input[name=flatten]").check()
    dialog.locator("[data-testid=confirm-act]").click()
    page.wait_for_url(live_desk.url + "/accounts/")
    expect(page.locator(".messages")).to_contain_text("kill switch done")
    expect(page.locator(f"#account-{gamma} [data-testid=state]")).to_have_text("Halted")
    assert sim_account(live_desk.sim, "demo-key-4")["positions"] == []


@pytest.mark.parametrize(
    ("locale", "nav", "lang"),
    [("en-US", ["Overview", "Positions", "Alerts", "Accounts", "Rules", "What-if", "Allocation", "Reports"], "en"),
     ("zh-CN", ["总览", "持仓", "告警", "账户", "规则", "压力测试", "资金分配", "报告"], "zh-hans")],
)  # fmt: skip
def test_both_languages_render_from_the_browsers_language(open_page, live_desk, locale, nav, lang):
    page = open_page("viewer", locale=locale)
    for path in PAGES:
        page.goto(live_desk.url + path)
        bf.wait_live(page)
        assert page.get_attribute("html", "lang") == lang
        expect(page.locator(".main-nav a")).to_have_text(nav)


def test_the_language_switcher_changes_the_language(open_page, live_desk):
    page = open_page("viewer")
    page.goto(live_desk.url + "/positions/")
    page.select_option("#lang-select", "zh-hans")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("持仓")
    bf.wait_live(page)
    page.select_option("#lang-select", "en")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("Positions")


# --------------------------------------------------------------------------- liquidations (issue 13)

SEED_LIQUIDATION = """
import json, time
from accounts.models import ExchangeAccount
from positions import ledger
account = ExchangeAccount.objects.get(name={name!r})
t = int(time.time() * 1000)
event = {{"e": "ORDER_TRADE_UPDATE", "E": t, "T": t, "o": {{
    "s": "ETHUSDT", "c": f"autoclose-{{t}}000001", "S": "SELL", "o": "LIQUIDATION", "q": "4", "p": "0",
    "ap": "2215.37", "x": "TRADE", "X": "FILLED", "i": 777001, "l": "4", "z": "4", "L": "2215.37",
    "N": "USDT", "n": "0", "T": t, "t": 0, "ps": "BOTH", "rp": "-938.52", "R": True}}}}
before = {{"liquidation_price": "2216.12", "liquidation_distance": "0.0031", "mark": "2223", "qty": "4",
          "entry_price": "2450"}}
alert = ledger.liquidation_record(account_id=account.id, event=event, before=before)
print(json.dumps({{"alert": alert.id, "time_ms": t}}))
"""


def seed_liquidation(live_desk, name: str) -> dict:
    """A liquidation recorded through the ledger's service in the server's database, as the stream
    sink records one (the live simulator's crash replay is the end-to-end test's business)."""
    out = live_desk.manage("shell", "-c", SEED_LIQUIDATION.format(name=name))
    return json.loads(out.strip().splitlines()[-1])


def gauge_bands(page, account_id: int) -> list:
    return page.evaluate(
        """(id) => echarts.getInstanceByDom(document.getElementById(`gauge-${id}`))
            .getOption().series[0].axisLine.lineStyle.color.map((band) => band[1])""",
        account_id,
    )


def test_a_liquidation_shows_on_the_overview_and_the_positions_page(open_page, live_desk):
    eth = live_desk.account_ids["alpha-eth"]
    page = open_page("risk")
    page.goto(live_desk.url + "/")
    bf.wait_live(page)
    assert len(gauge_bands(page, eth)) == 3  # safe, warn, danger before
    seeded = seed_liquidation(live_desk, "alpha-eth")
    page.goto(live_desk.url + "/")
    bf.wait_live(page)
    card = page.locator(f'.card[data-account="{eth}"]')
    expect(card).to_have_class(re.compile("is-liquidated"))
    expect(card.locator(".liquidated-mark")).to_have_text(
        re.compile(r"^Liquidated at \d\d:\d\d:\d\d \(-938\.52 USDT\)$")
    )
    # Never green: a liquidated account's gauge is one red band, also after a live update redraws it.
    danger = page.evaluate("getComputedStyle(document.body).getPropertyValue('--danger').trim()")
    expect(page.locator(f"#gauge-{eth}")).to_have_attribute("data-liquidated", "1")
    assert gauge_bands(page, eth) == [danger]
    page.evaluate("window.desk.refreshAll()")
    page.wait_for_timeout(800)
    assert gauge_bands(page, eth) == [danger]
    page.goto(live_desk.url + "/accounts/")
    bf.wait_live(page)
    expect(page.locator(f"#account-{eth} .liquidated-mark")).to_contain_text("Liquidated at")
    page.goto(live_desk.url + "/positions/")
    bf.wait_live(page)
    closed = page.locator("[data-testid=closed-today] tbody tr.is-liquidated")
    expect(closed).to_have_count(1)
    expect(closed.locator("[data-col=reason]")).to_have_text("Liquidated")
    expect(closed.locator("[data-col=realized]")).to_have_text("-938.52")
    expect(closed).to_contain_text("2,216.12")  # the desk's last liquidation price before the event
    # A risk manager acknowledges the LIQUIDATED alert: the mark goes, the closed row stays.
    live_desk.manage(
        "shell", "-c",
        "from alerts.models import Alert; from alerts.services import alert_acknowledge; "
        "from accounts.models import User; "
        f"alert_acknowledge(alert=Alert.objects.get(pk={seeded['alert']}), by=User.objects.get(username='risk'))",
    )  # fmt: skip
    page.goto(live_desk.url + "/")
    bf.wait_live(page)
    expect(page.locator(f'.card[data-account="{eth}"] .liquidated-mark')).to_have_count(0)


SEED_ACTION = """
from accounts.models import ExchangeAccount
from rules.models import RiskAction
account = ExchangeAccount.objects.get(name={name!r})
plan = {{"kind": "reduce_positions", "trigger": "margin_ratio", "cancel_orders": True, "trading_state": None,
        "orders": [{{"symbol": "BTCUSDT", "side": "SELL", "position_side": "LONG", "quantity": "0.1",
                     "type": "MARKET", "reduce_only": True}}], "figures": {{}}}}
print(RiskAction.objects.create(account=account, trigger="margin_ratio", kind="reduce_positions", plan=plan).id)
"""


def test_a_risk_manager_dismisses_a_proposed_action_with_a_reason_and_a_trader_only_reads(open_page, live_desk):
    action = int(live_desk.manage("shell", "-c", SEED_ACTION.format(name="beta-hedge")).strip().splitlines()[-1])
    trader = open_page("bob")
    trader.goto(live_desk.url + "/accounts/")
    bf.wait_live(trader)
    expect(trader.locator(f"#action-{action}")).to_be_visible()
    expect(trader.locator(f"[data-testid=review-{action}]")).to_have_count(0)
    assert trader.request.get(f"{live_desk.url}/accounts/actions/{action}/review").status == 404
    page = open_page("risk")
    page.goto(live_desk.url + "/accounts/")
    bf.wait_live(page)
    page.click(f"[data-testid=review-{action}]")
    dialog = page.locator("dialog#dialog")
    expect(dialog.locator("[data-testid=action-orders]")).to_contain_text("SELL MARKET reduceOnly")
    dialog.locator("[data-testid=action-reason]").fill("hedged elsewhere")
    dialog.locator("[data-testid=action-dismiss]").click()
    page.wait_for_url(live_desk.url + "/accounts/")
    row = page.locator(f"[data-testid=actions-history] #action-{action}")
    expect(row).to_contain_text("Dismissed")
    expect(row).to_contain_text("risk")
    expect(row).to_contain_text("hedged elsewhere")
