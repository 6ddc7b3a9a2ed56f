from __future__ import annotations

from rest_framework import serializers

from riskdesk.drf import StrictIntegerField, StrictModelSerializer
from rules.models import RiskProfile
from rules.services import EDITABLE


class RiskProfileSerializer(serializers.ModelSerializer):
    accounts = serializers.SerializerMethodField()
    symbol_limits = serializers.SerializerMethodField()

    class Meta:
        model = RiskProfile
        fields = ("id", *EDITABLE, "symbol_limits", "accounts", "created_at", "updated_at")
        read_only_fields = ("id", "accounts", "created_at", "updated_at")

    def get_symbol_limits(self, obj: RiskProfile) -> dict[str, dict[str, str]]:
        """Per-symbol overrides: {"BTCUSDT": {"max_order_qty": "5"}}; numbers as exact strings."""
        return {sym: {k: str(v) for k, v in o.items()} for sym, o in obj.symbol_limit_values().items()}

    def get_accounts(self, obj: RiskProfile) -> list[int]:
        # Only the accounts the caller may see: a trader must not learn others exist.
        visible = self.context.get("visible_account_ids")
        ids = obj.accounts.values_list("id", flat=True)
        return sorted(i for i in ids if visible is None or i in visible)


class ProfileWriteSerializer(StrictModelSerializer):
    """Field types, digits and choices; the limit rules themselves are checked by the service."""

    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, write_only=True)
    # Replaces every override of the profile when given (an empty mapping removes them all).
    symbol_limits = serializers.DictField(child=serializers.DictField(), required=False)

    class Meta:
        model = RiskProfile
        fields = (*EDITABLE, "symbol_limits", "reason")
        extra_kwargs = {"name": {"validators": []}}  # uniqueness is the service's job, with its own message


class AssignSerializer(serializers.Serializer):
    # max_value: an id past the database's integer was an OverflowError (a 500) in the lookup.
    account_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=2**62), allow_empty=False, max_length=1000
    )


class HistoryEntrySerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    date = serializers.DateTimeField()
    user = serializers.CharField(allow_null=True)
    change_type = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    changes = serializers.ListField(child=serializers.DictField())
