"""Real local receivers for the notification tests: an HTTP server standing in for the
webhook endpoint and the WeCom / DingTalk / Feishu / Telegram APIs, and an SMTP server.
Nothing of ours is mocked; the senders make real requests over loopback."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller

from alerts import outbox, services
from alerts.models import Level, NotificationChannel

# One body that every vendor API reads as success: WeCom/DingTalk errcode, Feishu code, Telegram ok.
OK_BODY = {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success", "ok": True, "result": {}}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Receiver:
    """Records every request, answers from a script (default: success) and, like a careful
    webhook consumer, accepts each idempotency key once and acknowledges repeats."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    hold_first: bool = False  # keep the first request without an answer until `release`
    first_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, body: dict | str | None = None, headers: dict | None = None) -> None:
        self.script.append((status, OK_BODY if body is None else body, headers or {}))

    def handle(self, recorded: Recorded) -> tuple[int, dict | str, dict, bool]:
        with self.lock:
            self.requests.append(recorded)
            status, body, headers = self.script.popleft() if self.script else (200, OK_BODY, {})
            duplicate = recorded.key in self.accepted
            if 200 <= status < 300 and recorded.key and not duplicate:
                self.accepted.append(recorded.key)
            hold = self.hold_first and len(self.requests) == 1
        if duplicate and isinstance(body, dict):
            body = {**body, "duplicate": True}
        return status, body, headers, hold


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            recorded = Recorded(
                method="POST",
                path=parts.path,
                query={k: v[0] for k, v in parse_qs(parts.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, body, headers, hold = state.handle(recorded)
            if hold:
                # Accepted, and then the sender dies before it hears so: never answer this one.
                state.first_arrived.set()
                state.release.wait(60)
                self.close_connection = True
                return
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class Inbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list = field(default_factory=list)
    replies: deque = field(default_factory=deque)  # scripted DATA replies, e.g. "451 try later"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        if self.replies:
            return self.replies.popleft()
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port
    yield inbox
    controller.stop()


@pytest.fixture
def make_channel(db):
    def make(
        kind: str,
        *,
        name: str = "",
        language: str = "en",
        min_level: int = Level.WARNING,
        options: dict | None = None,
        token: str = "",
        signing_secret: str = "",
        accounts: tuple = (),
        rate_limit_per_minute: int = 10,
        enabled: bool = True,
    ) -> NotificationChannel:
        channel = NotificationChannel(
            name=name or f"{kind}-{language}-{min_level}",
            kind=kind,
            language=language,
            min_level=min_level,
            settings=options or {},
            rate_limit_per_minute=rate_limit_per_minute,
            enabled=enabled,
        )
        outbox.channel_set_secrets(channel=channel, token=token, signing_secret=signing_secret)
        channel.save()
        channel.accounts.set(accounts)
        return channel

    return make


@pytest.fixture
def breach():
    """Raise an alert the way the rule evaluator does, with sensible numbers."""

    def raise_(account, *, level: int = Level.WARNING, value: str = "0.85", rule: str = "margin_ratio", **kw):
        numbers = {
            "account_id": account.id if account is not None else None,
            "rule": rule,
            "subject": "account",
            "level": level,
            "reason_code": f"{rule.upper()}_{Level(level).name}",
            "value": Decimal(value),
            "limit": Decimal("0.80"),
            "mark_price": Decimal("64123.5"),
            "details": {"window": "1m"},
            "message": f"{rule} is {value}, above 0.80",
        }
        return services.alert_raise(**{**numbers, **kw})

    return raise_
