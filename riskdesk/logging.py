"""Log filter that keeps exchange credentials out of every log line."""

from __future__ import annotations

import logging
import re

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
