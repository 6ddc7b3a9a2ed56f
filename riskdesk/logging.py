"""Logging: the filter that keeps exchange credentials out of every log line, the request id
every line carries, and the JSON formatter production uses (LOG_FORMAT=json)."""

from __future__ import annotations

import contextvars
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pythonjsonlogger.json

# Binance signs with `signature=<hex>` and authenticates with the X-MBX-APIKEY header;
# a traceback that prints a request must not leak either.
_PATTERNS = [
    re.compile(r"(signature=)[0-9a-fA-F]+"),
    re.compile(r"(X-MBX-APIKEY['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+", re.IGNORECASE),
    re.compile(r"((?:api_key|api_secret|apiKey|secretKey|secret)['\"]?\s*[:=]\s*['\"]?)[^'\",\s}&]+"),
    # Chat robots carry their token in the URL: WeCom ?key=, DingTalk ?access_token=&sign=,
    # Telegram /bot<token>/, Feishu /hook/<token>. urllib3 logs those URLs at DEBUG.
    re.compile(r"([?&](?:key|access_token|sign|token)=)[^&\s'\"]+"),
    re.compile(r"(/bot)[0-9]+:[A-Za-z0-9_-]+"),
    re.compile(r"(/hook/)[A-Za-z0-9_-]+"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = (type(exc), exc, None)
        return True


# --- Request ids and JSON lines (issue 14 item 11) -------------------------------------------------

# The id of the request being served, in whatever thread or task serves it: asgiref copies the
# context into sync_to_async's threads, so a sync view's log lines carry the id the middleware set.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (empty outside a request), for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id (+ exc_info, extras).

    The redaction filter has already cleaned the message and the traceback text, but this formatter
    renders exc_info itself (not from exc_text) and dumps `extra=` fields the filter never saw, so
    the finished line is redacted once more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s", *args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
