"""The overview's risk score table (sortable), HHI and desk concentration panel (issue 17 items 5, 6)."""

from __future__ import annotations

import re

import pytest

from riskdesk.tests import page_fixtures as pf
from rules.models import RiskProfile

client_for, desk, gate_env = pf.client_for, pf.desk, pf.gate_env

pytestmark = pytest.mark.django_db


def _rows(html: str) -> list[str]:
    table = html[html.index('data-testid="risk-scores"') :]
    table = table[: table.index("</table>")]
    return re.findall(r'<tr class="[^"]*" data-account="\d+">\s*<th>([^<]+)</th>', table)


def test_the_overview_ranks_accounts_by_risk_score_and_sorts_by_any_column(client_for, risk_manager, desk):
    # acct-a: 0.5 BTC at 20x on 1,500 (liquidation ~5 % away); acct-b: short 4 ETH on 10,000
    RiskProfile.objects.create(name="d", is_default=True, risk_score_warning=10, max_hhi_warning="0.5")
    client = client_for(risk_manager)
    html = client.get("/").content.decode()
    assert _rows(html) == ["acct-a", "acct-b"]
    assert 'aria-sort="descending"><a href="?score_sort=risk_score">' in html
    assert "row-lvl-20" in html  # acct-a's score is above the profile's warning
    assert _rows(client.get("/?score_sort=name").content.decode()) == ["acct-a", "acct-b"]
    live = client.get("/_overview?score_sort=hhi").content.decode()
    assert 'data-fig="hhi"' in live and "1.000" in live  # one symbol each: HHI 1
    panel = html[html.index('data-testid="desk-concentration"') :]
    assert "BTCUSDT" in panel and "ETHUSDT" in panel and "Limits: warning 50" in panel
