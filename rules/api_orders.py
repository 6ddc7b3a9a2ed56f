"""The order gate's API: check, submit, cancel, account risk, trading state, kill switch.

Thin views: parse → access check → service (rules/gate.py) → render. Access is decided in
accounts/access.py: outsiders 403, accounts a user cannot see 404, viewers may check and read
but not send, cancel or kill (403), only risk managers change the trading state or kill.

``POST /orders/check`` has two doors onto one set of functions: ``OrderCheckApi`` (DRF: the
documented definition, session-authenticated browsers, the test client) and ``order_check_fast``,
which riskdesk/asgi.py calls for JWT requests without Django's request cycle (docs/ORDER_GATE.md,
"The fast path"). Both authenticate with ``CachedJWTAuthentication``, check ``permission_classes``,
validate with ``OrderInputSerializer``, decide access with ``_account_recent``, run the gate and
render with DRF's JSON renderer and exception handler.
"""

from __future__ import annotations

import functools
import time
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.http import Http404
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import trans_real
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.access import can_trade, get_account_for_user
from accounts.models import ExchangeAccount
from accounts.permissions import IsDeskMember, RiskManagerWrites
from riskdesk.drf import StrictJSONParser
from rules import gate
from rules.checks import Order
from rules.serializers_orders import (
    CancelInputSerializer,
    CancelOutputSerializer,
    DecisionSerializer,
    KillInputSerializer,
    KillOutputSerializer,
    OrderInputSerializer,
    RiskOutputSerializer,
    SubmitOutputSerializer,
    TradingStateInputSerializer,
    TradingStateOutputSerializer,
    order_input_fast,
)

# Answers to a submission, by outcome: 201 on the exchange's book, 422 refused (by the gate or
# the exchange), 202 in doubt (reconciled, see `reconciliation`), 503 never sent.
SUBMIT_STATUS = {"submitted": 201, "denied": 422, "rejected": 422, "unknown": 202, "not_sent": 503}
CANCEL_STATUS = {"cancelled": 200, "rejected": 422, "unknown": 202, "not_sent": 503}
REFUSALS = {
    400: OpenApiResponse(description="bad input: field errors"),
    401: OpenApiResponse(description="no or expired token"),
    403: OpenApiResponse(description="no desk role, or not allowed to act"),
    404: OpenApiResponse(description="no such account (or not yours)"),
}


# /orders/check answers about a thousand checks a second; a user row and an access query per check
# would cost more than the check. Its answers come from what accounts.access decided at most
# ACCESS_CACHE_S ago. Everything that acts (submit, cancel, kill, trading state) reads access
# fresh, and a halt reaches the check at once through the live cache (rules.gate).
ACCESS_CACHE_S = 2.0
_CACHE_BOUND = 10_000
_USERS: dict[Any, tuple[float, Any]] = {}
_ACCESS: dict[tuple, tuple[float, ExchangeAccount | None]] = {}
_TOKENS: dict[bytes, tuple[float, Any]] = {}  # raw access token -> (its exp, simplejwt's validated token)


def access_cache_clear() -> None:
    _USERS.clear()
    _ACCESS.clear()
    _TOKENS.clear()


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) > _CACHE_BOUND:
        cache.clear()
    cache[key] = (time.monotonic(), value)


def _recall(cache: dict, key: Any) -> tuple[bool, Any]:
    hit = cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < ACCESS_CACHE_S:
        return True, hit[1]
    return False, None


class CachedJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication (signature and expiry checked every time) with the user row
    kept for ACCESS_CACHE_S. An inactive or deleted user raises and is not kept."""

    def get_validated_token(self, raw_token: bytes):
        """simplejwt's answer for this token string, kept until the token's ``exp``: a token is
        immutable, so its signature and claims check the same every time until it expires
        (PyJWT's decode was ~6 % of a check). Refusals are not kept; past ``exp`` (or for a
        token with ``nbf``) simplejwt decides again, leeway included."""
        hit = _TOKENS.get(raw_token)
        if hit is not None and time.time() < hit[0]:
            return hit[1]
        token = super().get_validated_token(raw_token)
        exp = token.get("exp")
        if isinstance(exp, (int, float)) and "nbf" not in token:
            if len(_TOKENS) > _CACHE_BOUND:
                _TOKENS.clear()
            _TOKENS[bytes(raw_token)] = (exp, token)
        return token

    def get_user(self, validated_token):
        found, user = self.recent_user(validated_token)
        if not found:
            user = super().get_user(validated_token)
            _remember(_USERS, validated_token.get(jwt_settings.USER_ID_CLAIM), user)
        return user

    def recent_user(self, validated_token) -> tuple[bool, Any]:
        """(True, user) when get_user would answer from the cache, without touching the database."""
        return _recall(_USERS, validated_token.get(jwt_settings.USER_ID_CLAIM))


def _account_recent(user, account_id: int) -> ExchangeAccount:
    """accounts.access's answer for (user, account), at most ACCESS_CACHE_S old (a 404 too)."""
    if gate.account_meta(account_id) is None:
        raise Http404("No such account.")  # as for another trader's account: ids are not enumerable
    key = (user.pk, account_id)
    found, account = _recall(_ACCESS, key)
    if not found:
        try:
            account = get_account_for_user(user, account_id)
        except Http404:
            account = None
        _remember(_ACCESS, key, account)
    if account is None:
        raise Http404("No such account.")
    return account


