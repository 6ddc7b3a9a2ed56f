from __future__ import annotations

from rest_framework import serializers

from accounts.models import ExchangeAccount


class ExchangeAccountSerializer(serializers.ModelSerializer):
    """Never carries credentials: only the key's last four characters."""

    traders = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")

    class Meta:
        model = ExchangeAccount
        fields = (
            "id",
            "name",
            "exchange",
            "position_mode",
            "trading_state",
            "trading_state_reason",
            "trading_state_changed_at",
            "enabled",
            "risk_profile",
            "traders",
            "api_key_hint",
        )
        read_only_fields = fields
