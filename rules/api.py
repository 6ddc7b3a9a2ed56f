from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import accounts_visible_to, is_risk_manager, profiles_visible_to, visible_account_ids
from accounts.models import ExchangeAccount
from accounts.permissions import RiskManagerWrites
from rules import services
from rules.models import RiskProfile
from rules.serializers import (
    AssignSerializer,
    HistoryEntrySerializer,
    ProfileWriteSerializer,
    RiskProfileSerializer,
)

CHANGE_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def _service_errors(exc: DjangoValidationError) -> ValidationError:
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})


def _context(request) -> dict:
    visible = None if is_risk_manager(request.user) else visible_account_ids(request.user)
    return {"request": request, "visible_account_ids": visible}


def _profile_for(request, profile_id: int) -> RiskProfile:
    return get_object_or_404(profiles_visible_to(request.user), pk=profile_id)


def _write_values(request, *, partial: bool, instance: RiskProfile | None = None) -> tuple[dict, str]:
    serializer = ProfileWriteSerializer(instance=instance, data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    reason = values.pop("reason", "")
    return values, reason


class ProfileListApi(APIView):
    permission_classes = [RiskManagerWrites]

    @extend_schema(responses=RiskProfileSerializer(many=True))
    def get(self, request):
        profiles = profiles_visible_to(request.user).order_by("name")
        return Response(RiskProfileSerializer(profiles, many=True, context=_context(request)).data)

    @extend_schema(request=ProfileWriteSerializer, responses={201: RiskProfileSerializer})
    def post(self, request):
        values, reason = _write_values(request, partial=False)
        try:
            profile = services.profile_create(values=values, by=request.user, reason=reason or "api")
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return Response(RiskProfileSerializer(profile, context=_context(request)).data, status=status.HTTP_201_CREATED)


class ProfileDetailApi(APIView):
    permission_classes = [RiskManagerWrites]

    @extend_schema(responses=RiskProfileSerializer)
    def get(self, request, profile_id: int):
        return Response(RiskProfileSerializer(_profile_for(request, profile_id), context=_context(request)).data)

    def _update(self, request, profile_id: int, *, partial: bool) -> Response:
        profile = _profile_for(request, profile_id)
        values, reason = _write_values(request, partial=partial, instance=profile)
        try:
            profile = services.profile_update(profile=profile, values=values, by=request.user, reason=reason or "api")
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return Response(RiskProfileSerializer(profile, context=_context(request)).data)

    @extend_schema(request=ProfileWriteSerializer, responses=RiskProfileSerializer)
    def put(self, request, profile_id: int):
        return self._update(request, profile_id, partial=False)

    @extend_schema(request=ProfileWriteSerializer, responses=RiskProfileSerializer)
    def patch(self, request, profile_id: int):
        return self._update(request, profile_id, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request, profile_id: int):
        try:
            services.profile_delete(profile=_profile_for(request, profile_id), by=request.user)
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProfileAccountsApi(APIView):
    """The accounts a profile governs; POST assigns more accounts to it."""

    permission_classes = [RiskManagerWrites]

    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request, profile_id: int):
        profile = _profile_for(request, profile_id)
        accounts = accounts_visible_to(request.user).filter(risk_profile=profile)
        return Response({"profile": profile.id, "account_ids": sorted(accounts.values_list("id", flat=True))})

    @extend_schema(request=AssignSerializer, responses={200: {"type": "object"}})
    def post(self, request, profile_id: int):
        profile = _profile_for(request, profile_id)
        data = AssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = set(data.validated_data["account_ids"])
        accounts = list(ExchangeAccount.objects.filter(pk__in=ids))
        missing = ids - {a.id for a in accounts}
        if missing:
            raise ValidationError({"account_ids": [f"unknown account {i}" for i in sorted(missing)]})
        services.profile_assign(profile=profile, accounts=accounts, by=request.user)
        return self.get(request, profile_id)


class ProfileHistoryApi(APIView):
    permission_classes = [RiskManagerWrites]

    @extend_schema(responses=HistoryEntrySerializer(many=True))
    def get(self, request, profile_id: int):
        profile = _profile_for(request, profile_id)
        records = list(profile.history.select_related("history_user").order_by("-history_date", "-history_id"))
        entries = []
        for newer, older in zip(records, [*records[1:], None], strict=True):
            changes = []
            if older is not None:
                delta = newer.diff_against(older, excluded_fields=["updated_at", "created_at"])
                changes = [{"field": c.field, "old": _plain(c.old), "new": _plain(c.new)} for c in delta.changes]
            entries.append(
                {
                    "history_id": newer.history_id,
                    "date": newer.history_date,
                    "user": newer.history_user.username if newer.history_user else None,
                    "change_type": CHANGE_TYPES.get(newer.history_type, newer.history_type),
                    "reason": newer.history_change_reason,
                    "changes": changes,
                }
            )
        return Response(HistoryEntrySerializer(entries, many=True).data)


def _plain(value):
    return value if value is None or isinstance(value, (bool, int, list, dict)) else str(value)
