"""Who may see or change what. Every view, API, admin page and consumer asks here.

Rules:
- a risk manager (or superuser) sees and changes everything;
- a viewer sees every account, read-only;
- a trader sees only the exchange accounts assigned to them, read-only for configuration;
- anyone else (inactive, anonymous, no role) sees nothing.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import ExchangeAccount, Role, User


def is_risk_manager(user: User) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.role == Role.RISK_MANAGER


def can_see_all_accounts(user: User) -> bool:
    if is_risk_manager(user):
        return True
    return user.is_authenticated and user.is_active and user.role == Role.VIEWER


def accounts_visible_to(user: User) -> QuerySet[ExchangeAccount]:
    if can_see_all_accounts(user):
        return ExchangeAccount.objects.all()
    if user.is_authenticated and user.is_active and user.role == Role.TRADER:
        return ExchangeAccount.objects.filter(traders=user)
    return ExchangeAccount.objects.none()


def visible_account_ids(user: User) -> set[int]:
    return set(accounts_visible_to(user).values_list("id", flat=True))


def is_desk_member(user: User) -> bool:
    """Anyone with a desk role. Everyone else is an outsider and is refused everywhere."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.role in (Role.RISK_MANAGER, Role.TRADER, Role.VIEWER)


def can_trade(user: User) -> bool:
    """May send and cancel orders on the accounts they can see: risk managers and traders.
    Viewers are read-only; which accounts a trader may trade on is `get_account_for_user`'s answer."""
    if not is_desk_member(user):
        return False
    return is_risk_manager(user) or user.role == Role.TRADER


def profiles_visible_to(user: User) -> QuerySet:
    """Risk managers and viewers see every profile; a trader sees the profiles that
    govern their accounts (including the default when one of them has none)."""
    from rules.models import RiskProfile

    if can_see_all_accounts(user):
        return RiskProfile.objects.all()
    mine = accounts_visible_to(user)
    if not mine.exists():
        return RiskProfile.objects.none()
    query = Q(accounts__in=mine)
    if mine.filter(risk_profile__isnull=True).exists():
        query |= Q(is_default=True)
    return RiskProfile.objects.filter(query).distinct()


def get_account_for_user(user: User, account_id: int | str, *, write: bool = False) -> ExchangeAccount:
    """The account, or Http404 when the user may not see it (never 403: that would
    confirm the account exists). `write` asks for configuration rights."""
    if write and not is_risk_manager(user):
        raise Http404("No such account.")
    try:
        return accounts_visible_to(user).get(pk=int(account_id))
    except (ExchangeAccount.DoesNotExist, ValueError, TypeError):
        raise Http404("No such account.") from None
