"""The anomaly detectors against the database: baselines learned from a seeded order log and fills,
ORDER_BYPASSED_GATE's look-up (cache, then order log) and automatic action, the alerts' wording,
the profile's detector levels through the YAML file, and KEY_PERMISSIONS against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.core.cache import cache
from django.test import override_settings

from accounts import services as account_services
from accounts.models import TradingState
from alerts import messages
from alerts.models import Alert, Level
from positions.models import Fill, OrderDecision, OrderLog, OrderSource
from rules import anomalies as an
from rules.anomaly_alerts import bypass_check, finding_raise, key_permissions_check
from rules.approved_orders import approved_add
from rules.baselines import baselines_recompute, watch_load
from rules.models import AccountBaseline, RiskProfile
from rules.yamlio import dump_rules, parse_rules


@pytest.fixture
def account(db):
    return account_services.account_create(name="anomaly-1", api_key="an-key-1", api_secret="an-secret-1")


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def seed_history(account, *, days: int = 5, per_hour: int = 12) -> None:
    """Ordinary trading as the stream records it: NEW and CANCELED rows, fills for the rest."""
    now = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    rows, fills, n = [], [], 0
    for day in range(1, days + 1):
        for hour in (9, 10, 11):
            start = (now - timedelta(days=day)).replace(hour=hour)
            for i in range(per_hour):
                n += 1
                at = start + timedelta(minutes=5 * i)
                common = dict(account=account, source=OrderSource.EXCHANGE, decision=OrderDecision.OBSERVED)
                order = dict(symbol="BTCUSDT", side="BUY", order_type="LIMIT", quantity=D("0.01"), price=D(40_000))
                rows.append(OrderLog(**common, **order, client_order_id=f"rd-{n}", details={"execution": "NEW"}))
                if i % 3 == 0:
                    rows.append(OrderLog(**common, **order, details={"execution": "CANCELED"}))
                else:
                    fills.append(
                        Fill(
                            account=account,
                            symbol="ETHUSDT",
                            side="BUY",
                            order_id=str(n),
                            qty=D("0.2"),
                            price=D(2000),
                            time=at,
                            dedupe_key=f"t{n}",
                        )
                    )
    OrderLog.objects.bulk_create(rows)
    # created_at is auto_now_add: spread the rows over the seeded hours afterwards.
    for i, row in enumerate(OrderLog.objects.filter(account=account).order_by("id")):
        day, rest = divmod(i, 3 * per_hour * 2)
        hour = 9 + (rest // (per_hour * 2))
        at = (now - timedelta(days=day + 1)).replace(hour=hour) + timedelta(minutes=(rest % (per_hour * 2)) * 2)
        OrderLog.objects.filter(pk=row.pk).update(created_at=at)
    Fill.objects.bulk_create(fills)


def test_the_beat_job_learns_each_accounts_baseline_and_a_new_account_keeps_the_desk_defaults(account):
    seed_history(account)
    newcomer = account_services.account_create(name="anomaly-new", api_key="an-key-2", api_secret="an-secret-2")
    assert baselines_recompute() == 1
    row = AccountBaseline.objects.get(account=account)
    assert row.orders_seen == 5 * 3 * 12
    assert sorted(row.symbols) == ["BTCUSDT", "ETHUSDT"]
    assert sum(row.hour_shares[h] for h in (9, 10, 11)) == pytest.approx(1.0) and row.hour_shares[3] == 0
    assert row.notional_p99 == D(400)  # 0.01 x 40,000 limit orders and 0.2 x 2,000 fills
    assert not AccountBaseline.objects.filter(account=newcomer).exists()

    watch = an.AnomalyWatch()
    watch_load(watch)
    assert watch.baseline_of(account.id).learned and watch.baseline_of(account.id).notional_p99 == 400
    assert watch.baseline_of(newcomer.id).learned is False
    assert watch.baseline_of(newcomer.id).notional_p99 == 400  # the desk's median p99


def order(client_id: str, status: str = "NEW") -> dict:
    return {"s": "BTCUSDT", "c": client_id, "i": 42, "S": "BUY", "o": "LIMIT", "q": "0.01", "p": "30000", "X": status}


def test_an_order_the_gate_approved_is_found_in_the_cache_or_the_order_log(account):
    watch = an.AnomalyWatch()
    approved_add(account.id, "rd-cached")
    assert bypass_check(watch=watch, account_id=account.id, order=order("rd-cached")) is None
    OrderLog.objects.create(
        account=account,
        source=OrderSource.API,
        symbol="BTCUSDT",
        side="BUY",
        order_type="LIMIT",
        client_order_id="rd-logged",
        decision=OrderDecision.SUBMITTED,
    )
    assert bypass_check(watch=watch, account_id=account.id, order=order("rd-logged")) is None
    assert not Alert.objects.filter(reason_code=an.BYPASSED).exists()


def test_an_order_nobody_approved_raises_a_critical_alert_that_explains_itself(account):
    watch = an.AnomalyWatch()
    # Seen on the exchange is not approved: the stream's own OBSERVED row must not count.
    OrderLog.objects.create(
        account=account,
        source=OrderSource.EXCHANGE,
        symbol="BTCUSDT",
        side="BUY",
        order_type="LIMIT",
        client_order_id="web_x1",
        decision=OrderDecision.OBSERVED,
    )
    assert bypass_check(watch=watch, account_id=account.id, order=order("web_x1")) is not None
    alert = Alert.objects.get(reason_code=an.BYPASSED)
    assert alert.level == Level.CRITICAL and alert.rule == "order_bypassed_gate" and alert.subject == "web_x1"
    assert alert.details["baseline"] == {"approved_by_gate": False}
    assert alert.details["observed"]["order"]["c"] == "web_x1"
    assert "web_x1" in alert.message and "around the risk gate" in alert.message
    account.refresh_from_db()
    assert account.trading_state == TradingState.ACTIVE  # no action unless the profile says so


def test_the_profile_can_halt_the_account_on_a_bypassed_order(account):
    RiskProfile.objects.create(name="strict", is_default=True, bypass_action="halted")
    watch = an.AnomalyWatch()
    watch_load(watch)
    bypass_check(watch=watch, account_id=account.id, order=order("web_x2"))
    account.refresh_from_db()
    assert account.trading_state == TradingState.HALTED


@pytest.mark.parametrize("detector", an.DETECTORS)
def test_every_detector_renders_in_both_languages(account, detector):
    finding = an.Finding(
        account.id,
        detector,
        an.WARNING,
        "BTCUSDT",
        5.0,
        3.0,
        {
            "measure": "orders",
            "observed": {
                "order": order("web"),
                "count_10s": 9,
                "symbol": "BTCUSDT",
                "problems": ["withdrawals_enabled"],
            },
            "baseline": {"median": 1, "mad": 1, "notional_p99": 400},
        },
    )
    finding_raise(finding)
    alert = Alert.objects.get(reason_code=detector)
    assert alert.details["detector"] == detector and "baseline" in alert.details and "observed" in alert.details
    for language in ("en", "zh-hans"):
        assert messages.render("anomaly", alert.message_params, language)
    assert messages.rule_name(detector.lower()) != detector.lower()


def test_detector_levels_go_through_the_yaml_file():
    values = {"order_burst_warning": D(6), "order_burst_critical": D(12), "bypass_action": "cancel_order"}
    text = dump_rules(values)
    assert "anomaly:" in text and "order_burst_warning: 6" in text and "bypass_action: cancel_order" in text
    parsed = parse_rules(text, exchange_max_leverage=125)
    assert parsed["order_burst_critical"] == 12 and parsed["bypass_action"] == "cancel_order"
    with pytest.raises(ValueError, match="bypass_action"):
        parse_rules("risk_control:\n  actions: {bypass_action: explode}\n", exchange_max_leverage=125)


def test_a_new_profile_watches_with_the_default_levels(db):
    profile = RiskProfile.objects.create(name="fresh")
    levels = an.Levels.from_values(profile.limit_values())
    assert levels.by_limit["bypassed_orders"] == (None, 1.0)
    assert levels.by_limit["order_burst"] == (8.0, 16.0)
    assert levels.by_limit["loss_5m"] == (0.05, 0.1)


@pytest.mark.django_db(transaction=True)
def test_key_permissions_reads_the_simulators_api_restrictions():
    from marketdata.simulator import SimulatorThread, build_config

    one = account_services.account_create(name="keys-1", api_key="keys-1", api_secret="s-1")
    two = account_services.account_create(name="keys-2", api_key="keys-2", api_secret="s-2")
    accounts = {
        "accounts": [
            {"api_key": f"keys-{n}", "api_secret": f"s-{n}", "wallet": {"USDT": "1000"}, "positions": []}
            for n in (1, 2)
        ]
    }
    with SimulatorThread(build_config(accounts=accounts, marks={"BTCUSDT": "40000"})) as sim:
        sim.call(lambda s: setattr(s.exchange, "api_restrictions", {"keys-2": {"enableWithdrawals": True}}))
        with override_settings(BINANCE_FUTURES_REST_URL=sim.base_url, BINANCE_FUTURES_WS_URL=sim.ws_url):
            assert key_permissions_check() == 1
    assert not Alert.objects.filter(account=one).exists()
    alert = Alert.objects.get(account=two, reason_code=an.KEY_PERMISSIONS)
    assert alert.level == Level.WARNING and alert.details["observed"]["enableWithdrawals"] is True
    assert alert.details["observed"]["problems"] == ["withdrawals_enabled"]


@pytest.mark.django_db(transaction=True)
def test_the_profile_can_cancel_a_bypassed_order_on_the_exchange():
    import asyncio

    from marketdata.exchange import BinanceFutures
    from marketdata.simulator import SimulatorThread, build_config

    account = account_services.account_create(name="cancel-1", api_key="cancel-1", api_secret="s-1")
    RiskProfile.objects.create(name="cancel", is_default=True, bypass_action="cancel_order")
    accounts = {"accounts": [{"api_key": "cancel-1", "api_secret": "s-1", "wallet": {"USDT": "1000"}, "positions": []}]}
    with SimulatorThread(build_config(accounts=accounts, marks={"BTCUSDT": "40000"})) as sim:

        async def exchange(call):
            async with BinanceFutures(
                api_key="cancel-1", api_secret="s-1", rest_url=sim.base_url, ws_url=sim.ws_url
            ) as ex:
                return await call(ex)

        placed = asyncio.run(
            exchange(
                lambda ex: ex.place_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity=D("0.01"),
                    price=D(30000),
                    newClientOrderId="web_manual",
                )
            )
        )
        watch = an.AnomalyWatch()
        watch_load(watch)
        seen = {**order("web_manual"), "i": placed["orderId"]}
        with override_settings(BINANCE_FUTURES_REST_URL=sim.base_url, BINANCE_FUTURES_WS_URL=sim.ws_url):
            assert bypass_check(watch=watch, account_id=account.id, order=seen).action == "cancel_order"
        assert asyncio.run(exchange(lambda ex: ex.open_orders())) == []
    assert Alert.objects.get(account=account, reason_code=an.BYPASSED).level == Level.CRITICAL
    from rules.gate import order_log_flush

    order_log_flush()  # the gate writes its log rows in batches
    cancel = OrderLog.objects.get(account=account, source=OrderSource.AUTO_ACTION)
    assert cancel.decision == OrderDecision.SUBMITTED
