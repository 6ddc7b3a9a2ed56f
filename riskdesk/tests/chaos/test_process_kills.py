"""SIGKILL of the stream process, the worker and the web server, mid-replay of the 2021-05-19 crash.

Three leveraged BTC longs on the simulator; a profile whose liquidation-distance and utilization
limits the crash crosses; a webhook channel to a loopback receiver. The same replay runs twice:
once untouched (the reference), once with each process SIGKILLed and restarted in turn while the
market falls. Asserted on the killed run:
- lost: every (account, rule, subject) the reference alerted on is alerted on, at the same worst level
  (but for exchange events pushed only once, PUSH_ONLY: printed, not asserted);
- duplicated: no (account, rule, subject) has two open alerts, and none has more rows than the reference;
- every delivery row is settled (sent, folded into a sent digest, or skipped because the position
  was gone), and each sent one reached the receiver exactly once under its idempotency key; no key
  arrived that no row holds.
Figures are printed (pytest -s) for docs/RELIABILITY.md.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests

from accounts import services as account_services
from alerts.models import Alert, Delivery, Level, NotificationChannel
from alerts.outbox import channel_set_secrets
from marketdata import live
from marketdata.simulator import SimulatorThread, build_config
from positions.models import Position
from riskdesk.tests.chaos.desk import Desk, Receiver, needs_services, sim_post
from rules.models import RiskProfile

DATA = Path(__file__).resolve().parents[3] / "marketdata/data"
LEVERAGES = (5, 10, 20)
DESK = {
    "accounts": [
        {
            "api_key": f"chaos-key-{i}",
            "api_secret": f"chaos-secret-{i}",
            "position_mode": "one-way",
            "wallet": {"USDT": "10000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "BOTH",
                    "qty": str(D(10000 * leverage) / D(43000) * D("0.9"))[:6],
                    "entry_price": "43000",
                    "leverage": leverage,
                    "margin_type": "isolated" if leverage == 20 else "cross",
                }
            ],
        }
        for i, leverage in enumerate(LEVERAGES)
    ]
}
REPLAY_S = 32  # wall seconds of replay: 12:40 to about 13:28 at 90x, through the 13:09 low
KILLS = (("streams", 6), ("worker", 13), ("web", 20))  # (process, seconds into the replay)
SETTLE_S = 60
RESULTS: dict[str, dict] = {}
# Exchange events pushed once on the user-data socket and never again: one pushed while the stream
# process is down (dead, or restarted and still syncing) cannot be seen by anyone, and a REST
# re-sync has no history of it. The state behind a margin call is judged by the evaluator's own
# rules (margin ratio, liquidation distance), which the comparison does cover.
PUSH_ONLY = {"margin_call"}


# The loss-velocity detector samples the margin balance every 5 s of wall clock into windows the stream
# process holds in memory: at 90x, and across a SIGKILL that empties them, it is judged elsewhere
# (rules/tests/test_anomalies.py; docs/RELIABILITY.md notes the restart gap). Off in this profile.
WINDOWED = ("loss_per_minute_warning", "loss_per_minute_critical", "loss_5m_warning", "loss_5m_critical")


def _desk_rows():
    RiskProfile.objects.create(
        **{name: None for name in WINDOWED if hasattr(RiskProfile, name)},
        name="chaos",
        is_default=True,
        liq_distance_warning=D("0.25"),
        liq_distance_critical=D("0.12"),
        max_utilization_warning=D("0.5"),
        max_utilization_critical=D("0.8"),
        breach_after_n=2,
        hysteresis=D("0.02"),
    )
    accounts = [
        account_services.account_create(name=f"chaos-{i}", api_key=f"chaos-key-{i}", api_secret=f"chaos-secret-{i}")
        for i in range(len(LEVERAGES))
    ]
    return accounts


def _channel(url: str) -> NotificationChannel:
    channel = NotificationChannel(
        name="chaos hook",
        kind="webhook",
        min_level=Level.WARNING,
        settings={"url": url, "timeout_s": 2, "lease_s": 6},
    )
    channel_set_secrets(channel=channel, signing_secret="chaos-signing-secret")
    channel.save()
    return channel


def _poll_web(desk: Desk, account_id: int, user, stop: threading.Event, answers: Counter) -> None:
    """A client reading the risk API all along: the web server is in use when it is killed."""
    while not stop.is_set():
        try:
            answers[desk.api("GET", f"/api/v1/accounts/{account_id}/risk", user, timeout=2).status_code] += 1
        except requests.RequestException:
            answers["refused"] += 1
        time.sleep(0.2)


def _synced(account) -> bool:
    return Position.objects.filter(account=account).exists() and bool(
        (live.feed_get(f"user:{account.id}") or {}).get("connected")
    )


def _settled() -> bool:
    return not Delivery.objects.filter(status__in=("pending", "sending")).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", ["reference", "killed"])
def test_sigkill_mid_replay_loses_and_duplicates_nothing(run, risk_manager, tmp_path):
    needs_services()
    if run == "killed" and "reference" not in RESULTS:
        pytest.skip("the reference run did not complete")
    accounts = _desk_rows()
    receiver = Receiver()
    channel = _channel(receiver.url)
    live.resync_take()
    config = build_config(
        accounts=DESK,
        replay=[str(DATA / "binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv")],
        speed=90.0,
        tick_interval_s=0.1,
        start_at="12:40",
        loop_replay=False,
    )
    answers: Counter = Counter()
    stop_polling = threading.Event()
    with SimulatorThread(config) as sim:
        sim_post(sim, "replay", {"paused": True})
        desk = Desk(sim, tmp_path)
        try:
            for name in ("streams", "worker", "web"):
                desk.start(name)
            desk.wait(lambda: all(_synced(a) for a in accounts), 60, "every account synced")
            poller = threading.Thread(
                target=_poll_web, args=(desk, accounts[0].id, risk_manager, stop_polling, answers), daemon=True
            )
            poller.start()
            sim_post(sim, "replay", {"paused": False})
            started = time.monotonic()
            kills = list(KILLS) if run == "killed" else []
            while time.monotonic() - started < REPLAY_S:
                if kills and time.monotonic() - started >= kills[0][1]:
                    name, _at = kills.pop(0)
                    desk.kill(name)
                    desk.start(name)
                time.sleep(0.1)
            sim_post(sim, "replay", {"paused": True})
            stop_polling.set()
            poller.join(5)
            desk.wait(_settled, SETTLE_S, "every delivery settled")
            time.sleep(2)  # a late duplicate would land now
        finally:
            stop_polling.set()
            desk.stop()
            receiver.close()

    alerts = list(Alert.objects.filter(account__in=accounts).exclude(rule="stream_down"))
    names = {a.id: a.name for a in accounts}
    worst: dict[tuple, int] = {}
    rows: Counter = Counter()
    for alert in alerts:
        triple = (names[alert.account_id], alert.rule, alert.subject)
        rows[triple] += 1
        worst[triple] = max(worst.get(triple, 0), alert.level, alert.notified_level or 0)
    open_rows = Counter((a.account_id, a.rule, a.subject) for a in alerts if a.status == "open")
    deliveries = list(Delivery.objects.filter(channel=channel))  # digests included
    sent = {str(d.idempotency_key) for d in deliveries if d.status == "sent"}
    per_key = receiver.per_key()
    figures = {
        "alerts": len(alerts),
        "deliveries": len(deliveries),
        "sent": len(sent),
        "received": sum(per_key.values()),
        "resent_keys": sorted(k for k, n in per_key.items() if n > 1),
        "unknown_keys": sorted(set(per_key) - sent),
        "unsent": [(d.alert_id, d.event, d.status, d.held_reason) for d in deliveries if d.status != "sent"],
        "web_answers": dict(answers),
        "worst": worst,
        "rows": rows,
        "restarts": dict(desk.starts),
    }
    print(f"\n{run}: {figures}")
    assert alerts, "the crash raised nothing: the limits do not bite"
    assert all(n == 1 for n in open_rows.values()), open_rows
    settled = {"sent", "skipped", "digested"}  # digested: folded into a digest row that was sent
    assert all(d.status in settled and (d.status == "sent" or d.held_reason) for d in deliveries), figures["unsent"]
    assert not figures["resent_keys"] and not figures["unknown_keys"], figures
    assert sent <= set(per_key), sorted(sent - set(per_key))
    if run == "reference":
        RESULTS["reference"] = figures
        return
    reference = RESULTS["reference"]
    lost = {t: lvl for t, lvl in reference["worst"].items() if worst.get(t, 0) < lvl}
    unseen = {t: lvl for t, lvl in lost.items() if t[1] in PUSH_ONLY}
    lost = {t: lvl for t, lvl in lost.items() if t not in unseen}
    # A push-only event may reach one run and not the other (timing): two rows of it are a duplicate.
    duplicated = {t: n for t, n in rows.items() if n > max(reference["rows"].get(t, 0), 1 if t[1] in PUSH_ONLY else 0)}
    print(f"lost {lost} duplicated {duplicated} push-only events not seen {unseen} restarts {desk.starts}")
    assert not lost, (lost, reference["worst"], worst)
    assert not duplicated, (duplicated, reference["rows"], rows)
    assert answers.get(200), answers  # the web server answered around its kill
