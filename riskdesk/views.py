"""The desk's overview page, the status strip every page carries, and the page helpers the apps share.

Each view: parse → access check (accounts.access, through the selectors) → read → render.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from accounts import access
from alerts.selectors import open_counts_by_level
from marketdata import live
from positions import selectors
from rules import selectors as rule_selectors
from rules.allocation import selectors as allocation_selectors

View = Callable[..., HttpResponse]


def desk_member_required(view: View) -> View:
    """Signed in (else to the sign-in page) and holding a desk role (else 403: outsiders see nothing)."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not access.is_desk_member(request.user):
            raise PermissionDenied("No desk role.")
        return view(request, *args, **kwargs)

    return wrapped


def status_context(request: HttpRequest, accounts: list[selectors.AccountView] | None = None) -> dict[str, Any]:
    """What the status strip shows on every page: feed freshness (stale loudly) and open alerts."""
    feeds = selectors.desk_feeds(request.user, accounts)
    return {
        "feeds": feeds,
        "stale_feeds": [f for f in feeds if f.stale],
        "alert_counts": open_counts_by_level(request.user),
        "stale_after_s": settings.STREAM_STALE_AFTER_S,
        "server_now_ms": live.now_ms(),
    }


def render_page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    accounts: list[selectors.AccountView] | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(request, template, {**status_context(request, accounts), **context}, status=status)


@desk_member_required
def status_strip(request: HttpRequest) -> HttpResponse:
    """The strip alone, for the live refresh (every page has it)."""
    return render(request, "desk/_status.html", status_context(request))


def _overview_context(request: HttpRequest) -> dict[str, Any]:
    accounts = selectors.desk_accounts(request.user)
    live_points = {
        a.id: [a.freshness.at_ms, str(a.figure("margin_balance"))]
        for a in accounts
        if a.freshness.live and a.figure("margin_balance") is not None
    }
    bands = selectors.margin_ratio_bands(accounts)
    gauges = [
        {
            "id": a.id,
            "name": a.name,
            "ratio": str(a.figure("margin_ratio") or 0),
            "stale": a.freshness.stale,
            # Never green after a liquidation: a flat account reads 0 %, which is not "safe".
            "liquidated": a.liquidation is not None,
            # The gauge's colours are the account's own limits, so amber and red mean what the alerts mean.
            "warn": str(bands[a.id][0] or "0.5"),
            "crit": str(bands[a.id][1] or "0.8"),
        }
        for a in accounts
    ]
    # The charts' data, read by desk.js after each swap: one partial feeds figures and charts alike.
    live_data = {"gauges": gauges, "exposure": selectors.exposure_by_symbol(accounts), "live_points": live_points}
    # Risk score, HHI and desk concentration (rules/selectors.py, docs/RISK_LOGIC.md).
    score_sort = request.GET.get("score_sort", "risk_score")
    scores = rule_selectors.account_scores(accounts, sort=score_sort, weights=settings.RISK_SCORE_WEIGHTS)
    return {
        "accounts": accounts,
        "live_data": live_data,
        "scores": scores,
        "score_by_account": {s.account_id: s for s in scores},
        "score_sort": score_sort if score_sort in rule_selectors.SORTS else "risk_score",
        "score_columns": [
            ("name", _("Account")),
            ("risk_score", _("Risk score")),
            ("margin_ratio", _("Margin ratio")),
            ("hhi", _("HHI")),
        ],
        "desk_concentration": rule_selectors.desk_panel(accounts),
        # 1-day 99 % VaR per account from the beat job's cached result (rules/allocation, issue 18).
        "var_by_account": allocation_selectors.var_by_account(accounts),
    }


@desk_member_required
def overview(request: HttpRequest) -> HttpResponse:
    context = _overview_context(request)
    context["pnl"] = selectors.pnl_curves(context["accounts"])
    return render_page(request, "desk/overview.html", context, accounts=context["accounts"])


@desk_member_required
def overview_live(request: HttpRequest) -> HttpResponse:
    """The overview's live part (cards, charts' data, alert counts, feeds): one partial, one template."""
    context = _overview_context(request)
    return render(request, "desk/_overview_live.html", {**status_context(request, context["accounts"]), **context})
