"""What every API of the desk shares: its JSON parser, its pagination, its strict number fields.

Each answers bad input with a 400 naming what is wrong, where DRF's own classes either raised a
500 (JSON nested past the interpreter's recursion limit, a page size past any integer the
database takes) or quietly accepted what no client should send ("1_000", "１０", " 5").
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import models
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

# Deeper than any body the API takes (an order is flat, a profile's caps two levels), far below
# CPython's recursion limit, so neither the parser nor anything that walks the value later
# (validation, error rendering, history diffs) can overflow the stack.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def too_deep() -> str:
    return _("JSON parse error - nested more than %(depth)d levels deep.") % {"depth": MAX_JSON_DEPTH}


def whole_number(low: int, high: int) -> str:
    return _("A whole number from %(low)d to %(high)d.") % {"low": low, "high": high}


class StrictJSONParser(JSONParser):
    """DRF's JSON parser (NaN and Infinity refused), plus a 400 for JSON nested too deeply.

    ``[`` × 30,000 made json.loads raise RecursionError, which DRF does not catch: a 500. The
    depth is only walked when the body holds more brackets than the limit, so an order (a few
    hundred bytes, one pair of braces) pays two ``bytes.count`` calls (the check lane's path).
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        return self.parse_bytes(raw, encoding)

    def parse_bytes(self, raw: bytes, encoding: str = "utf-8") -> Any:
        value = _fast_loads(raw) if encoding.lower().replace("-", "") == "utf8" else _SLOW
        if value is not _SLOW:
            if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_exceeds(value, MAX_JSON_DEPTH):
                raise ParseError(too_deep())
            return value
        try:
            text = raw.decode(encoding)
            value = json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError(too_deep()) from None
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise ParseError(f"JSON parse error - {exc}") from None
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_exceeds(value, MAX_JSON_DEPTH):
            raise ParseError(too_deep())
        return value


_SLOW = object()
_LONG_INTEGER = re.compile(rb"[0-9]{19}")


def _fast_loads(raw: bytes) -> Any:
    """orjson's answer where it is the json module's, else _SLOW (the json module then decides,
    and words any error, exactly as before). orjson is ~5x faster on an order and refuses NaN and
    Infinity as the strict parser does; it reads an integer past 64 bits as a float (json: an
    int), and refuses what json accepts in a few corners (lone surrogates, 1e400): those go slow."""
    if _LONG_INTEGER.search(raw) is not None:
        return _SLOW
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _SLOW


ASCII_DIGITS = re.compile(r"[0-9]+")
# A plain decimal as clients write one: ASCII digits, an optional minus, point and exponent.
# Python's Decimal() also takes "1_000", full-width and Arabic-Indic digits and surrounding
# whitespace (and DRF strips the latter before it looks): a typo or a trick, never an amount.
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, or a string of ASCII digits (a query string); not 1.0, true, "١٢" or " 5"."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not (
            isinstance(data, int) or (isinstance(data, str) and ASCII_DIGITS.fullmatch(data))
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDecimalField(serializers.DecimalField):
    """A decimal string in plain ASCII (preferred) or a JSON number."""

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (str, int, float, Decimal)):
            self.fail("invalid")
        if isinstance(data, str) and not PLAIN_DECIMAL.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose number fields are the strict ones above."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DecimalField: StrictDecimalField,
        models.IntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.PositiveBigIntegerField: StrictIntegerField,
    }


class Pagination(LimitOffsetPagination):
    """limit/offset pages with bounds: out of range is a 400 that says the bound.

    DRF's own took ``?limit=99999999999999999999`` (a 500: too large for the database's integer)
    and, with a max_limit, would shrink it silently; a client asking for more than it gets
    should hear so, with the maximum to ask for instead.
    """

    default_limit = 100
    max_limit = 1000
    max_offset = 10**9  # far past any table here, well inside every database's LIMIT/OFFSET range

    def get_limit(self, request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        if not ASCII_DIGITS.fullmatch(raw) or not 1 <= int(raw) <= self.max_limit:
            error = ValidationError({self.limit_query_param: [whole_number(1, self.max_limit)]})
            error.detail["max_limit"] = self.max_limit  # a number for clients to use, not an error message
            raise error
        return int(raw)

    def get_offset(self, request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        if not ASCII_DIGITS.fullmatch(raw) or int(raw) > self.max_offset:
            raise ValidationError({self.offset_query_param: [whole_number(0, self.max_offset)]})
        return int(raw)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": self.max_offset, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
