"""The anomaly detectors' findings (rules.anomalies) as alerts, and ORDER_BYPASSED_GATE's check and
automatic action. Runs on the stream sink's event writer thread (and in the beat job for
KEY_PERMISSIONS): this is where the database is touched, never on the event loop."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import transaction

from rules import anomalies
from rules.approved_orders import approved

log = logging.getLogger(__name__)

OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value


def finding_raise(finding: anomalies.Finding) -> None:
    """One finding as an alert of rule ``finding.rule`` (e.g. order_burst) on (account, subject)."""
    from alerts.services import alert_raise

    details = _plain({"detector": finding.detector, **finding.details})
    params = {
        "detector": finding.detector,
        "subject": finding.subject,
        "value": _plain(finding.value),
        "limit": _plain(finding.limit),
        "level": finding.level,
        "observed": details.get("observed"),
        "baseline": details.get("baseline"),
        "measure": details.get("measure", ""),
    }
    with transaction.atomic():
        alert_raise(
            account_id=finding.account_id,
            rule=finding.rule,
            subject=finding.subject[:100],
            level=finding.level,
            reason_code=finding.detector,
            value=Decimal(repr(finding.value)).quantize(Decimal("0.000001")),
            limit=Decimal(repr(finding.limit)).quantize(Decimal("0.000001")),
            mark_price=None,
            details=details,
            message_code="anomaly",
            message_params=params,
        )


def findings_raise(*, findings: list[anomalies.Finding]) -> None:
    for finding in findings:
        finding_raise(finding)


def bypass_check(*, watch: anomalies.AnomalyWatch, account_id: int, order: dict) -> anomalies.Finding | None:
    """ORDER_BYPASSED_GATE for one order seen on the exchange (user stream or REST): raised, and the
    profile's action taken, when the desk never sent its client id."""
    client_id = str(order.get("c") or "")
    if client_id and approved(account_id, client_id):
        return None
    if not watch.loaded and account_id not in watch.levels:
        # The stream process's first load is still running: this account's levels from here (this
        # thread may read the database), so the profile's action is not missed at start.
        from rules.baselines import levels_load

        watch.levels = {**watch.levels, **levels_load([account_id])}
    finding = watch.bypassed(account_id, order)
    if finding is None:
        return None
    finding_raise(finding)
    if finding.action != "none":
        _act(finding)
    return finding


def _act(finding: anomalies.Finding) -> None:
    from accounts.models import ExchangeAccount, TradingState
    from positions.models import OrderSource
    from rules import gate

    account = ExchangeAccount.objects.filter(pk=finding.account_id).first()
    if account is None:
        return
    order = finding.order or {}
    reason = f"ORDER_BYPASSED_GATE: order {order.get('c') or order.get('i')} on {order.get('s')}"
    if finding.action == "cancel_order":
        if order.get("X") in OPEN_STATUSES:
            actor = gate.Actor(user=None, source=OrderSource.AUTO_ACTION)
            order_id = int(order["i"]) if order.get("i") not in (None, "") else None
            gate.order_cancel(
                account=account, symbol=str(order.get("s")), order_id=order_id, client_order_id=None, actor=actor
            )
    elif finding.action in ("reducing", "halted"):
        state = TradingState.REDUCING if finding.action == "reducing" else TradingState.HALTED
        if account.trading_state != TradingState.HALTED:  # never loosen a halt
            gate.account_trading_state_set(account=account, state=state, reason=reason[:200], by=None)


def key_permissions_check(*, account_ids: list[int] | None = None) -> int:
    """KEY_PERMISSIONS for every account with credentials (the beat job): the alerts raised."""
    from asgiref.sync import async_to_sync

    from accounts.models import ExchangeAccount
    from marketdata.exchange import ExchangeError
    from marketdata.services import exchange_for
    from rules.baselines import levels_load

    accounts = ExchangeAccount.objects.all()
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    accounts = [a for a in accounts if a.has_credentials]
    levels = levels_load([a.id for a in accounts])
    raised = 0
    for account in accounts:

        async def read(account=account) -> dict:
            async with exchange_for(account) as exchange:
                return await exchange.api_restrictions()

        try:
            restrictions = async_to_sync(read)()
        except ExchangeError as exc:
            log.warning("reading the API key restrictions of account %s failed: %s", account.id, exc)
            continue
        finding = anomalies.key_permission_finding(account.id, restrictions, levels.get(account.id, anomalies.DEFAULT))
        if finding is not None:
            finding_raise(finding)
            raised += 1
    return raised