class CanTrade(BasePermission):
    message = "Viewers are read-only: only traders and risk managers send and cancel orders."

    def has_permission(self, request, view) -> bool:
        return can_trade(request.user)


def _actor(request) -> gate.Actor:
    return _actor_of(request.user, request.auth)


def _actor_of(user, token: Any) -> gate.Actor:
    jti = token.get("jti", "") if hasattr(token, "get") else ""
    return gate.Actor(user=user, token_id=str(jti or ""))


def _account(request, account_id: int, *, write: bool = False) -> ExchangeAccount:
    """404 for an id no account has, and the same 404 for one the user may not see (accounts.access)."""
    if gate.account_meta(account_id) is None:
        raise Http404("No such account.")
    return get_account_for_user(request.user, account_id, write=write)


def _order(data: dict[str, Any]) -> Order:
    return Order.make(
        symbol=data["symbol"],
        side=data["side"],
        type=data["type"],
        qty=data["quantity"],
        price=data.get("price"),
        reduce_only=data["reduce_only"],
        position_side=data["position_side"],
        time_in_force=data.get("time_in_force"),
        client_order_id=data.get("client_order_id", ""),
    )


def _parsed(serializer_class: type, data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _gate_errors(exc: gate.GateError) -> ValidationError:
    return ValidationError({exc.field: [exc.message]})


def check_begin(user, data: Any) -> gate.CheckPlan:
    """/orders/check up to its one round trip: the input (400), access (404 for an unknown
    account and for one not yours alike) and the gate's plan. Reads the database only on a cache miss."""
    parsed = order_input_fast(data) or _parsed(OrderInputSerializer, data)
    account = _account_recent(user, parsed["account"])
    try:
        return gate.check_plan(account=account, order=_order(parsed))
    except gate.GateError as exc:
        raise _gate_errors(exc) from exc


def check_answer(result: gate.CheckResult) -> dict[str, Any]:
    # The hot endpoint: the body is already the OutputSerializer's shape with Decimals, and
    # rendering it as plain strings costs ~3 % of running it through DRF's nested fields
    # (test_orders_api_check proves both give the same JSON).
    return gate.plain(result.body())


class OrderCheckApi(APIView):
    """POST /api/v1/orders/check: the decision only; nothing is sent or reserved."""

    authentication_classes = [CachedJWTAuthentication, SessionAuthentication]
    permission_classes = [IsDeskMember]
    InputSerializer = OrderInputSerializer
    OutputSerializer = DecisionSerializer

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **REFUSALS}, operation_id="orders_check")
    def post(self, request):
        plan = check_begin(request.user, request.data)
        return Response(check_answer(gate.check_run(plan, actor=_actor(request))))


# --------------------------------------------------------------------------- the fast path

_JWT: CachedJWTAuthentication | None = None
_RENDERER = JSONRenderer()  # OrderCheckApi's renderer for a client that accepts JSON
_PARSER = StrictJSONParser()  # ... and its parser (NaN, Infinity and deep nesting are refused)
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _jwt() -> CachedJWTAuthentication:
    global _JWT
    if _JWT is None:
        _JWT = CachedJWTAuthentication()  # reads the user model: built after the apps are loaded
    return _JWT


async def order_check_fast(authorization: bytes, body: bytes, accept_language: bytes | None = None) -> Answer:
    """POST /orders/check for a ``Bearer`` request, on the event loop: (status, JSON, extra
    headers) as OrderCheckApi answers them, in DRF's order (401, 403, then 400 / 404), in the
    language the request's Accept-Language picks (as LocaleMiddleware would).
    The database is read only on a cache miss, in a thread (``gate.off_loop``)."""
    return await order_check_answer(authorization, body=body, language=language_of(accept_language))


