from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import ExchangeAccount, User
from marketdata.services import exchange_max_leverage
from rules.limits import SYMBOL_LIMIT_FIELDS, as_decimal, validate_limits
from rules.models import RiskAction, RiskProfile, SymbolLimit

# The fields a person sets; ids and timestamps are the database's.
EDITABLE = tuple(
    f.name
    for f in RiskProfile._meta.concrete_fields
    if f.editable and not f.auto_created and f.name not in ("id", "created_at", "updated_at")
)
# Not a column: the profile's SymbolLimit rows, as {symbol: {field: value}} (API, YAML).
SYMBOL_LIMITS = "symbol_limits"
ACCEPTED = (*EDITABLE, SYMBOL_LIMITS)


# Bumped on every profile save and assignment. The stream process's evaluator polls it every
# second (rules.evaluator.Evaluator.reloader), so a saved limit reaches evaluation, and the alerts
# it no longer justifies resolve `limit_changed`, within about a second, not the 30 s reload.
PROFILES_VERSION_KEY = "live:rules:profiles_version"


def profiles_version() -> int:
    return int(cache.get(PROFILES_VERSION_KEY) or 0)


def profiles_changed() -> None:
    """Say that profiles changed outside the services (the admin's inline rows)."""
    _profiles_changed()


def _profiles_changed() -> None:
    # After commit: a reload that reads the key before the rows commit would reload the old values.
    # robust: with Redis down the edit is committed all the same and must answer as such, not 500;
    # the evaluator's 30 s reload picks the change up instead (the failure is logged).
    transaction.on_commit(lambda: cache.set(PROFILES_VERSION_KEY, time.time_ns(), timeout=None), robust=True)


def _validate(profile: RiskProfile) -> None:
    errors = validate_limits(profile.limit_values(), exchange_max_leverage=exchange_max_leverage())
    if not profile.name or not profile.name.strip():
        errors["name"] = "must not be empty"
    clash = RiskProfile.objects.filter(name=profile.name).exclude(pk=profile.pk)
    if profile.name and clash.exists():
        errors["name"] = f"a profile named {profile.name!r} already exists"
    if errors:
        raise ValidationError(errors)
    # JSON cannot hold a Decimal; caps are stored as exact decimal strings.
    profile.asset_caps = {str(k): str(as_decimal(v)) for k, v in (profile.asset_caps or {}).items()}


def _symbol_limits_in(raw: Any) -> Any:
    """Symbols upper-cased; values kept as given (validation names what is wrong)."""
    if not isinstance(raw, dict):
        return raw
    return {
        (k.strip().upper() if isinstance(k, str) else k): (
            {f: v for f, v in o.items() if v is not None and v != ""} if isinstance(o, dict) else o
        )
        for k, o in raw.items()
    }


def _write_symbol_limits(profile: RiskProfile, by: User | None, reason: str) -> None:
    wanted = getattr(profile, "_pending_symbol_limits", None)
    if wanted is None:
        return
    del profile._pending_symbol_limits
    existing = {row.symbol: row for row in profile.symbol_limits.all()}
    for symbol, row in existing.items():
        if symbol not in wanted:
            row._history_user, row._change_reason = by, reason or None
            row.delete()
    for symbol, override in wanted.items():
        row = existing.get(symbol) or SymbolLimit(profile=profile, symbol=symbol)
        for field in SYMBOL_LIMIT_FIELDS:
            value = override.get(field)
            if value is not None and field.startswith("max_leverage"):
                value = int(as_decimal(value))
            elif value is not None:
                value = as_decimal(value)
            setattr(row, field, value)
        row._history_user, row._change_reason = by, reason or None
        row.save()


def _save(profile: RiskProfile, by: User | None, reason: str) -> RiskProfile:
    _validate(profile)
    profile._history_user = by
    profile._change_reason = reason or None
    if profile.is_default:
        # Exactly one default: taking it from another profile is part of the same change.
        for other in RiskProfile.objects.filter(is_default=True).exclude(pk=profile.pk):
            other.is_default = False
            other._history_user = by
            other._change_reason = f"default moved to {profile.name}"
            other.save(update_fields=["is_default", "updated_at"])
    profile.save()
    _write_symbol_limits(profile, by, reason)
    _profiles_changed()
    return profile


