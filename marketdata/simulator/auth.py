"""API-key, HMAC signature and timestamp checks for SIGNED and USER_STREAM endpoints.

The signature is checked over the bytes as received: the raw query string
followed directly by the raw body (Binance's ``totalParams``, no separator),
minus the trailing ``&signature=...``. Nothing is decoded or re-sorted, so a
client that signs one string and sends another fails here as it would on
Binance. (python-binance sorts its parameters and signs exactly what it sends.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .errors import AHEAD_TIMESTAMP, BAD_API_KEY, BAD_RECV_WINDOW, BAD_SIGNATURE, BAD_TIMESTAMP, api_error, missing

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
FUTURE_SLACK_MS = 1000  # a timestamp up to 1 s ahead of the server is accepted


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _strip_signature(part: str) -> tuple[str, str] | None:
    head, sep, signature = part.rpartition("signature=")
    if not sep or (head and not head.endswith("&")) or "&" in signature:
        return None
    return head.removesuffix("&"), signature


def split_signature(raw_query: str, raw_body: str) -> tuple[str, str] | None:
    """(signed payload, signature) when ``signature`` is the last parameter of the body or the query."""
    in_body = _strip_signature(raw_body) if raw_body else None
    if in_body is not None:
        return raw_query + in_body[0], in_body[1]
    in_query = _strip_signature(raw_query) if raw_query else None
    if in_query is not None:
        return in_query[0] + raw_body, in_query[1]
    return None


def check_api_key(api_key: str | None, secrets: Mapping[str, str]) -> str:
    """The secret for ``api_key``; HTTP 401 -2015 when it is missing or unknown."""
    if not api_key or api_key not in secrets:
        raise api_error(BAD_API_KEY, status=401)
    return secrets[api_key]


def check_signature(*, raw_query: str, raw_body: str, secret: str) -> None:
    found = split_signature(raw_query, raw_body)
    if found is None:
        raise missing("signature")
    payload, signature = found
    if not hmac.compare_digest(hmac_hex(secret, payload), signature.lower()):
        raise api_error(BAD_SIGNATURE)


def check_timestamp(params: Mapping[str, str], server_ms: int) -> None:
    """Binance's rule: timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow."""
    raw = params.get("timestamp", "")
    if not raw.isdigit():
        raise missing("timestamp")
    window_raw = params.get("recvWindow", str(DEFAULT_RECV_WINDOW_MS))
    if not window_raw.isdigit():
        raise missing("recvWindow")
    window = int(window_raw)
    if window > MAX_RECV_WINDOW_MS:
        raise api_error(BAD_RECV_WINDOW)
    timestamp = int(raw)
    if timestamp >= server_ms + FUTURE_SLACK_MS:
        raise api_error(AHEAD_TIMESTAMP)
    if server_ms - timestamp > window:
        raise api_error(BAD_TIMESTAMP)