@functools.lru_cache(maxsize=256)
def language_of(accept_language: bytes | None) -> str:
    """The desk's language for an Accept-Language header (LocaleMiddleware's choice without a
    cookie or a URL prefix: bots send neither); the default without one."""
    if accept_language:
        for code, _q in trans_real.parse_accept_lang_header(accept_language.decode("latin-1")):
            if code == "*":
                break
            try:
                return translation.get_supported_language_variant(code)
            except LookupError:
                continue
    return settings.LANGUAGE_CODE


_NO_DATA = object()


async def order_check_answer(
    authorization: bytes, *, body: bytes = b"", data: Any = _NO_DATA, language: str | None = None
) -> Answer:
    """The fast path's one function, for the HTTP lane (``body``: the request's bytes) and the
    WebSocket lane (rules/consumers.py; ``data``: the order already parsed from its frame). The
    token is checked (and its user re-read past ACCESS_CACHE_S) on every call, either way. The
    messages are in ``language`` (the default when None): set here for this task, never taken from
    whatever a thread last activated."""
    with translation.override(language or settings.LANGUAGE_CODE):
        return await _order_check_answer(authorization, body, data)


async def _order_check_answer(authorization: bytes, body: bytes, data: Any) -> Answer:
    try:
        user, token = await _authenticated(authorization)
        _permitted(user)
        if data is _NO_DATA:
            data = _PARSER.parse_bytes(body) if body else {}  # DRF: an empty body is {}
        try:
            plan = check_begin(user, data)
        except SynchronousOnlyOperation:
            # A cache miss (access older than ACCESS_CACHE_S, a catalogue reload on an unknown
            # name): the ORM refused on the loop before sending any query, so the step is simply
            # repeated where it may run. Nothing before the query changed any state.
            plan = await gate.off_loop(check_begin, user, data)
        result = await gate.check_run_async(plan, actor=_actor_of(user, token))
        return 200, render_json(result.body()), []
    except Exception as exc:  # DRF's handler decides; what it does not know is raised
        return _refusal(exc)


def parse_json(raw: bytes) -> Any:
    """The API's JSON parser on bytes (NaN, Infinity and nesting past MAX_JSON_DEPTH are a ParseError)."""
    return _PARSER.parse_bytes(raw)


async def order_lane_access(authorization: bytes) -> tuple[int, bytes]:
    """Whether this token may use /orders/check now, as order_check_answer decides it before an
    order (401 / 403 with DRF's body), for the WebSocket lane's handshake and its idle re-checks.
    200: ``{"user": id, "expires_ms": the token's exp}``."""
    try:
        user, token = await _authenticated(authorization)
        _permitted(user)
    except Exception as exc:
        status, payload, _extra = _refusal(exc)
        return status, payload
    exp = token.get("exp")
    return 200, orjson.dumps({"user": user.pk, "expires_ms": int(exp) * 1000 if exp else None})


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # as gate.plain
    if isinstance(value, Promise):  # a lazy translation, as DRF's encoder renders it
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def render_json(body: dict[str, Any]) -> bytes:
    """``JSONRenderer().render(gate.plain(body))``, byte for byte, at a fraction of its cost: orjson
    writes the same compact UTF-8 JSON, Decimals go out as gate.plain writes them (exact strings,
    never floats), and U+2028/2029 are escaped as DRF escapes them (test_order_lane_render.py)."""
    out = orjson.dumps(body, default=_decimal_text)
    if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
        out = out.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    return out


async def _authenticated(authorization: bytes) -> tuple[Any, Any]:
    auth = _jwt()
    raw = auth.get_raw_token(authorization)
    if raw is None:
        raise NotAuthenticated()
    token = auth.get_validated_token(raw)  # signature, expiry, token type: simplejwt's own classes
    found, user = auth.recent_user(token)
    if not found:
        user = await gate.off_loop(auth.get_user, token)  # also refuses an inactive or deleted user
    return user, token


def _permitted(user) -> None:
    """OrderCheckApi's permission classes, as DRF's check_permissions runs them (the user is authenticated)."""
    for permission_class in OrderCheckApi.permission_classes:
        permission = permission_class()
        if not permission.has_permission(_Caller(user), OrderCheckApi):
            raise PermissionDenied(detail=getattr(permission, "message", None), code=getattr(permission, "code", None))


class _Caller:
    """What a permission class reads from a request."""

    method = "POST"

    def __init__(self, user) -> None:
        self.user = user


def _refusal(exc: Exception) -> Answer:
    if isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
        exc.auth_header = _jwt().authenticate_header(None)  # as APIView.handle_exception: JWT comes first
    response = exception_handler(exc, {})
    if response is None:
        raise exc
    extra = [(name.lower().encode(), response[name].encode()) for name in ("WWW-Authenticate",) if name in response]
    return response.status_code, _RENDERER.render(response.data), extra


