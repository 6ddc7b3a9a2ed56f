"""/accounts/: trading state, and REDUCING / HALTED / kill switch behind a confirmation that shows
the gate's dry-run plan; the sign-in and sign-out pages."""

from __future__ import annotations

import pytest

from accounts.models import TradingState
from marketdata.simulator import SimulatorThread
from riskdesk.tests import page_fixtures as pf
from rules.tests.test_gate_fixtures import sim_account, sim_config

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


@pytest.fixture
def exchange(settings, desk):
    """acct-a on the simulator: long 0.5 BTC and short 4 ETH."""
    positions = [
        {"symbol": "BTCUSDT", "side": "BOTH", "qty": "0.5", "entry_price": "49000", "leverage": 20},
        {"symbol": "ETHUSDT", "side": "BOTH", "qty": "-4", "entry_price": "2600", "leverage": 10},
    ]
    thread = SimulatorThread(sim_config(positions_a=positions, wallet_a="20000"))
    settings.BINANCE_FUTURES_REST_URL = thread.start()
    settings.BINANCE_FUTURES_WS_URL = thread.ws_url
    yield thread
    thread.stop()


def test_the_kill_confirmation_shows_the_dry_run_plan_and_changes_nothing(client_for, risk_manager, desk, exchange):
    account = desk["a"]
    html = client_for(risk_manager).get(f"/accounts/{account.id}/kill/confirm").content.decode()
    assert 'data-testid="plan-close"' in html
    assert "SELL MARKET reduceOnly" in html and "BUY MARKET reduceOnly" in html
    account.refresh_from_db()
    assert account.trading_state == TradingState.ACTIVE
    assert len(sim_account(exchange)["positions"]) == 2


def test_the_confirmation_comes_as_a_partial_for_the_dialog(client_for, risk_manager, desk, exchange):
    response = client_for(risk_manager).get(f"/accounts/{desk['a'].id}/halted/confirm", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'data-testid="confirm"' in html


def test_confirming_the_kill_with_flatten_halts_and_closes_everything(client_for, risk_manager, desk, exchange):
    account = desk["a"]
    client = client_for(risk_manager)
    response = client.post(f"/accounts/{account.id}/kill", {"reason": "drill", "flatten": "on"})
    assert response.status_code == 302 and response["Location"] == "/accounts/"
    account.refresh_from_db()
    assert account.trading_state == TradingState.HALTED and account.trading_state_reason == "drill"
    assert sim_account(exchange)["positions"] == []
    assert "kill switch done" in client.get("/accounts/").content.decode()


def test_when_the_exchange_does_not_answer_the_page_says_so_and_the_kill_still_halts(
    client_for, risk_manager, desk, settings
):
    from riskdesk.tests.browser_fixtures import free_port

    settings.BINANCE_FUTURES_REST_URL = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    account = desk["a"]
    client = client_for(risk_manager)
    html = client.get(f"/accounts/{account.id}/kill/confirm").content.decode()
    assert "The exchange did not answer the dry run" in html
    response = client.post(f"/accounts/{account.id}/kill", {"reason": "exchange down"}, follow=True)
    assert "halted, but the exchange failed" in response.content.decode()
    account.refresh_from_db()
    assert account.trading_state == TradingState.HALTED


@pytest.mark.parametrize(("action", "state"), [("reducing", "REDUCING"), ("halted", "HALTED")])
def test_a_risk_manager_sets_the_trading_state(client_for, risk_manager, desk, action, state):
    account = desk["a"]
    response = client_for(risk_manager).post(f"/accounts/{account.id}/{action}", {"reason": "desk call"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.trading_state == state and account.trading_state_reason == "desk call"
    html = client_for(risk_manager).get("/accounts/_table").content.decode()
    assert f'data-testid="state">{TradingState(state).label}' in html


def test_traders_and_viewers_cannot_act_or_see_the_confirmation(client_for, trader_a, viewer, desk):
    account = desk["a"]
    for user in (trader_a, viewer):
        client = client_for(user)
        assert "/kill/confirm" not in client.get("/accounts/").content.decode()
        assert client.get(f"/accounts/{account.id}/kill/confirm").status_code == 404
        assert client.post(f"/accounts/{account.id}/halted", {"reason": "x"}).status_code == 404
    account.refresh_from_db()
    assert account.trading_state == TradingState.ACTIVE


def test_a_trader_sees_only_their_accounts(client_for, trader_a, desk):
    for url in ("/accounts/", "/accounts/_table"):
        html = client_for(trader_a).get(url).content.decode()
        assert "acct-a" in html and "acct-b" not in html, url


def test_an_outsider_is_refused(client_for, outsider, desk):
    client = client_for(outsider)
    assert client.get("/accounts/").status_code == 403
    assert client.get("/accounts/_table").status_code == 403
    assert client.post(f"/accounts/{desk['a'].id}/halted", {"reason": "x"}).status_code == 403


def test_an_unknown_action_is_404(client_for, risk_manager, desk):
    assert client_for(risk_manager).get(f"/accounts/{desk['a'].id}/explode/confirm").status_code == 404


def test_sign_in_lands_on_the_overview_and_sign_out_returns_to_sign_in(client_for, trader_a):
    from conftest import PASSWORD

    client = client_for()
    assert "Sign in to the desk" in client.get("/login/").content.decode()
    response = client.post("/login/", {"username": "trader_a", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_a_wrong_password_says_so(client_for, trader_a):
    html = client_for().post("/login/", {"username": "trader_a", "password": "nope"}).content.decode()
    assert "do not match" in html
