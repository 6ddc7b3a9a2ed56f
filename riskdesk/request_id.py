"""X-Request-ID: every request gets an id, taken from the proxy (nginx's $request_id) when it sent
a sane one, and every log line written while serving it carries that id (riskdesk.logging). The
response echoes it, so a user's report or a client's error can be matched to the server's lines."""

from __future__ import annotations

import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from riskdesk.logging import request_id_var

HEADER = "X-Request-ID"
# A client may send anything; only a short token of safe characters goes into our logs (no
# newlines or quotes to forge log lines with), anything else is replaced by a fresh id.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_for(request: HttpRequest) -> str:
    given = request.headers.get(HEADER, "")
    return given if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Sync and async both, so async views keep running without a thread hop for this."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        self._begin(request)
        response = self.get_response(request)
        response[HEADER] = request.request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self._begin(request)
        response = await self.get_response(request)
        response[HEADER] = request.request_id
        return response

    @staticmethod
    def _begin(request: HttpRequest) -> None:
        # Not reset on the way out: Django logs a 4xx/5xx ("Not Found: ...") after the middleware
        # chain has returned, and that line needs the id too. Each ASGI request runs in a task of its
        # own, whose context ends with it; a new request always sets its own id first.
        request.request_id = request_id_for(request)
        request_id_var.set(request.request_id)
