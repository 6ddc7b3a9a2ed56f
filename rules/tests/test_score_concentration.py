"""The risk score, the HHI limit and desk-wide concentration (issue 17 items 5 and 6)."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from positions.book import BookPosition, RiskBook
from rules import score
from rules.levels import CRITICAL, WARNING, DayState, Latch, Limits, evaluate
from rules.tests import test_gate_fixtures as gf
from rules.tests.test_gate_fixtures import TABLES

gate_env = gf.gate_env  # pytest finds fixtures by name in the module


def _risk(**kw):
    base = {
        "complete": True,
        "margin_balance": D(10000),
        "gross_exposure": D(0),
        "margin_ratio": D(0),
        "herfindahl": D(0),
    }
    return SimpleNamespace(**{**base, **kw})


def test_the_score_by_hand():
    # margin ratio 0.5 -> 0.5; nearest liquidation 15 % -> 1 - 0.15/0.30 = 0.5; leverage 50,000/10,000 = 5x
    # -> 5/20 = 0.25; HHI 0.5; drawdown 10 % -> 0.5; one critical anomaly -> 1/2 = 0.5
    risk = _risk(gross_exposure=D(50000), margin_ratio=D("0.5"), herfindahl=D("0.5"))
    positions = [SimpleNamespace(liquidation_distance=D("0.15")), SimpleNamespace(liquidation_distance=None)]
    day = SimpleNamespace(peak_equity=D(10000) / D("0.9"))
    result = score.risk_score(risk=risk, positions=positions, day=day, anomalies=score.anomaly_load([CRITICAL]))
    parts = {k: v.quantize(D("0.0001")) for k, v in result.parts.items()}
    assert parts == {
        "margin_ratio": D("0.5000"),
        "liq_distance": D("0.5000"),
        "leverage": D("0.2500"),
        "concentration": D("0.5000"),
        "drawdown": D("0.5000"),
        "anomalies": D("0.5000"),
    }
    # (30x0.5 + 20x0.5 + 15x0.25 + 10x0.5 + 15x0.5 + 10x0.5) / 100 x 100 = 46.25
    assert result.score == D("46.25")
    # configurable weights: margin ratio only
    only = score.risk_score(risk=risk, positions=positions, day=day, weights={"margin_ratio": 1})
    assert only.score == D("50.00")


def test_the_score_bounds_and_an_incomplete_account():
    calm = score.risk_score(risk=_risk(), positions=[])
    assert calm.score == D("0.00")
    worst = score.risk_score(
        risk=_risk(margin_balance=D(-5), gross_exposure=D(100), margin_ratio=D(5), herfindahl=D(1)),
        positions=[SimpleNamespace(liquidation_distance=D("-0.01"))],
        day=SimpleNamespace(peak_equity=D(100)),
        anomalies=D(9),
    )
    assert worst.score == D("100.00")
    assert score.risk_score(risk=_risk(complete=False), positions=[]) is None
    assert score.weights_error({"margin_ratio": -1}) and score.weights_error({"nope": 1})
    assert score.weights_error({"margin_ratio": 0}) and score.weights_error(dict(score.DEFAULT_WEIGHTS)) is None


def _book() -> RiskBook:
    book = RiskBook()
    for name, table in TABLES.items():
        book.set_brackets(name, table)
    book.apply_marks({"BTCUSDT": D(50000), "ETHUSDT": D(2500)}, ts=1)
    book.set_wallet(1, D(20000))
    book.upsert_position(1, BookPosition("BTCUSDT", "BOTH", D("0.9"), D(50000), 10))  # 45,000
    book.upsert_position(1, BookPosition("ETHUSDT", "BOTH", D("2"), D(2500), 10))  # 5,000
    return book


def test_the_evaluator_alerts_on_the_hhi_and_on_the_risk_score():
    book = _book()
    risk = book.account(1)
    assert risk.herfindahl == D("0.82")  # 0.9^2 + 0.1^2
    limits = Limits.from_values(
        {"max_hhi_warning": D("0.8"), "risk_score_warning": D(10), "risk_score_critical": D(90), "breach_after_n": 1}
    )
    day = DayState("d", D(20000), D(20000))
    changes = evaluate(latch=Latch(), limits=limits, risk=risk, positions=book.positions(1), day=day)
    got = {(c.rule, c.level) for c in changes}
    assert got == {("hhi", WARNING), ("risk_score", WARNING)}
    value = next(c.measurement.value for c in changes if c.rule == "risk_score")
    assert value == score.risk_score(risk=risk, positions=book.positions(1), day=day).score


def test_desk_concentration_by_hand():
    rows = score.desk_concentration(
        [{"BTCUSDT": D(60), "ETHUSDT": D(20)}, {"BTCUSDT": D(10)}, {"SOLUSDT": D(10), "ETHUSDT": D(0)}]
    )
    assert [(r.symbol, r.share, r.accounts) for r in rows] == [
        ("BTCUSDT", D("0.7"), 2),
        ("ETHUSDT", D("0.2"), 1),
        ("SOLUSDT", D("0.1"), 1),
    ]
    assert score.desk_concentration([{}, {"BTCUSDT": D(0)}]) == []


@pytest.mark.django_db
def test_the_desk_concentration_alert_opens_moves_and_clears_without_an_account(settings):
    from alerts.models import Alert, AlertStatus
    from rules.concentration import desk_concentration_check

    settings.DESK_CONCENTRATION_WARNING, settings.DESK_CONCENTRATION_CRITICAL = "0.5", "0.7"
    rows = score.desk_concentration([{"BTCUSDT": D(80), "ETHUSDT": D(20)}])
    assert desk_concentration_check(rows=rows) == {"BTCUSDT": CRITICAL}
    alert = Alert.objects.get(rule="desk_concentration")
    assert alert.account_id is None and alert.subject == "BTCUSDT" and alert.level == CRITICAL
    assert alert.value == D("0.8") and alert.limit == D("0.7") and alert.details["accounts"] == 1
    rows = score.desk_concentration([{"BTCUSDT": D(60), "ETHUSDT": D(40)}])
    assert desk_concentration_check(rows=rows) == {"BTCUSDT": WARNING}
    assert Alert.objects.get(pk=alert.pk).level == WARNING
    rows = score.desk_concentration([{"BTCUSDT": D(40), "ETHUSDT": D(40), "SOLUSDT": D(20)}])
    assert desk_concentration_check(rows=rows) == {}
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.RESOLVED


@pytest.mark.django_db
def test_the_check_reads_the_live_desk(gate_env, account_a, account_b, settings):
    from rules.concentration import desk_concentration_check, desk_exposures
    from rules.tests.test_gate_fixtures import publish

    publish(account_a.id, positions=[BookPosition("BTCUSDT", "BOTH", D("1"), D(50000), 10)])
    publish(account_b.id, positions=[BookPosition("BTCUSDT", "BOTH", D("-1"), D(50000), 10)])
    exposures, missing = desk_exposures()
    assert missing == 0 and len(exposures) == 2
    settings.DESK_CONCENTRATION_WARNING, settings.DESK_CONCENTRATION_CRITICAL = "0.5", "0.9"
    assert desk_concentration_check() == {"BTCUSDT": CRITICAL}  # one symbol: the whole desk


def test_the_quiet_screen_counts_the_anomaly_load_like_the_exact_path():
    from rules.quiet_screen import Screen, evaluate_accounts

    book = _book()
    day = DayState("d", D(20000), D(20000))
    calm = score.risk_score(risk=book.account(1), positions=book.positions(1), day=day).score
    # the limit sits between the score without and with one critical anomaly (+5 points)
    limits = {1: Limits.from_values({"risk_score_warning": calm + 2, "breach_after_n": 1})}

    def run(anomalies):
        latches, days, hot = {}, {1: DayState("d", D(20000), D(20000))}, set()
        out = list(
            evaluate_accounts(
                book=book,
                account_ids=[1],
                limits=limits,
                latches=latches,
                days=days,
                day="d",
                hot=hot,
                screen=Screen(limits),
                anomalies=anomalies,
            )
        )
        return [(c.rule, c.level) for _, changes, _ in out for c in changes], len(out)

    assert run({}) == ([], 0)  # quiet: skipped by the screen
    assert run({1: score.anomaly_load([CRITICAL])}) == ([("risk_score", WARNING)], 1)


def test_the_desk_settings_are_checked_at_start(settings):
    from rules.apps import desk_settings_check

    assert desk_settings_check() == []
    settings.RISK_SCORE_WEIGHTS = {"margin_ratio": 1, "vibes": 2}
    settings.DESK_CONCENTRATION_WARNING, settings.DESK_CONCENTRATION_CRITICAL = "0.9", "0.7"
    assert [e.id for e in desk_settings_check()] == ["rules.E001", "rules.E003"]
    settings.RISK_SCORE_WEIGHTS, settings.DESK_CONCENTRATION_CRITICAL = None, "70"
    assert [e.id for e in desk_settings_check()] == ["rules.E002"]
