"""/api/v1/risk/var, /api/v1/allocation, /api/v1/allocation/apply: shapes (decimals as strings),
who may read and who may apply, JWT like the other APIs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules.allocation import services
from rules.models import RiskProfile, SymbolLimit
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env, computed = fx.client_for, fx.desk, fx.gate_env, fx.computed

pytestmark = pytest.mark.django_db


def _decimal_strings(values) -> None:
    for v in values:
        assert v is None or isinstance(v, str), v
        if v is not None:
            assert Decimal(v).is_finite()


def test_var_shape_for_a_risk_manager(api_for, risk_manager, computed, desk):
    body = api_for(risk_manager).get("/api/v1/risk/var").json()
    assert body["scope"] == "desk" and body["available"] is True and body["confidence"] == "0.99"
    _decimal_strings(body["desk"].values())
    assert Decimal(body["desk"]["es_historical"]) >= Decimal(body["desk"]["var_historical"]) > 0
    accounts = {a["account_id"]: a for a in body["accounts"]}
    assert set(accounts) == {desk["a"].id, desk["b"].id}
    for a in accounts.values():
        _decimal_strings(
            [a[k] for k in ("var_historical", "es_historical", "var_parametric", "contribution_historical")]
        )
    # component VaR adds up to the desk VaR, by account and by symbol (to the cent)
    desk_var = Decimal(body["desk"]["var_historical"])
    assert abs(sum(Decimal(a["contribution_historical"]) for a in accounts.values()) - desk_var) <= Decimal("0.01")
    assert abs(sum(Decimal(s["contribution_historical"]) for s in body["symbols"]) - desk_var) <= Decimal("0.01")
    assert body["correlation"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert body["correlation"]["matrix"][0][0] == "1"
    crash = body["scenarios"][0]
    assert crash["whatif_url"] == "/positions/what-if/?mode=crash"
    liquidated = {(x["account_id"], x["symbol"]) for x in crash["liquidations"]}
    assert (desk["a"].id, None) in liquidated  # the 20x cross long goes with the crash
    assert (desk["b"].id, "BTCUSDT") in liquidated  # so does the isolated long, and no more than its margin
    assert next(x["loss"] for x in crash["liquidations"] if x["symbol"] == "BTCUSDT") == "260"
    assert body["var_history"][-1]["day"] == "2026-12-07"
    assert "adviser_inputs" not in body


def test_a_trader_gets_their_own_account_only(api_for, trader_a, computed, desk):
    body = api_for(trader_a).get("/api/v1/risk/var").json()
    assert body["scope"] == "own_accounts" and body["desk"] is None and body["symbols"] == []
    assert [a["account_id"] for a in body["accounts"]] == [desk["a"].id]
    assert body["accounts"][0]["contribution_historical"] is None
    assert {x["account_id"] for x in body["scenarios"][0]["liquidations"]} == {desk["a"].id}
    assert set(body["scenarios"][0]["account_loss"]) == {str(desk["a"].id)}
    assert body["correlation"]["symbols"] == ["BTCUSDT"]  # ETH is only account B's
    assert body["var_history"] == []
    assert api_for(trader_a).get("/api/v1/allocation").status_code == 403


def test_refusals(api_for, outsider, computed):
    assert api_for().get("/api/v1/risk/var").status_code == 401
    assert api_for(outsider).get("/api/v1/risk/var").status_code == 403
    assert api_for().get("/api/v1/allocation").status_code == 401


def test_suggestion_shape(api_for, viewer, computed, desk):
    body = api_for(viewer).get("/api/v1/allocation", {"capital": "20000", "method": "inverse_vol"}).json()
    assert body["not_available"] == "" and body["capital"] == "20000" and body["method"] == "inverse_vol"
    assert sum(Decimal(a["capital_suggested"]) for a in body["accounts"]) == Decimal("20000")
    for row in body["limits"]:
        _decimal_strings([row["notional_cap"], row["notional_now"]])
        assert row["leverage_cap"] <= row["tier_max_leverage"]  # never a leverage the tier forbids
        assert row["reason"]


def test_apply_is_for_risk_managers_and_records_the_reason(api_for, risk_manager, viewer, trader_a, computed):
    profile = RiskProfile.objects.get(name="gate-test")
    for user in (viewer, trader_a):
        assert api_for(user).post("/api/v1/allocation/apply", {"profile": profile.id}).status_code == 403
    assert api_for(risk_manager).post("/api/v1/allocation/apply", {"profile": 999999}).status_code == 404
    bad = api_for(risk_manager).post("/api/v1/allocation/apply", {"profile": profile.id, "desk_budget_pct": "0"})
    assert bad.status_code == 400 and "desk_budget_pct" in bad.json()
    assert not SymbolLimit.objects.filter(profile=profile).exists()
    answer = api_for(risk_manager).post("/api/v1/allocation/apply", {"profile": profile.id})
    assert answer.status_code == 200
    assert answer.json() == {"profile": profile.id, "reason": "allocation suggestion of 2026-12-07", "symbols": 2}
    history = api_for(risk_manager).get(f"/api/v1/profiles/{profile.id}/history/").json()
    assert history[0]["reason"] == "allocation suggestion of 2026-12-07" and history[0]["user"] == "rm"


def test_apply_uses_the_suggestion_not_the_posted_numbers(api_for, risk_manager, computed):
    profile = RiskProfile.objects.get(name="gate-test")
    api_for(risk_manager).post("/api/v1/allocation/apply", {"profile": profile.id, "notional_cap": "1e12"})
    suggestion = services.allocation_suggest(
        result=computed,
        params=services.AdviserParams(
            capital=None, desk_budget=Decimal("0.02"), account_budget=Decimal("0.04"), method="risk_parity"
        ),
    )
    wanted = {r["symbol"]: Decimal(r["notional_cap"]) for r in suggestion["limits"]}
    got = {r.symbol: r.max_position_notional_critical for r in SymbolLimit.objects.filter(profile=profile)}
    assert got == wanted
