"""Production logs: one JSON object per line with the request id; secrets still redacted (issue 14 item 11)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from riskdesk.logging import JsonFormatter, RedactSecretsFilter, RequestIdFilter, request_id_var

ROOT = Path(__file__).resolve().parents[2]
KEY = "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE="


class Lines(logging.Handler):
    """The production console handler's filters and formatter, writing into a list."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RedactSecretsFilter())
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger("riskdesk.test")
    logger.addHandler(handler)
    yield handler.lines, logger
    logger.removeHandler(handler)


def test_a_line_is_one_json_object_with_time_level_logger_message_and_request_id(lines):
    out, logger = lines
    token = request_id_var.set("req-123")
    try:
        logger.warning("order %s denied", 42)
    finally:
        request_id_var.reset(token)
    (line,) = out
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "riskdesk.test"
    assert record["message"] == "order 42 denied" and record["request_id"] == "req-123"
    assert record["time"].endswith("+00:00")


def test_secrets_are_redacted_in_the_message_the_traceback_and_extra_fields(lines):
    out, logger = lines
    try:
        raise ValueError("GET /fapi/v1/order?symbol=BTCUSDT&signature=deadbeef01")
    except ValueError:
        logger.exception("call failed api_secret=s3cr3tvalue", extra={"url": "https://x/hook/feishutoken123"})
    text = out[0]
    record = json.loads(text)
    assert "deadbeef01" not in text and "s3cr3tvalue" not in text and "feishutoken123" not in text
    assert "signature=***" in record["exc_info"] and record["url"].endswith("/hook/***")


def test_a_response_carries_a_fresh_request_id():
    response = Client().get("/health")
    assert len(response["X-Request-ID"]) == 32


def test_a_sane_request_id_from_the_proxy_is_kept_and_a_forged_one_replaced():
    assert Client().get("/health", HTTP_X_REQUEST_ID="nginx-abc.123")["X-Request-ID"] == "nginx-abc.123"
    forged = Client().get("/health", HTTP_X_REQUEST_ID='x" level="CRITICAL')["X-Request-ID"]
    assert forged != 'x" level="CRITICAL' and len(forged) == 32


def test_lines_logged_while_serving_a_request_carry_its_id(db):
    handler = Lines()
    logger = logging.getLogger("django.request")  # "Not Found: ..." is logged after the middleware returns
    logger.addHandler(handler)
    try:
        Client().get("/no-such-page", HTTP_X_REQUEST_ID="trace-77")
    finally:
        logger.removeHandler(handler)
    assert [json.loads(line)["request_id"] for line in handler.lines] == ["trace-77"]


def run_django(env_extra: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
    env.update(SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEY=KEY, DEBUG="false", **env_extra)
    env.update(DJANGO_SETTINGS_MODULE="riskdesk.settings", PYTHONPATH=str(ROOT))
    script = "import django, logging; django.setup(); " + code
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_production_logs_json_by_default_and_plain_on_request():
    code = "logging.getLogger('riskdesk.x').warning('hello apiKey=abc123')"
    production = run_django({}, code)
    assert production.returncode == 0, production.stderr
    record = json.loads(production.stderr.strip().splitlines()[-1])
    assert record["message"] == "hello apiKey=***" and record["request_id"] == ""
    plain = run_django({"LOG_FORMAT": "plain"}, code)
    assert plain.stderr.strip().endswith("WARNING riskdesk.x: hello apiKey=***")


def test_a_bad_log_format_stops_the_start_naming_it():
    result = run_django({"LOG_FORMAT": "xml"}, "")
    assert result.returncode != 0 and "LOG_FORMAT must be json or plain" in result.stderr
