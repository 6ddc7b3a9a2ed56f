"""Response headers the desk adds for security (the rest come from Django's SecurityMiddleware and
django-csp; settings "Security")."""

from __future__ import annotations

from django.conf import settings


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every page and API answer that did not choose its own: they carry
    positions, balances and tokens, which neither a shared proxy nor the browser's disk may keep
    (after sign-out, the back button must not show them). Static files are exempt: they are public
    and nginx serves them with their own expiry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        static = "/" + settings.STATIC_URL.lstrip("/")
        if not response.has_header("Cache-Control") and not request.path.startswith(static):
            response["Cache-Control"] = "no-store"
        return response
