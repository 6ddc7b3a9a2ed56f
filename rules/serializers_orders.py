"""Serializers of the order gate's API (rules/api_orders.py).

Input is strict: a JSON number where a string belongs, a string where a boolean belongs,
unknown keys, NaN, infinities, zero, negatives, absurd magnitudes and more than 8 decimals
are all 400 with the field named. Money, prices and quantities go out as decimal strings.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

from accounts.models import TradingState
from riskdesk import drf
from riskdesk.drf import StrictIntegerField
from rules import gate
from rules.checks import POSITION_SIDES, SIDES, TIME_IN_FORCE, TYPES, value_text

MAX_NUMBER = Decimal("1e10")  # far above any quantity or price Binance lists; above is a typo, not an order
MIN_NUMBER = Decimal("1e-8")
SYMBOL_PATTERN = r"^[A-Z0-9]{2,32}$"
CLIENT_ORDER_ID_PATTERN = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"  # Binance's own rule for newClientOrderId


class StrictCharField(serializers.CharField):
    """DRF's CharField turns 123 into "123"; an order field of the wrong type is a client bug."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false (and "true"/"false" in a query string): not 1, "yes" or "on"."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        if data in ("true", "false"):
            return data == "true"
        self.fail("invalid", input=data)


class StrictDecimalField(drf.StrictDecimalField):
    """A positive decimal with at most 8 decimals, as a plain ASCII string (preferred) or a JSON number."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 8)
        kwargs.setdefault("min_value", MIN_NUMBER)
        kwargs.setdefault("max_value", MAX_NUMBER)
        super().__init__(**kwargs)


@extend_schema_field(OpenApiTypes.STR)
class ValueField(serializers.Field):
    """A value or limit behind a decision: a decimal string, a count, a symbol, true/false or null."""

    def to_representation(self, value: Any) -> str | None:
        return value_text(value)


class StrictSerializer(serializers.Serializer):
    """Unknown keys are an error: a misspelt `reduce_only` must not silently mean False."""

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(getattr(self, "initial_data", {}) or {}) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


# --------------------------------------------------------------------------- orders


class OrderInputSerializer(StrictSerializer):
    """One per /orders/check (about a thousand a second): DRF deep-copies every declared field
    for each instance, re-running each field's __init__ (validators, regexes), which was over
    half of validating an order. These fields are flat and keep no per-request state (bind()
    sets the copy's own name and parent; validators and choices are only read), so shallow
    copies, bound once per class (``fields``), validate the same way."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}

    @cached_property
    def fields(self) -> BindingDict:
        # ... and since nothing of a request is kept on them, every instance reads the one set,
        # bound once to a blank instance (copying and binding ten fields per order was ~6 % of a
        # check's CPU). What a field reads of its parent (root.partial) is the same for all.
        cls = type(self)
        bound = cls.__dict__.get("_bound_fields")
        if bound is None:
            blank = cls()
            bound = BindingDict(blank)
            for name, field in blank.get_fields().items():
                bound[name] = field
            cls._bound_fields = bound
        return bound

    account = StrictIntegerField(min_value=1, max_value=2**62)
    symbol = StrictRegexField(SYMBOL_PATTERN, max_length=32)
    side = serializers.ChoiceField(choices=SIDES)
    type = serializers.ChoiceField(choices=TYPES)
    quantity = StrictDecimalField()
    price = StrictDecimalField(
        required=False,
        allow_null=True,
        help_text="LIMIT: the limit price. MARKET: optional protective price (worst acceptable fill); "
        "the order is then sent as LIMIT IOC at that price.",
    )
    time_in_force = serializers.ChoiceField(choices=TIME_IN_FORCE, required=False)
    reduce_only = StrictBooleanField(required=False, default=False)
    position_side = serializers.ChoiceField(choices=POSITION_SIDES, required=False, default="BOTH")
    client_order_id = StrictRegexField(CLIENT_ORDER_ID_PATTERN, required=False)

    def validate_symbol(self, value: str) -> str:
        if not gate.symbol_known(value):
            raise serializers.ValidationError("Unknown symbol.")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if attrs["type"] == "LIMIT" and attrs.get("price") is None:
            raise serializers.ValidationError({"price": ["A LIMIT order needs a price."]})
        if attrs["type"] == "MARKET" and attrs.get("time_in_force"):
            raise serializers.ValidationError({"time_in_force": ["A MARKET order takes no time in force."]})
        return attrs


# --------------------------------------------------------------------------- the check's fast validation

# What OrderInputSerializer accepts on its common path, decided in plain Python: DRF's machinery
# (fields run one by one, validators, error collection, its dict types) was ~0.2 ms of a check's
# ~0.5 ms. Anything this does not recognise as clean returns None and goes to the serializer,
# which decides it and words the error; so the errors keep DRF's shapes, and for the input this
# does accept it returns what the serializer returns (rules/tests/test_order_lane_validation.py).
_FAST_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,8})?")  # a strict subset of StrictDecimalField's input
_FAST_SYMBOL = re.compile(SYMBOL_PATTERN)
_FAST_CLIENT_ID = re.compile(CLIENT_ORDER_ID_PATTERN)
_FAST_KEYS = frozenset(
    ("account", "symbol", "side", "type", "quantity", "price", "time_in_force", "reduce_only", "position_side")
    + ("client_order_id",)
)
_EIGHT_PLACES = Decimal("1e-8")


