"""Brute-force protection for every sign-in: the desk's /login/, the admin's /admin/login/ and the
API's /api/v1/auth/token/ (django-axes, settings AXES_*). After LOGIN_FAILURE_LIMIT wrong passwords
for one login from one address, that pair is refused, the right password included, until
LOGIN_COOLOFF_MINUTES have passed; the answer says so, in the user's language, with a reason code
on the API."""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

LOCKED_OUT = "LOGIN_LOCKED_OUT"  # the API's reason code
STATUS = 429


class LoginAttemptsBackend(AxesStandaloneBackend):
    """Counts and refuses sign-ins that come over the network. `authenticate()` without a request
    (the shell, a management command, the test client's login) comes from inside the machine:
    nothing to throttle, where axes' own backend would raise instead."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def cool_off_minutes(request: HttpRequest | None = None) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else 0


def locked_out_message(minutes: int) -> str:
    return _(
        "Too many failed sign-in attempts for this login. Sign-in is locked for %(minutes)d minutes; "
        "try again after that, or ask a risk manager."
    ) % {"minutes": minutes}


def locked_out_body(minutes: int) -> dict:
    """The API's answer to a locked-out sign-in."""
    return {"code": LOCKED_OUT, "detail": locked_out_message(minutes), "retry_after_s": minutes * 60}


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: what a locked-out sign-in gets, JSON on the API, a page elsewhere."""
    minutes = cool_off_minutes(request)
    if request.path.startswith("/api/"):
        response = JsonResponse(locked_out_body(minutes), status=STATUS)
    else:
        response = render(request, "accounts/locked_out.html", {"message": locked_out_message(minutes)}, status=STATUS)
    response["Retry-After"] = str(minutes * 60)
    return response
