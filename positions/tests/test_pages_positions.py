"""/positions/ and its live partial: rows from the live state with their bands, filters and sorting,
and a trader never sees another trader's account (404 when they ask for it)."""

from __future__ import annotations

import re

import pytest

from riskdesk.tests import page_fixtures as pf
from rules.tests.test_gate_fixtures import long_btc, publish

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="pos-([^"]+)"', html)


def test_every_visible_position_is_a_row_with_its_band_and_freshness(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/positions/").content.decode()
    a, b = desk["a"].id, desk["b"].id
    assert rows(html) == [f"{a}-BTCUSDT-BOTH", f"{b}-ETHUSDT-BOTH"]  # nearest to liquidation first
    assert 'class="band-danger' in html or 'class="band-warn' in html
    assert "0.5" in html and "50,000.0<" in html and "20×" in html  # BTCUSDT prices to its 0.10 tick
    assert html.count('class="fresh src-live"') == 2


def test_the_partial_renders_the_same_rows_as_the_page(client_for, risk_manager, desk):
    client = client_for(risk_manager)
    page = client.get("/positions/?sort=symbol&dir=desc").content.decode()
    partial = client.get("/positions/_table?sort=symbol&dir=desc").content.decode()
    assert rows(page) == rows(partial) == [f"{desk['b'].id}-ETHUSDT-BOTH", f"{desk['a'].id}-BTCUSDT-BOTH"]
    body = re.search(r'<tbody id="positions-body"[^>]*>(.*?)</tbody>', page, re.S).group(1)

    def without_ages(html: str) -> str:  # the two requests are a few ms apart: only the ages may differ
        return re.sub(r'class="age">[^<]*<', 'class="age"><', html).strip()

    assert without_ages(body) == without_ages(partial)


@pytest.mark.parametrize(
    ("query", "expected"),
    [("side=short", ["b"]), ("side=long", ["a"]), ("symbol=eth", ["b"]), ("band=safe", ["b"])],
)
def test_filters(client_for, risk_manager, desk, query, expected):
    html = client_for(risk_manager).get(f"/positions/_table?{query}").content.decode()
    assert [r.split("-")[0] for r in rows(html)] == [str(desk[k].id) for k in expected]


def test_the_distance_bands_follow_the_thresholds(client_for, risk_manager, gate_env, account_a):
    # entry 50,000 at 20x with 1,500 wallet: liquidation ~47,400; marks put it in each band.
    client = client_for(risk_manager)
    for mark, band in (("60000", "safe"), ("52000", "warn"), ("48500", "danger")):
        publish(
            account_a.id, wallet="1500", positions=[long_btc(entry="50000")], marks={"BTCUSDT": mark, "ETHUSDT": "2500"}
        )
        html = client.get("/positions/_table").content.decode()
        assert f'class="band-{band}' in html, (mark, html)


def test_a_trader_sees_only_their_positions_and_gets_404_for_anothers_account(client_for, trader_a, desk):
    client = client_for(trader_a)
    html = client.get("/positions/").content.decode()
    assert "acct-a" in html and "acct-b" not in html
    assert "acct-b" not in client.get("/positions/_table").content.decode()
    assert client.get(f"/positions/?account={desk['b'].id}").status_code == 404
    assert client.get(f"/positions/_table?account={desk['b'].id}").status_code == 404


def test_an_outsider_is_refused(client_for, outsider, desk):
    for url in ("/positions/", "/positions/_table", "/positions/what-if/"):
        assert client_for(outsider).get(url).status_code == 403, url


def test_without_live_state_rows_come_from_the_saved_positions_and_say_so(
    client_for, risk_manager, gate_env, account_a
):
    from decimal import Decimal as D

    from marketdata.models import Symbol
    from positions.models import Position

    Position.objects.create(
        account=account_a,
        symbol=Symbol.objects.get(name="BTCUSDT"),
        quantity=D("0.2"),
        entry_price=D("40000"),
        mark_price=D("41000"),
        liquidation_price=D("30000"),
    )
    html = client_for(risk_manager).get("/positions/").content.decode()
    assert "NOT LIVE: last saved" in html and "41,000.0<" in html and "26.83%" in html