class OrderSubmitApi(APIView):
    """POST /api/v1/orders: check, then forward what passed to the exchange."""

    permission_classes = [IsDeskMember, CanTrade]
    InputSerializer = OrderInputSerializer
    OutputSerializer = SubmitOutputSerializer

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            202: OutputSerializer,
            422: OutputSerializer,
            503: OutputSerializer,
            **REFUSALS,
        },
        operation_id="orders_submit",
    )
    def post(self, request):
        # Named, not self.: OrdersApi inherits both operations and their serializers would clash.
        data = _parsed(OrderSubmitApi.InputSerializer, request.data)
        account = _account(request, data["account"])
        try:
            result = gate.order_submit(account=account, order=_order(data), actor=_actor(request))
        except gate.GateError as exc:
            raise _gate_errors(exc) from exc
        return Response(OrderSubmitApi.OutputSerializer(result.body()).data, status=SUBMIT_STATUS[result.outcome])


class OrderCancelApi(APIView):
    """DELETE /api/v1/orders: cancel one order (order_id or client_order_id) or all of a symbol.
    Never blocked by a check: only access decides."""

    permission_classes = [IsDeskMember, CanTrade]
    InputSerializer = CancelInputSerializer
    OutputSerializer = CancelOutputSerializer

    @extend_schema(
        parameters=[InputSerializer],
        responses={
            200: OutputSerializer,
            202: OutputSerializer,
            422: OutputSerializer,
            503: OutputSerializer,
            **REFUSALS,
        },
        operation_id="orders_cancel",
    )
    def delete(self, request):
        # Query parameters (the documented form) or a JSON body, for clients that send one.
        data = _parsed(OrderCancelApi.InputSerializer, request.data or request.query_params.dict())
        account = _account(request, data["account"])
        result = gate.order_cancel(
            account=account,
            symbol=data["symbol"],
            order_id=data.get("order_id"),
            client_order_id=data.get("client_order_id"),
            actor=_actor(request),
        )
        one = "order_id" in data or "client_order_id" in data
        body = {"account": account.id, "symbol": data["symbol"], "scope": "one" if one else "all", **result.body()}
        return Response(OrderCancelApi.OutputSerializer(body).data, status=CANCEL_STATUS[result.outcome])


class OrdersApi(OrderSubmitApi, OrderCancelApi):
    """/api/v1/orders: POST submits, DELETE cancels (two operations, one path)."""


class AccountRiskApi(APIView):
    """GET /api/v1/accounts/{id}/risk: the live figures and how old they are."""

    permission_classes = [IsDeskMember]
    OutputSerializer = RiskOutputSerializer

    @extend_schema(responses={200: OutputSerializer, **REFUSALS})
    def get(self, request, account_id: int):
        account = get_account_for_user(request.user, account_id)
        return Response(self.OutputSerializer(gate.account_risk(account=account)).data)


class TradingStateApi(APIView):
    """POST /api/v1/accounts/{id}/trading-state: ACTIVE, REDUCING or HALTED, with a reason."""

    permission_classes = [RiskManagerWrites]
    InputSerializer = TradingStateInputSerializer
    OutputSerializer = TradingStateOutputSerializer

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, **REFUSALS})
    def post(self, request, account_id: int):
        data = _parsed(self.InputSerializer, request.data)
        account = get_account_for_user(request.user, account_id, write=True)
        account = gate.account_trading_state_set(
            account=account, state=data["state"], reason=data["reason"], by=request.user
        )
        return Response(self.OutputSerializer(account).data)


class KillApi(APIView):
    """POST /api/v1/accounts/{id}/kill: HALTED, cancel every open order, and with flatten=true close
    every position with reduce-only MARKET orders; dry_run=true returns the plan only."""

    permission_classes = [RiskManagerWrites]
    InputSerializer = KillInputSerializer
    OutputSerializer = KillOutputSerializer

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 502: OutputSerializer, **REFUSALS})
    def post(self, request, account_id: int):
        data = _parsed(self.InputSerializer, request.data)
        account = get_account_for_user(request.user, account_id, write=True)
        body = gate.account_kill(
            account=account,
            by=request.user,
            flatten=data["flatten"],
            dry_run=data["dry_run"],
            reason=data["reason"],
            token_id=_actor(request).token_id,
        )
        answer = status.HTTP_502_BAD_GATEWAY if "error" in body else status.HTTP_200_OK
        return Response(self.OutputSerializer(gate.plain(body)).data, status=answer)
