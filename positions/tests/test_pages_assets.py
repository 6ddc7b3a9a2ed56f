"""The overview shows each account's balances by asset (issue 17 item 3), as the stream process
published them (marketdata/collateral.py): balance, haircut, margin value, and the collateral in
multi-assets mode."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from marketdata.collateral import ASSETS_KEY
from riskdesk.tests import page_fixtures as pf

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env  # pytest finds fixtures by name in the module

pytestmark = pytest.mark.django_db

PUBLISHED = {
    "multi_assets": True,
    "total": "34849.5101",
    "missing": [],
    "index_ms": 1,
    "assets": [
        {"asset": "BNB", "balance": "10", "index": "600", "haircut": "0.1", "rate": "540", "value": "5400"},
        {"asset": "BTC", "balance": "0.5", "index": "60000", "haircut": "0.05", "rate": "57000", "value": "28500"},
        {"asset": "ETH", "balance": "0", "index": "3000", "haircut": "0.05", "rate": "2850", "value": "0"},
        {"asset": "USDC", "balance": "-50", "index": "0.9998", "haircut": "0.01", "rate": "1.009798",
         "value": "-50.4899"},
        {"asset": "USDT", "balance": "1000", "index": None, "haircut": None, "rate": "1", "value": "1000"},
    ],
}  # fmt: skip


def test_the_overview_shows_balances_by_asset_and_the_collateral(client_for, risk_manager, desk, account_a):
    cache.set(ASSETS_KEY.format(id=account_a.id), PUBLISHED)
    try:
        html = client_for(risk_manager).get("/_overview").content.decode()
    finally:
        cache.delete(ASSETS_KEY.format(id=account_a.id))
    assert 'data-testid="balances-by-asset"' in html and "multi-assets mode" in html
    assert "<th>BTC</th>" in html and "28,500.00" in html and "5.00%" in html
    assert "<th>ETH</th>" not in html  # nothing held
    assert "34,849.51" in html  # the collateral (hand-computed in positions/tests/test_collateral.py)


def test_a_usdt_only_account_shows_no_asset_table(client_for, risk_manager, desk):
    html = client_for(risk_manager).get("/_overview").content.decode()
    assert 'data-testid="balances-by-asset"' not in html
