"""/api/v1/risk/var, /api/v1/allocation and /api/v1/allocation/apply (JWT or session, like the
other APIs). Visibility as on the page (views.py): a trader gets their own accounts only and no
suggestion (403); apply is for risk managers."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.permissions import IsDeskMember
from rules.allocation import params as adviser_params
from rules.allocation import selectors, services
from rules.allocation.serializers import (
    AdviserQuerySerializer,
    AppliedSerializer,
    ApplySerializer,
    RiskVarSerializer,
    SuggestionSerializer,
)
from rules.models import RiskProfile


def _params(data) -> adviser_params.AdviserParams:
    params, errors = adviser_params.parse(data)
    if errors:
        raise ValidationError(errors)
    return params


class RiskVarApi(APIView):
    permission_classes = [IsDeskMember]

    @extend_schema(
        operation_id="risk_var",
        responses=RiskVarSerializer,
        description="The desk's 1-day 99 % VaR and Expected Shortfall (historical simulation, and parametric as a "
        "cross-check) per account and for the desk, component contributions by account and symbol, EWMA "
        "correlations, liquidations in the 2021-05-19 crash scenario and the daily VaR history. Figures that "
        "cannot be computed are null, with the reason in not_available. A trader sees their own accounts only.",
    )
    def get(self, request):
        result = selectors.visible_part(services.risk_latest(), request.user)
        result.pop("adviser_inputs", None)
        whatif = reverse("positions:whatif") + "?mode=crash"
        result["scenarios"] = [{**s, "whatif_url": whatif} for s in result.get("scenarios", [])]
        result["var_history"] = selectors.var_history() if access.can_see_all_accounts(request.user) else []
        result.setdefault("history", {})
        return Response(RiskVarSerializer(result).data)


class AllocationApi(APIView):
    permission_classes = [IsDeskMember]

    @extend_schema(
        operation_id="allocation_suggest",
        parameters=[AdviserQuerySerializer],
        responses=SuggestionSerializer,
        description="The allocation adviser's suggestion (never applied by itself): capital per account by risk "
        "parity or inverse volatility, per-symbol notional caps and leverage caps within the bracket tiers, each "
        "with today's value and the reason. Risk managers and viewers.",
    )
    def get(self, request):
        if not access.can_see_all_accounts(request.user):
            raise PermissionDenied("The adviser works on the whole desk: risk managers and viewers only.")
        params = _params(request.query_params)
        return Response(
            SuggestionSerializer(services.allocation_suggest(result=services.risk_latest(), params=params)).data
        )


class AllocationApplyApi(APIView):
    permission_classes = [IsDeskMember]

    @extend_schema(
        operation_id="allocation_apply",
        request=ApplySerializer,
        responses=AppliedSerializer,
        description="Write the current suggestion's per-symbol caps into one risk profile, through the same "
        'service as the admin (the history records who, when and the reason "allocation suggestion of <day>"). '
        "Risk managers only.",
    )
    def post(self, request):
        if not access.is_risk_manager(request.user):
            raise PermissionDenied("Only risk managers apply a suggestion.")
        body = ApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        profile = RiskProfile.objects.filter(pk=body.validated_data["profile"]).first()
        if profile is None:
            raise NotFound("No such profile.")
        params = _params({k: v for k, v in request.data.items() if k != "profile"})
        try:
            applied = services.allocation_apply(profile=profile, params=params, by=request.user)
        except DjangoValidationError as exc:
            raise ValidationError({"non_field_errors": exc.messages}) from exc
        return Response(
            AppliedSerializer({"profile": profile.id, "reason": applied.reason, "symbols": applied.symbols}).data
        )