@transaction.atomic
def profile_create(*, values: dict[str, Any], by: User | None, reason: str = "") -> RiskProfile:
    unknown = set(values) - set(ACCEPTED)
    if unknown:
        raise ValidationError({k: "unknown field" for k in sorted(unknown)})
    values = dict(values)
    symbol_limits = values.pop(SYMBOL_LIMITS, None)
    profile = RiskProfile(**values)
    profile._pending_symbol_limits = _symbol_limits_in(symbol_limits or {})
    return _save(profile, by, reason or "created")


@transaction.atomic
def profile_update(*, profile: RiskProfile, values: dict[str, Any], by: User | None, reason: str = "") -> RiskProfile:
    unknown = set(values) - set(ACCEPTED)
    if unknown:
        raise ValidationError({k: "unknown field" for k in sorted(unknown)})
    profile = RiskProfile.objects.select_for_update().get(pk=profile.pk)
    for name, value in values.items():
        if name == SYMBOL_LIMITS:
            profile._pending_symbol_limits = _symbol_limits_in(value)
        else:
            setattr(profile, name, value)
    return _save(profile, by, reason or "updated")


@transaction.atomic
def profile_delete(*, profile: RiskProfile, by: User | None) -> None:
    if profile.accounts.exists():
        raise ValidationError({"accounts": "the profile is assigned to accounts; reassign them first"})
    if profile.is_default:
        raise ValidationError({"is_default": "the default profile cannot be deleted; make another the default first"})
    profile._history_user = by
    profile.delete()
    _profiles_changed()


@transaction.atomic
def profile_assign(
    *, profile: RiskProfile | None, accounts: list[ExchangeAccount], by: User | None
) -> list[ExchangeAccount]:
    """Apply `profile` to the accounts (None returns them to the default profile)."""
    for account in accounts:
        account.risk_profile = profile
        account._history_user = by
        account._change_reason = f"risk profile set to {profile.name if profile else 'the default'}"
        account.save(update_fields=["risk_profile", "updated_at"])
    _profiles_changed()
    return accounts


def profile_for_account(account: ExchangeAccount, *, default: RiskProfile | None = None) -> RiskProfile | None:
    """The profile that governs an account: its own, else the default, else None (fail closed upstream).
    ``default``: the default profile, when the caller has read it once for many accounts."""
    if account.risk_profile_id:
        return account.risk_profile
    return default if default is not None else RiskProfile.objects.filter(is_default=True).first()


@transaction.atomic
def profile_import(*, name: str, values: dict[str, Any], by: User | None, source: str) -> tuple[RiskProfile, bool]:
    """Make the profile `name` hold exactly `values` (a parsed rules file): fields
    the file leaves out are reset to their defaults, so the file is the whole truth."""
    # Being the default is an assignment, not a limit: a file that does not say keeps it as it is.
    keep = ("name", "is_default")
    defaults = {
        f.name: f.get_default() for f in RiskProfile._meta.concrete_fields if f.name in EDITABLE and f.name not in keep
    }
    full = {**defaults, SYMBOL_LIMITS: {}, **values, "name": name}
    existing = RiskProfile.objects.filter(name=name).first()
    if existing is None:
        return profile_create(values=full, by=by, reason=f"imported from {source}"), True
    return profile_update(profile=existing, values=full, by=by, reason=f"imported from {source}"), False


# --- automatic actions ---------------------------------------------------------------------


@transaction.atomic
def action_record(*, account_id: int, alert_id: int | None, plan: dict, act: bool) -> RiskAction:
    """Record an action plan. With `act`, its execution is queued after commit (never before:
    a rolled-back breach must not trade)."""
    action = RiskAction.objects.create(
        account_id=account_id,
        alert_id=alert_id,
        trigger=plan["trigger"],
        kind=plan["kind"],
        plan=plan,
        status=RiskAction.Status.APPROVED if act else RiskAction.Status.PROPOSED,
    )
    if act:
        from rules.tasks import execute_risk_action_task

        transaction.on_commit(lambda: execute_risk_action_task.delay(action.id))
    return action


def _decision_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        # The audit must say why a person let a plan trade, or stopped it.
        raise ValidationError({"reason": _("a reason is required")})
    return reason[:500]


@transaction.atomic
def action_approve(*, action: RiskAction, by: User, reason: str) -> RiskAction:
    """A risk manager executes a proposed plan; who, when and why are recorded with it."""
    reason = _decision_reason(reason)
    claimed = RiskAction.objects.filter(pk=action.pk, status=RiskAction.Status.PROPOSED).update(
        status=RiskAction.Status.APPROVED, decided_by=by, decided_at=timezone.now(), decision_reason=reason
    )
    if claimed:
        from rules.tasks import execute_risk_action_task

        transaction.on_commit(lambda: execute_risk_action_task.delay(action.pk))
    return RiskAction.objects.get(pk=action.pk)