def _fast_decimal(value: Any) -> Decimal | None:
    # DRF's DecimalField quantizes to decimal_places (8) with max_digits (20) as precision: at most
    # 12 whole and 8 decimal digits quantize exactly, so this is the value it returns.
    if type(value) is not str or not _FAST_DECIMAL.fullmatch(value):
        return None
    number = Decimal(value).quantize(_EIGHT_PLACES)
    return number if MIN_NUMBER <= number <= MAX_NUMBER else None


def order_input_fast(data: Any) -> dict[str, Any] | None:
    """OrderInputSerializer's validated data for a clean order, or None: let the serializer decide."""
    if type(data) is not dict or not data.keys() <= _FAST_KEYS:
        return None
    account, symbol = data.get("account"), data.get("symbol")
    side, kind = data.get("side"), data.get("type")
    if type(account) is not int or not 1 <= account <= 2**62:
        return None
    if type(symbol) is not str or not _FAST_SYMBOL.fullmatch(symbol):
        return None
    if side not in SIDES or kind not in TYPES or type(side) is not str or type(kind) is not str:
        return None
    quantity = _fast_decimal(data.get("quantity"))
    if quantity is None:
        return None
    out: dict[str, Any] = {"account": account, "symbol": symbol, "side": side, "type": kind, "quantity": quantity}
    if "price" in data:
        raw = data["price"]
        price = None if raw is None else _fast_decimal(raw)
        if price is None and raw is not None:
            return None
        out["price"] = price
    if kind == "LIMIT" and out.get("price") is None:
        return None
    if "time_in_force" in data:
        tif = data["time_in_force"]
        if type(tif) is not str or tif not in TIME_IN_FORCE or kind == "MARKET":
            return None
        out["time_in_force"] = tif
    reduce_only = data.get("reduce_only", False)
    if type(reduce_only) is not bool:
        return None
    out["reduce_only"] = reduce_only
    position_side = data.get("position_side", "BOTH")
    if type(position_side) is not str or position_side not in POSITION_SIDES:
        return None
    out["position_side"] = position_side
    if "client_order_id" in data:
        client_id = data["client_order_id"]
        if type(client_id) is not str or not _FAST_CLIENT_ID.fullmatch(client_id):
            return None
        out["client_order_id"] = client_id
    if not gate.symbol_known(symbol):  # last, as the serializer's validate_symbol runs after the field
        return None
    return out


class FailureSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    value = ValueField(allow_null=True)
    limit = ValueField(allow_null=True)
    asset = serializers.CharField(required=False, help_text="ASSET_ABOVE_CAP: the asset whose cap the order meets")


class ProjectionSerializer(serializers.Serializer):
    position_qty = ValueField(allow_null=True, help_text="signed for one-way; the leg for hedge")
    entry_price = ValueField(allow_null=True)
    fill_price = ValueField(allow_null=True, help_text="assumed fill: never better than the mark")
    position_notional = ValueField(allow_null=True)
    account_gross_notional = ValueField(allow_null=True)
    margin_balance = ValueField(allow_null=True)
    leverage = ValueField(allow_null=True, help_text="account gross notional / margin balance")
    margin_ratio = ValueField(allow_null=True, help_text="of the position's pool: cross, or its isolated margin")
    liquidation_price = ValueField(allow_null=True, help_text='null: no liquidation price (Binance shows "--")')
    liquidation_distance = ValueField(allow_null=True)


class DecisionSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    allowed = serializers.BooleanField()
    decision = serializers.ChoiceField(choices=["allowed", "denied"])
    exit = serializers.BooleanField(help_text="reduceOnly, or a hedge order closing its leg")
    reduces = serializers.BooleanField()
    failures = FailureSerializer(many=True, help_text="every failed check, not only the first")
    warnings = FailureSerializer(many=True, help_text="warning levels crossed; the order is still allowed")
    projected = ProjectionSerializer(allow_null=True)
    checked_at_ms = serializers.IntegerField()


class ExchangeErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(help_text="Binance's code, e.g. -2019")
    message = serializers.CharField()
    status = serializers.IntegerField()
    kind = serializers.CharField()


class SubmitOutputSerializer(DecisionSerializer):
    outcome = serializers.ChoiceField(choices=["denied", "submitted", "rejected", "unknown", "not_sent"])
    exchange = serializers.JSONField(allow_null=True, help_text="the exchange's answer (or the reconciled order)")
    error = ExchangeErrorSerializer(allow_null=True)
    reconciliation = serializers.JSONField(
        allow_null=True, help_text="for outcome unknown: resolution placed | not_placed | unresolved"
    )


class CancelInputSerializer(StrictSerializer):
    account = StrictIntegerField(min_value=1, max_value=2**62)
    symbol = StrictRegexField(SYMBOL_PATTERN, max_length=32)
    order_id = StrictIntegerField(required=False, min_value=1, help_text="cancel this order")
    client_order_id = StrictRegexField(CLIENT_ORDER_ID_PATTERN, required=False, help_text="or this one")

    def validate_symbol(self, value: str) -> str:
        if not gate.symbol_known(value):
            raise serializers.ValidationError("Unknown symbol.")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if "order_id" in attrs and "client_order_id" in attrs:
            raise serializers.ValidationError({"order_id": ["Give order_id or client_order_id, not both."]})
        return attrs


class CancelOutputSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    symbol = serializers.CharField()
    scope = serializers.ChoiceField(choices=["one", "all"])
    outcome = serializers.ChoiceField(choices=["cancelled", "rejected", "unknown", "not_sent"])
    exchange = serializers.JSONField(allow_null=True)
    error = ExchangeErrorSerializer(allow_null=True)


# --------------------------------------------------------------------------- account risk, state, kill


class FeedSerializer(serializers.Serializer):
    stale = serializers.BooleanField()
    last_message_ms = serializers.IntegerField(allow_null=True)
    age_s = ValueField(allow_null=True)


class DailySerializer(serializers.Serializer):
    cancels = serializers.IntegerField()
    fills = serializers.IntegerField()


class RiskOutputSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    trading_state = serializers.CharField()
    published_ms = serializers.IntegerField(allow_null=True, help_text="when the stream computed these figures")
    age_s = ValueField(allow_null=True)
    stale_after_s = ValueField()
    stale = serializers.BooleanField()
    stale_reasons = serializers.ListField(child=serializers.CharField())
    feed = FeedSerializer()
    user_stream_connected = serializers.BooleanField()
    figures = serializers.JSONField(allow_null=True, help_text="AccountRisk, decimals as strings")
    positions = serializers.JSONField(help_text="PositionRisk rows, decimals as strings")
    open_orders = serializers.IntegerField()
    daily = DailySerializer()


class TradingStateInputSerializer(StrictSerializer):
    state = serializers.ChoiceField(choices=TradingState.values)
    reason = StrictCharField(max_length=255)


class TradingStateOutputSerializer(serializers.Serializer):
    account = serializers.IntegerField(source="id")
    trading_state = serializers.CharField()
    trading_state_reason = serializers.CharField()
    trading_state_changed_at = serializers.DateTimeField()


class KillInputSerializer(StrictSerializer):
    flatten = StrictBooleanField(required=False, default=False)
    dry_run = StrictBooleanField(required=False, default=False)
    reason = StrictCharField(required=False, max_length=200, default="kill switch")


class KillOutputSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    halted = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    flatten = serializers.BooleanField()
    plan = serializers.JSONField(help_text="cancel: [{symbol, open_orders}], close: [{symbol, side, quantity, ...}]")
    cancelled = serializers.JSONField(required=False)
    orders = serializers.JSONField(required=False)
    remaining = serializers.JSONField(required=False, help_text="open orders and positions left afterwards")
    error = ExchangeErrorSerializer(
        required=False, help_text="the exchange failed part-way: the account stays HALTED (answered with 502)"
    )
