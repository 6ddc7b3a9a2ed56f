from __future__ import annotations

import logging

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import ExchangeAccount, Role, TradingState, User
from marketdata import live
from riskdesk.redis_clients import REDIS_DOWN

log = logging.getLogger(__name__)

# Admin permissions per role. Traders do not use the admin: their desk is the dashboard and the API.
VIEWER_GROUP = "Viewers"
RISK_MANAGER_GROUP = "Risk managers"
DESK_APPS = ("accounts", "marketdata", "positions", "rules", "alerts")


def _role_groups() -> dict[str, Group]:
    managers, _ = Group.objects.get_or_create(name=RISK_MANAGER_GROUP)
    viewers, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
    desk = Permission.objects.filter(content_type__app_label__in=DESK_APPS)
    managers.permissions.set(desk)
    viewers.permissions.set(desk.filter(codename__startswith="view_").exclude(content_type__model="user"))
    return {Role.RISK_MANAGER: managers, Role.VIEWER: viewers}


@transaction.atomic
def user_set_role(*, user: User, role: str) -> User:
    """Give a user a role and exactly the admin rights that go with it."""
    groups = _role_groups()
    user.role = role
    user.is_staff = role in (Role.RISK_MANAGER, Role.VIEWER)
    user.save(update_fields=["role", "is_staff"])
    user.groups.remove(*groups.values())
    if role in groups:
        user.groups.add(groups[role])
    return user


@transaction.atomic
def user_create(*, username: str, password: str, role: str, email: str = "") -> User:
    user = User.objects.create_user(username=username, password=password, email=email)
    return user_set_role(user=user, role=role)


def account_set_credentials(*, account: ExchangeAccount, api_key: str, api_secret: str) -> ExchangeAccount:
    """Encrypt and store exchange credentials; only the key's last four characters stay readable."""
    api_key, api_secret = api_key.strip(), api_secret.strip()
    if not api_key or not api_secret:
        raise ValueError("Both the API key and the API secret are required.")
    account.api_key_encrypted = crypto.encrypt(api_key)
    account.api_secret_encrypted = crypto.encrypt(api_secret)
    account.api_key_hint = api_key[-4:]
    account.credentials_updated_at = timezone.now()
    return account


@transaction.atomic
def account_create(
    *, name: str, api_key: str, api_secret: str, position_mode: str = "one_way", traders: list[User] | None = None
) -> ExchangeAccount:
    account = ExchangeAccount(name=name, position_mode=position_mode)
    account_set_credentials(account=account, api_key=api_key, api_secret=api_secret)
    account.full_clean()
    account.save()
    if traders:
        account.traders.set(traders)
    return account


@transaction.atomic
def account_set_trading_state(
    *, account: ExchangeAccount, state: str, reason: str, by: User | None = None
) -> ExchangeAccount:
    if state not in TradingState.values:
        raise ValueError(f"Unknown trading state {state!r}; use one of {', '.join(TradingState.values)}.")
    account.trading_state = state
    account.trading_state_reason = reason[:255]
    account.trading_state_changed_at = timezone.now()
    account._history_user = by  # simple-history records who did it
    account.save(update_fields=["trading_state", "trading_state_reason", "trading_state_changed_at", "updated_at"])
    # The order gate reads the state from the live cache, not the database: publish it once committed.
    changed_ms = int(account.trading_state_changed_at.timestamp() * 1000)
    transaction.on_commit(lambda: _trading_state_publish(account.pk, state, changed_ms))
    return account


def _trading_state_publish(account_id: int, state: str, changed_ms: int) -> None:
    """With Redis down the change is committed but not published, and that is safe: the gate takes
    the newer of the account row and live:trading (rules.gate._trading_state), and refuses every new
    order while Redis is down. Raising here answered 500 for a change that had been made (issue 14),
    and stopped the kill switch before it cancelled anything."""
    try:
        live.trading_state_set(account_id, state, changed_ms)
    except REDIS_DOWN as exc:
        log.warning("account %s is now %s; Redis is unavailable, so it was not published (%s)", account_id, state, exc)