@transaction.atomic
def action_dismiss(*, action: RiskAction, by: User, reason: str) -> RiskAction:
    """A risk manager drops a proposed plan; who, when and why are recorded with it."""
    reason = _decision_reason(reason)
    RiskAction.objects.filter(pk=action.pk, status=RiskAction.Status.PROPOSED).update(
        status=RiskAction.Status.DISMISSED, decided_by=by, decided_at=timezone.now(), decision_reason=reason
    )
    return RiskAction.objects.get(pk=action.pk)


@transaction.atomic
def actions_expire(*, account_id: int, reason: str) -> int:
    """The account's pending actions (proposed, or approved and not yet running) become expired:
    the account went flat or was liquidated, so their plans describe positions that are gone and
    must not trade. Decided by the desk (no user). Returns how many expired.

    A conditional UPDATE, like the executor's claim: an action the worker already took (RUNNING)
    is left to finish, and one that expires first is never claimed (it is no longer APPROVED)."""
    return RiskAction.objects.filter(account_id=account_id, status__in=RiskAction.PENDING).update(
        status=RiskAction.Status.EXPIRED,
        decided_by=None,
        decided_at=timezone.now(),
        decision_reason=(reason or "expired by the desk")[:500],
    )


def action_execute(*, action_id: int) -> RiskAction:
    """Carry out an approved plan on the exchange: trading state, cancels, reduce-only orders.
    Claimed by a conditional UPDATE, so a task delivered twice runs once. A worker killed while
    RUNNING leaves the row RUNNING for a person to check: re-sending orders blindly could cut twice."""
    from accounts.services import account_set_trading_state
    from marketdata.services import exchange_for

    claimed = RiskAction.objects.filter(pk=action_id, status=RiskAction.Status.APPROVED).update(
        status=RiskAction.Status.RUNNING
    )
    action = RiskAction.objects.select_related("account").get(pk=action_id)
    if not claimed:
        return action
    plan, account, result = action.plan, action.account, {"steps": []}
    if plan.get("trading_state") or plan["kind"] in ("cancel_orders", "reduce_positions"):
        state = plan.get("trading_state") or "REDUCING"
        account_set_trading_state(account=account, state=state, reason=f"automatic action on {action.trigger}")
        result["steps"].append({"trading_state": state})
    try:
        result["steps"] += asyncio.run(_exchange_steps(lambda: exchange_for(account), plan, account_id=account.id))
        status = RiskAction.Status.EXECUTED
    except Exception as exc:  # the audit must say what failed, whatever it was
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
        status = RiskAction.Status.FAILED
    RiskAction.objects.filter(pk=action.pk).update(status=status, result=result, executed_at=timezone.now())
    return RiskAction.objects.get(pk=action.pk)


async def _exchange_steps(make_exchange, plan: dict, *, account_id: int | None = None) -> list[dict]:
    from rules.approved_orders import approved_add
    from rules.gate import new_client_order_id

    steps: list[dict] = []
    async with make_exchange() as exchange:  # built inside the loop: aiohttp binds to it
        if plan.get("cancel_orders"):
            for symbol in sorted({o["symbol"] for o in await exchange.open_orders()}):
                await exchange.cancel_all(symbol=symbol)
                steps.append({"cancel_all": symbol})
            # Stops and take-profits live in the algo service; /allOpenOrders does not reach them.
            for symbol in sorted({o["symbol"] for o in await exchange.open_conditional_orders()}):
                await exchange.cancel_all_conditional(symbol=symbol)
                steps.append({"cancel_all_conditional": symbol})
        for order in plan.get("orders", []):
            params = {
                "symbol": order["symbol"],
                "side": order["side"],
                "type": "MARKET",
                "quantity": Decimal(order["quantity"]),
                "newClientOrderId": new_client_order_id(),
            }
            if account_id is not None:  # the desk's own order: not ORDER_BYPASSED_GATE
                approved_add(account_id, params["newClientOrderId"])
            if order["position_side"] == "BOTH":
                params["reduceOnly"] = True
            else:
                params["positionSide"] = order["position_side"]  # hedge legs reduce by side, no reduceOnly
            answer = await exchange.place_order(**params)
            steps.append({"order": order, "exchange_status": answer.get("status"), "order_id": answer.get("orderId")})
    return steps
