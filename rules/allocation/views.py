"""/allocation/: the desk's VaR/ES, risk contributions, correlations, stress liquidations and the
adviser's suggestion against today's limits; "apply" for risk managers (POST, CSRF).

Who sees what (docs/ALLOCATION.md): risk managers and viewers see the whole desk; a trader sees
their own accounts' stand-alone VaR/ES and the correlations, no desk totals, no contributions and
no suggestion (they carry other accounts' positions); only risk managers apply."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import access
from riskdesk.views import desk_member_required, render_page
from rules.allocation import charts, selectors, services
from rules.allocation import params as adviser_params
from rules.models import RiskProfile


def page_context(request: HttpRequest) -> dict[str, Any]:
    params, errors = adviser_params.parse(request.GET)
    result = services.risk_latest()
    visible = selectors.visible_part(result, request.user)
    see_all = access.can_see_all_accounts(request.user)
    suggestion = services.allocation_suggest(result=result, params=params) if see_all else None
    history = selectors.var_history() if see_all else []
    return {
        "result": visible,
        "suggestion": suggestion,
        "params": params,
        "param_errors": errors,
        "query": urlencode(params.as_query()),
        "methods": list(adviser_params.METHODS.items()),
        "can_apply": access.is_risk_manager(request.user),
        "see_all": see_all,
        "chart_data": charts.chart_data(result=visible, suggestion=suggestion, history=history),
    }


@desk_member_required
def allocation_page(request: HttpRequest) -> HttpResponse:
    context = page_context(request)
    status = 400 if context["param_errors"] else 200
    return render_page(request, "allocation/page.html", context, status=status)


@require_POST
@desk_member_required
def allocation_apply(request: HttpRequest) -> HttpResponse:
    """Write the suggestion for one profile into its limits (the admin's service, with history)."""
    if not access.is_risk_manager(request.user):
        raise PermissionDenied("Risk managers only.")
    try:
        profile = RiskProfile.objects.get(pk=int(request.POST.get("profile", "")))
    except (RiskProfile.DoesNotExist, ValueError):
        raise Http404("No such profile.") from None
    params, errors = adviser_params.parse(request.POST)
    back = f"{reverse('allocation:page')}?{urlencode(params.as_query())}"
    if errors:
        messages.error(request, " ".join(errors.values()))
        return redirect(back)
    try:
        applied = services.allocation_apply(profile=profile, params=params, by=request.user)
    except ValidationError as exc:
        messages.error(request, _("Not applied: %(why)s") % {"why": "; ".join(exc.messages)})
        return redirect(back)
    messages.success(
        request,
        _("Applied to %(profile)s: %(n)d per-symbol limit(s), reason “%(reason)s”.")
        % {"profile": profile.name, "n": applied.symbols, "reason": applied.reason},
    )
    return redirect(back)
