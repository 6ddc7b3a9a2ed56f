"""Desk pages for exchange accounts: trading state and the kill switch, and the sign-in pages.

Changing a trading state or pulling the kill switch goes through the order gate's services
(rules.gate), behind a confirmation that first shows the gate's dry-run plan: what the exchange
says is open right now, so the risk manager sees what will be cancelled and closed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts import access
from accounts.models import TradingState
from marketdata.exchange import ExchangeError
from positions import selectors
from riskdesk.views import desk_member_required, render_page
from rules import gate
from rules import services as rule_services
from rules.models import RiskAction

# The actions a risk manager may take from the page: the state they set, or "kill".
ACTIONS = {
    "active": TradingState.ACTIVE,
    "reducing": TradingState.REDUCING,
    "halted": TradingState.HALTED,
    "kill": "kill",
}
ACTION_TITLES = {
    "active": gettext_lazy("Allow trading again (ACTIVE)"),
    "reducing": gettext_lazy("Reduce only (REDUCING)"),
    "halted": gettext_lazy("Halt trading (HALTED)"),
    "kill": gettext_lazy("Kill switch"),
}


class DeskLoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class DeskLogoutView(auth_views.LogoutView):
    pass


def _table_context(request: HttpRequest) -> dict[str, Any]:
    accounts = selectors.desk_accounts(request.user)
    return {"accounts": accounts, "can_act": access.is_risk_manager(request.user)}


def _actions_context(request: HttpRequest) -> dict[str, Any]:
    pending, history = selectors.risk_actions(account_ids=access.visible_account_ids(request.user))
    return {"pending_actions": pending, "action_history": history, "can_act": access.is_risk_manager(request.user)}


@desk_member_required
def account_list(request: HttpRequest) -> HttpResponse:
    context = _table_context(request)
    context.update(_actions_context(request))
    return render_page(request, "accounts/list.html", context, accounts=context["accounts"])


@desk_member_required
def action_table(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/_actions.html", _actions_context(request))


def _risk_action(request: HttpRequest, action_id: int) -> RiskAction:
    """A risk action of an account the user may configure (404 otherwise, as for the account)."""
    action = RiskAction.objects.filter(pk=action_id).select_related("account").first()
    if action is None:
        raise Http404("No such action.")
    access.get_account_for_user(request.user, action.account_id, write=True)
    return action


@desk_member_required
def action_review(request: HttpRequest, action_id: int) -> HttpResponse:
    """The proposed plan (its dry run: orders, cancels, state) and the reason form."""
    action = _risk_action(request, action_id)
    context = {"action": action, "view": selectors.account_view(action.account)}
    if request.headers.get("HX-Request"):
        return render(request, "accounts/_action_review.html", context)
    return render_page(request, "accounts/action_review.html", context)


DECISIONS = {"approve": "action_approve", "dismiss": "action_dismiss"}


@require_POST
@desk_member_required
def action_decide(request: HttpRequest, action_id: int, decision: str) -> HttpResponse:
    if decision not in DECISIONS:
        raise Http404("No such decision.")
    action = _risk_action(request, action_id)
    reason = (request.POST.get("reason") or "").strip()[:500]
    if not reason:
        messages.error(request, _("Give a reason: the history keeps who decided, when and why."))
        return redirect("accounts:list")
    if action.status != RiskAction.Status.PROPOSED:
        status = action.get_status_display()
        messages.error(request, _("This action is %(status)s: nothing to decide.") % {"status": status})
        return redirect("accounts:list")
    decided = getattr(rule_services, DECISIONS[decision])(action=action, by=request.user, reason=reason)
    words = {"account": action.account.name, "kind": action.kind, "status": decided.get_status_display()}
    if decided.status == RiskAction.Status.PROPOSED or decided.status == action.status:
        messages.error(request, _("%(account)s: %(kind)s was not changed (now %(status)s).") % words)
    else:
        messages.success(request, _("%(account)s: %(kind)s is now %(status)s.") % words)
    return redirect("accounts:list")


@desk_member_required
def account_table(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/_table.html", _table_context(request))


def _action(name: str) -> str:
    if name not in ACTIONS:
        raise Http404("No such action.")
    return name


def _error_text(error: dict[str, Any]) -> str:
    return f"{error.get('kind', '')} {error.get('code', '')}: {error.get('message', '')}".strip()


def _dry_run(account) -> dict[str, Any]:
    """The kill service's plan without acting (flatten included, so every open position is listed)."""
    try:
        body = gate.account_kill(account=account, by=None, flatten=True, dry_run=True, reason="")
    except ExchangeError as exc:  # older gates raised; the current one reports body["error"]
        return {"plan": None, "plan_error": str(exc)}
    if body.get("error"):
        return {"plan": None, "plan_error": _error_text(body["error"])}
    return {"plan": body["plan"]}


@desk_member_required
def account_confirm(request: HttpRequest, account_id: int, action: str) -> HttpResponse:
    action = _action(action)
    account = access.get_account_for_user(request.user, account_id, write=True)
    context = {
        "account": account,
        "action": action,
        "title": ACTION_TITLES[action],
        "view": selectors.account_view(account),
        **_dry_run(account),
    }
    if request.headers.get("HX-Request"):  # into the page's dialog
        return render(request, "accounts/_confirm.html", context)
    return render_page(request, "accounts/confirm.html", context)


@require_POST
@desk_member_required
def account_act(request: HttpRequest, account_id: int, action: str) -> HttpResponse:
    action = _action(action)
    account = access.get_account_for_user(request.user, account_id, write=True)
    reason = (request.POST.get("reason") or "").strip()[:200] or _("from the desk")
    if action == "kill":
        flatten = request.POST.get("flatten") == "on"
        try:
            body = gate.account_kill(account=account, by=request.user, flatten=flatten, dry_run=False, reason=reason)
        except ExchangeError as exc:
            body = {"error": {"message": str(exc)}}
        if body.get("error"):
            # The account is HALTED whatever happened; say how far the kill got and why it stopped.
            words = {"account": account.name, "error": _error_text(body["error"])}
            messages.error(request, _("%(account)s: halted, but the exchange failed: %(error)s") % words)
            if body.get("cancelled") or body.get("orders"):
                messages.warning(request, _kill_summary(account.name, body))
            return redirect("accounts:list")
        messages.success(request, _kill_summary(account.name, body))
    else:
        gate.account_trading_state_set(account=account, state=ACTIONS[action], reason=reason, by=request.user)
        messages.success(
            request,
            _("%(account)s is now %(state)s.")
            % {"account": account.name, "state": TradingState(ACTIONS[action]).label},
        )
    return redirect("accounts:list")


def _kill_summary(name: str, body: dict[str, Any]) -> str:
    remaining = body.get("remaining") or {}
    return _(
        "%(account)s: kill switch done. Halted; %(cancelled)s symbol(s) cancelled, %(closed)s closing order(s) sent; "
        "%(orders)s open order(s) and %(positions)s position(s) remain."
    ) % {
        "account": name,
        "cancelled": len(body.get("cancelled", [])),
        "closed": len(body.get("orders", [])),
        "orders": remaining.get("open_orders", "?"),
        "positions": len(remaining["positions"]) if "positions" in remaining else "?",
    }
