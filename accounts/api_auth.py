"""The JWT token endpoints with the sign-in protections: a DRF throttle per client address, and
the axes lockout (accounts/lockout.py) answered as JSON with a reason code."""

from __future__ import annotations

import logging
import math

from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import lockout

log = logging.getLogger(__name__)

THROTTLED = "AUTH_THROTTLED"


class AuthTokenThrottle(ScopedRateThrottle):
    """The token endpoints' rate per client address. Its history lives in the cache (Redis in
    production): when that is down the request goes through, logged, since the lockout (kept in the
    database) still counts wrong passwords; refusing every sign-in would lock the desk out instead."""

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - any cache failure: fail open, the lockout still holds
            log.warning("token throttle: cache unavailable, request not rate-limited", exc_info=True)
            return True


class _Throttled(exceptions.APIException):
    """A 429 with a reason code, as the lockout's (DRF's Throttled only takes a sentence)."""

    status_code = 429

    def __init__(self, wait: float | None):
        detail = _("Too many sign-in requests from this address. Wait and try again.")
        super().__init__({"code": THROTTLED, "detail": detail})
        self.wait = math.ceil(wait or 1)  # DRF's handler sends it as Retry-After


class _ProtectedTokenView:
    throttle_classes = [AuthTokenThrottle]
    throttle_scope = "auth_token"

    def throttled(self, request, wait):
        raise _Throttled(wait)

    def handle_exception(self, exc):
        # axes flags the request it refused (or just locked); simplejwt only saw "no such user".
        if isinstance(exc, exceptions.AuthenticationFailed) and getattr(self.request, "axes_locked_out", False):
            minutes = lockout.cool_off_minutes(self.request)
            body = lockout.locked_out_body(minutes)
            return Response(body, status=lockout.STATUS, headers={"Retry-After": str(minutes * 60)})
        return super().handle_exception(exc)


class TokenPairSerializer(TokenObtainPairSerializer):
    def validate(self, attrs):
        data = super().validate(attrs)
        # A token is a sign-in: say so as a session login does, so axes forgets the login's earlier
        # failures (AXES_RESET_ON_SUCCESS) and last_login is kept; simplejwt sends no signal.
        user_logged_in.send(sender=type(self.user), request=self.context["request"], user=self.user)
        return data


class TokenObtainApi(_ProtectedTokenView, TokenObtainPairView):
    """Obtain an access and a refresh token with a login and password. Repeated wrong passwords lock
    the login out for a while (429, code LOGIN_LOCKED_OUT); too many requests are throttled (429,
    code AUTH_THROTTLED)."""

    serializer_class = TokenPairSerializer


class TokenRefreshApi(_ProtectedTokenView, TokenRefreshView):
    """Exchange a refresh token for a new access token (throttled like the sign-in)."""
