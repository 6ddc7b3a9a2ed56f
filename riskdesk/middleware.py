"""Per-request activation of the signed-in user's timezone.

Django renders aware datetimes in the *current* timezone; without this every page would show
settings.TIME_ZONE (UTC) and a trader in Shanghai would read times eight hours off."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse
from django.utils import timezone


def user_zone(user) -> ZoneInfo | None:
    """The user's zone, or None (the default) for anonymous users and unknown names."""
    name = getattr(user, "timezone", "") if getattr(user, "is_authenticated", False) else ""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # a typo in the admin must not break every page for that user


class UserTimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = user_zone(getattr(request, "user", None))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()  # worker threads are reused: never leak one user's zone into the next request
