"""The shapes of /api/v1/risk/var and /api/v1/allocation (for the schema and to hold the answer to
them). Money and ratios are exact decimal strings; a figure that cannot be computed is null with a
`not_available` reason next to it, never NaN."""

from __future__ import annotations

from rest_framework import serializers

from rules.allocation.params import METHODS

Money = lambda **kw: serializers.CharField(allow_null=True, **kw)  # noqa: E731 - one field shape, many uses


class ProblemSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["no_bars", "insufficient_history", "zero_volatility", "bad_input"])
    reason = serializers.CharField()
    account_id = serializers.IntegerField(allow_null=True)
    symbol = serializers.CharField(allow_null=True)


class DeskVarSerializer(serializers.Serializer):
    equity = Money()
    var_historical = Money(help_text="1-day 99 % VaR by historical simulation, USDT (a loss, positive)")
    es_historical = Money(help_text="1-day 99 % Expected Shortfall by historical simulation, USDT")
    var_parametric = Money(help_text="delta-normal VaR with EWMA covariances, margin-capped (cross-check)")
    es_parametric = Money()
    var_pct_equity = Money(help_text="historical VaR / desk equity, a fraction")


class PositionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    side = serializers.CharField()
    qty = serializers.CharField()
    notional = serializers.CharField()
    leverage = serializers.IntegerField()
    margin_type = serializers.CharField()


class AccountVarSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    name = serializers.CharField()
    profile_id = serializers.IntegerField(allow_null=True)
    equity = Money()
    gross_notional = Money()
    var_historical = Money()
    es_historical = Money()
    var_parametric = Money()
    es_parametric = Money()
    contribution_historical = Money(help_text="component VaR: the account's part of the desk VaR (sums to it)")
    contribution_parametric = Money()
    not_available = serializers.CharField(help_text="empty, or why this account's figures are missing")
    not_available_code = serializers.CharField()
    positions = PositionSerializer(many=True)


class SymbolVarSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    daily_volatility = Money(help_text="EWMA daily volatility, a fraction")
    contribution_historical = Money()
    contribution_parametric = Money()
    net_notional = Money()
    flags = serializers.ListField(child=serializers.CharField())


class CorrelationSerializer(serializers.Serializer):
    symbols = serializers.ListField(child=serializers.CharField())
    matrix = serializers.ListField(child=serializers.ListField(child=serializers.CharField(allow_null=True)))


class LiquidationSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    name = serializers.CharField()
    symbol = serializers.CharField(allow_null=True, help_text="null: the whole cross pool")
    side = serializers.CharField(allow_null=True)
    margin_type = serializers.CharField()
    loss = Money()


class ScenarioSerializer(serializers.Serializer):
    name = serializers.CharField()
    desk_loss = Money()
    account_loss = serializers.DictField(child=serializers.CharField(allow_null=True))
    moves = serializers.DictField(child=serializers.CharField(allow_null=True))
    flags = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    liquidations = LiquidationSerializer(many=True)
    whatif_url = serializers.CharField()


class HistoryInfoSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False)
    first = serializers.CharField(required=False)
    last = serializers.CharField(required=False)
    scenarios = serializers.IntegerField(required=False)
    half_life_days = serializers.FloatField(required=False)


class VarPointSerializer(serializers.Serializer):
    day = serializers.CharField()
    var_historical = Money()
    es_historical = Money()
    var_parametric = Money()
    equity = Money()


class RiskVarSerializer(serializers.Serializer):
    as_of = serializers.CharField()
    computed_at = serializers.CharField(required=False, help_text="when the desk's figures were computed")
    scope = serializers.ChoiceField(choices=["desk", "own_accounts"])
    confidence = serializers.CharField()
    horizon_days = serializers.IntegerField()
    available = serializers.BooleanField()
    not_available = serializers.CharField(help_text="empty when available; else why the desk VaR is missing")
    not_available_code = serializers.CharField()
    partial = serializers.BooleanField(help_text="true: the desk figures leave out accounts that are not available")
    problems = ProblemSerializer(many=True)
    desk = DeskVarSerializer(allow_null=True)
    accounts = AccountVarSerializer(many=True)
    symbols = SymbolVarSerializer(many=True)
    correlation = CorrelationSerializer()
    scenarios = ScenarioSerializer(many=True)
    history = HistoryInfoSerializer()
    var_history = VarPointSerializer(many=True)


class AdviserQuerySerializer(serializers.Serializer):
    capital = serializers.CharField(required=False, help_text="USDT to allocate; default: the desk equity")
    desk_budget_pct = serializers.CharField(required=False, help_text="daily 99 % VaR budget, % of desk equity")
    account_budget_pct = serializers.CharField(
        required=False, help_text="daily 99 % VaR budget, % of the account's capital"
    )
    method = serializers.ChoiceField(choices=list(METHODS), required=False)


class ApplySerializer(AdviserQuerySerializer):
    profile = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class SuggestedAccountSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    name = serializers.CharField()
    capital_now = Money()
    capital_suggested = Money()
    weight = Money()
    var_now = Money()
    var_budget = Money()
    reason = serializers.CharField()


class SuggestedLimitSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField(allow_null=True)
    profile = serializers.CharField()
    symbol = serializers.CharField()
    accounts = serializers.ListField(child=serializers.CharField())
    notional_now = Money()
    limit_notional_now = Money()
    notional_cap = Money()
    leverage_now = serializers.IntegerField(allow_null=True)
    limit_leverage_now = serializers.IntegerField(allow_null=True)
    leverage_cap = serializers.IntegerField(allow_null=True)
    tier_max_leverage = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    not_available = serializers.CharField()
    not_available_code = serializers.CharField()


class SuggestionSerializer(serializers.Serializer):
    as_of = serializers.CharField(allow_null=True)
    method = serializers.CharField()
    capital = Money()
    desk_budget = Money(help_text="a fraction of equity")
    account_budget = Money()
    desk_var_budget = Money(help_text="USDT")
    not_available = serializers.CharField()
    not_available_code = serializers.CharField()
    accounts = SuggestedAccountSerializer(many=True)
    limits = SuggestedLimitSerializer(many=True)


class AppliedSerializer(serializers.Serializer):
    profile = serializers.IntegerField()
    reason = serializers.CharField()
    symbols = serializers.IntegerField()
