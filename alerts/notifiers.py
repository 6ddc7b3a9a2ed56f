"""Messages and senders: what an alert notification says, in the channel's language,
and one sender per channel kind speaking that service's real request format.

Senders raise `DeliveryError` saying whether a retry could help; the outbox
(alerts/outbox.py) owns claiming, backoff and bookkeeping. Nothing here touches the
database. Secrets (robot keys, bot tokens, signing secrets) are passed in decrypted and
scrubbed out of every error text, because errors are stored and shown in the admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, quote_plus, urlparse

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from alerts import messages
from alerts.models import ChannelKind, DeliveryEvent, Level, NotificationChannel

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BASE_URLS = {
    ChannelKind.WECOM: "https://qyapi.weixin.qq.com",
    ChannelKind.DINGTALK: "https://oapi.dingtalk.com",
    ChannelKind.FEISHU: "https://open.feishu.cn",
    ChannelKind.TELEGRAM: "https://api.telegram.org",
}
# Vendor error codes that mean "too fast" or "busy, try again", so a retry can help.
# WeCom 45009 and DingTalk 130101: over 20 messages a minute; WeCom -1: system busy;
# Feishu 11232: frequency limited.
RETRYABLE_VENDOR_CODES = {
    ChannelKind.WECOM: {-1, 45009},
    ChannelKind.DINGTALK: {-1, 130101},
    ChannelKind.FEISHU: {11232},
}
WECOM_MARKDOWN_MAX_BYTES = 4096  # WeCom refuses longer markdown content outright
LEVEL_COLOURS = {Level.INFO: "blue", Level.WARNING: "orange", Level.CRITICAL: "red", Level.EMERGENCY: "carmine"}


# What each kind cannot work without; the admin form refuses a channel that lacks them.
REQUIRED_OPTIONS = {ChannelKind.EMAIL: ("to",), ChannelKind.WEBHOOK: ("url",), ChannelKind.TELEGRAM: ("chat_id",)}
REQUIRED_SECRETS = {
    ChannelKind.WEBHOOK: ("signing_secret",),
    ChannelKind.WECOM: ("token",),
    ChannelKind.DINGTALK: ("token",),
    ChannelKind.FEISHU: ("token",),
    ChannelKind.TELEGRAM: ("token",),
}
NUMERIC_OPTIONS = ("timeout_s", "lease_s", "max_attempts", "port")


def settings_problems(kind: str, options: object, secret_names: set[str]) -> list[str]:
    """What is wrong with a channel's settings JSON and secrets, in words for the admin form."""
    if not isinstance(options, dict):
        return [_("Settings must be a JSON object.")]
    problems = [
        _("Settings need “%(name)s” for this kind.") % {"name": name}
        for name in REQUIRED_OPTIONS.get(kind, ())
        if not options.get(name)
    ]
    for name in NUMERIC_OPTIONS:
        if name in options and not (isinstance(options[name], int | float) and options[name] > 0):
            problems.append(_("“%(name)s” must be a positive number.") % {"name": name})
    problems += [
        _("This kind needs a %(name)s.") % {"name": name.replace("_", " ")}
        for name in REQUIRED_SECRETS.get(kind, ())
        if name not in secret_names
    ]
    return problems


class DeliveryError(Exception):
    """A send that did not go through. `retryable` says whether trying again later can help
    (timeouts, 5xx, 408/429, vendor "too fast"); anything else waits for a person."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Message:
    title: str
    rows: list[tuple[str, str]]
    level: int
    link: str
    note: str = ""  # the evaluator's own sentence, untranslated
    items: list[tuple[str, str]] = field(default_factory=list)  # digest: (one-line summary, link)
    footer: str = ""
    payload: dict = field(default_factory=dict)  # what the generic webhook posts
    link_label: str = "Open in riskdesk"  # translated when rendered: the as_* methods run outside the override
    # A risk report (alerts/reports/delivery.py): email sends this HTML as the body and attaches
    # these (filename, bytes, MIME type); IM channels ignore both and send the summary with its link.
    html_body: str = ""
    attachments: tuple[tuple[str, bytes, str], ...] = ()

    def as_text(self) -> str:
        lines = [self.title, ""] + [f"{label}: {value}" for label, value in self.rows]
        if self.note:
            lines += ["", self.note]
        lines += [f"- {summary}  {link}" for summary, link in self.items]
        return "\n".join([*lines, "", self.link, self.footer]).strip() + "\n"

    def as_markdown(self) -> str:
        lines = [f"**{self.title}**", ""] + [f"> {label}: **{value}**" for label, value in self.rows]
        if self.note:
            lines += ["", self.note]
        lines += [f"- [{summary}]({link})" for summary, link in self.items]
        return "\n".join([*lines, "", f"[{self.link_label}]({self.link})", self.footer]).strip()

    def as_html(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in self.rows)
        items = "".join(f"<li><a href='{e(link)}'>{e(summary)}</a></li>" for summary, link in self.items)
        return (
            f"<html><body><h2>{e(self.title)}</h2>"
            + (f"<table>{rows}</table>" if rows else "")
            + (f"<p>{e(self.note)}</p>" if self.note else "")
            + (f"<ul>{items}</ul>" if items else "")
            + f"<p><a href='{e(self.link)}'>{e(self.link_label)}</a></p>"
            + f"<p><small>{e(self.footer)}</small></p></body></html>"
        )

    def as_telegram_html(self) -> str:
        """Telegram's HTML subset: <b>, <a>, no tables, no <br>."""
        e = html.escape
        lines = [f"<b>{e(self.title)}</b>", ""] + [f"{e(k)}: <b>{e(v)}</b>" for k, v in self.rows]
        if self.note:
            lines += ["", e(self.note)]
        lines += [f'• <a href="{e(link)}">{e(summary)}</a>' for summary, link in self.items]
        return "\n".join([*lines, "", f'<a href="{e(self.link)}">{e(self.link_label)}</a>', e(self.footer)])


# --- what a message says ---------------------------------------------------------------


def alert_url(alert_id: int | None) -> str:
    # The admin change page until the desk has its own alert page.
    return f"{settings.SITE_URL}/admin/alerts/alert/{alert_id}/change/"


def event_label(event: str) -> str:
    return {
        DeliveryEvent.OPENED: _("Alert opened"),
        DeliveryEvent.ESCALATED: _("Alert escalated"),
        DeliveryEvent.RESOLVED: _("Alert resolved"),
    }.get(event, event)


def render_alert(*, snapshot: dict, event: str, level: int, language: str, reference: str) -> Message:
    """The message for one alert event, from the alert as it was at that event."""
    with translation.override(language):
        return _alert_message(snapshot, event, level, reference)


def _alert_message(snapshot: dict, event: str, level: int, reference: str) -> Message:
    account = snapshot.get("account") or _("whole desk")
    rule = _rule_words(snapshot)
    title = _("[%(level)s] %(event)s: %(rule)s on %(account)s") % {
        "level": Level(level).label,
        "event": event_label(event),
        "rule": rule,
        "account": account,
    }
    name = snapshot.get("rule", "")
    # Rounded for a person (ratios as %, money to 2 decimals); the webhook's JSON keeps full precision.
    rows = [
        (_("Account"), account),
        (_("Rule"), rule),
        (_("Level"), str(Level(level).label)),
        (_("Value"), messages.fmt_value(name, snapshot.get("value"))),
    ]
    if snapshot.get("peak_value") not in (None, snapshot.get("value")):
        rows.append((_("Worst"), messages.fmt_value(name, snapshot.get("peak_value"))))
    rows += [
        (_("Limit"), messages.fmt_value(name, snapshot.get("limit"))),
        (_("Mark price"), messages.fmt_price(snapshot.get("mark_price"))),
        (_("Reason"), snapshot.get("reason_code", "")),
        (_("Time"), _when(snapshot.get("event_at"))),
    ]
    if snapshot.get("resolution"):
        rows.append((_("Resolution"), messages.resolution_label(snapshot["resolution"])))
    link = alert_url(snapshot.get("id"))
    footer = _("riskdesk alert #%(id)s, delivery %(ref)s") % {"id": snapshot.get("id"), "ref": reference[:8]}
    payload = {"event": event, "level": int(level), "level_label": str(Level(level).label), "alert": snapshot}
    # The sentence in the channel's language (we run inside its translation.override).
    note = messages.alert_text(snapshot)
    return Message(title, rows, level, link, note, footer=footer, payload=payload, link_label=_link_label())


def _rule_words(snapshot: dict) -> str:
    """ "Margin ratio", or "Distance to liquidation · BTCUSDT long" for a position's alert."""
    name = messages.rule_name(snapshot.get("rule", ""))
    subject = snapshot.get("subject")
    if subject in (None, "", "account"):
        return name
    return f"{name} · {messages.fmt_subject(subject) if ':' in subject else subject}"


def render_digest(*, folded: list[tuple[dict, str, int]], language: str, reference: str) -> Message:
    """One message standing for deliveries the channel's rate limit held back: (snapshot, event, level) each."""
    with translation.override(language):
        worst = max((level for _s, _e, level in folded), default=Level.INFO)
        title = _("[%(level)s] %(count)s alert events held back by the rate limit") % {
            "level": Level(worst).label,
            "count": len(folded),
        }
        items = [
            (_digest_line(snapshot, event, level), alert_url(snapshot.get("id"))) for snapshot, event, level in folded
        ]
        footer = _("riskdesk digest, delivery %(ref)s") % {"ref": reference[:8]}
        payload = {"event": DeliveryEvent.DIGEST, "level": int(worst), "alerts": [s for s, _e, _l in folded]}
        link = f"{settings.SITE_URL}/admin/alerts/alert/"
        return Message(title, [], worst, link, items=items, footer=footer, payload=payload, link_label=_link_label())


def _digest_line(snapshot: dict, event: str, level: int) -> str:
    return _("%(level)s %(event)s: %(rule)s on %(account)s, %(value)s vs limit %(limit)s (mark %(mark)s)") % {
        "level": Level(level).label,
        "event": event_label(event),
        "rule": _rule_words(snapshot),
        "account": snapshot.get("account") or _("whole desk"),
        "value": messages.fmt_value(snapshot.get("rule", ""), snapshot.get("value")),
        "limit": messages.fmt_value(snapshot.get("rule", ""), snapshot.get("limit")),
        "mark": messages.fmt_price(snapshot.get("mark_price")),
    }


def render_test(*, channel: NotificationChannel) -> Message:
    with translation.override(channel.language):
        title = _("riskdesk test message")
        note = _("If you can read this, the channel “%(name)s” works.") % {"name": channel.name}
        rows = [(_("Time"), _when(timezone.now().isoformat()))]
        link = settings.SITE_URL + "/admin/"
        return Message(title, rows, Level.INFO, link, note, payload={"event": "test"}, link_label=_link_label())


def _link_label() -> str:
    return _("Open in riskdesk")


def _when(iso: str | None) -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(timezone.get_fixed_timezone(0)).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- senders ---------------------------------------------------------------------------


def send(channel: NotificationChannel, message: Message, *, idempotency_key: str) -> None:
    """Send through the channel's kind; raises DeliveryError with secrets scrubbed out."""
    secrets = channel.secrets()
    options = channel.settings or {}
    try:
        SENDERS[channel.kind](message, options, secrets, idempotency_key)
    except DeliveryError as exc:
        raise DeliveryError(
            _scrub(exc.message, secrets), retryable=exc.retryable, retry_after_s=exc.retry_after_s
        ) from None
    except KeyError as exc:
        raise DeliveryError(f"channel setting or secret missing: {exc}", retryable=False) from None


def timeout_s(options: dict) -> float:
    return float(options.get("timeout_s", DEFAULT_TIMEOUT_S))


def _send_email(message: Message, options: dict, secrets: dict, key: str) -> None:
    recipients = options["to"]
    recipients = [r.strip() for r in recipients.split(",")] if isinstance(recipients, str) else list(recipients)
    connection = SMTPBackend(
        host=options.get("host", settings.EMAIL_HOST),
        port=int(options.get("port", settings.EMAIL_PORT)),
        username=options.get("username", settings.EMAIL_HOST_USER),
        password=secrets.get("token", settings.EMAIL_HOST_PASSWORD),
        use_tls=bool(options.get("use_tls", settings.EMAIL_USE_TLS)),
        use_ssl=bool(options.get("use_ssl", False)),
        timeout=timeout_s(options),
        fail_silently=False,
    )
    domain = urlparse(settings.SITE_URL).hostname or "riskdesk.invalid"
    email = EmailMultiAlternatives(
        subject=message.title,
        body=message.as_text(),
        from_email=options.get("from", settings.DEFAULT_FROM_EMAIL),
        to=recipients,
        # A Message-ID fixed by the delivery lets a mail system drop a resend after a crash.
        headers={"Message-ID": f"<{key}@{domain}>", "X-Riskdesk-Delivery": key},
        connection=connection,
    )
    email.attach_alternative(message.html_body or message.as_html(), "text/html")
    for filename, content, mimetype in message.attachments:
        email.attach(filename, content, mimetype)
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _msg in exc.recipients.values()]
        raise DeliveryError(
            f"SMTP refused recipients: {exc.recipients}", retryable=all(400 <= c < 500 for c in codes)
        ) from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {exc.smtp_code}: {text}", retryable=400 <= exc.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", retryable=True) from None


def _send_webhook(message: Message, options: dict, secrets: dict, key: str) -> None:
    body = _json_bytes(
        {
            **message.payload,
            "title": message.title,
            "text": message.as_text(),
            "url": message.link,
            "idempotency_key": key,
        }
    )
    timestamp = str(int(time.time()))
    # The receiver recomputes this over the raw body and refuses a timestamp far from its clock (replay).
    digest = hmac.new(secrets["signing_secret"].encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"X-Riskdesk-Timestamp": timestamp, "X-Riskdesk-Signature": f"sha256={digest}"}
    _post(options["url"], body, options, key, headers)


def _send_wecom(message: Message, options: dict, secrets: dict, key: str) -> None:
    url = f"{_base(options, ChannelKind.WECOM)}/cgi-bin/webhook/send?key={quote(secrets['token'], safe='')}"
    content = message.as_markdown().encode()[:WECOM_MARKDOWN_MAX_BYTES].decode(errors="ignore")
    response = _post(url, _json_bytes({"msgtype": "markdown", "markdown": {"content": content}}), options, key)
    _vendor_ok(ChannelKind.WECOM, response, "errcode", "errmsg")


def _send_dingtalk(message: Message, options: dict, secrets: dict, key: str) -> None:
    url = f"{_base(options, ChannelKind.DINGTALK)}/robot/send?access_token={quote(secrets['token'], safe='')}"
    if secrets.get("signing_secret"):
        timestamp = str(int(time.time() * 1000))
        sign = _b64_hmac(secrets["signing_secret"].encode(), f"{timestamp}\n{secrets['signing_secret']}".encode())
        url += f"&timestamp={timestamp}&sign={quote_plus(sign)}"
    body = _json_bytes({"msgtype": "markdown", "markdown": {"title": message.title, "text": message.as_markdown()}})
    _vendor_ok(ChannelKind.DINGTALK, _post(url, body, options, key), "errcode", "errmsg")


def _send_feishu(message: Message, options: dict, secrets: dict, key: str) -> None:
    url = f"{_base(options, ChannelKind.FEISHU)}/open-apis/bot/v2/hook/{quote(secrets['token'], safe='')}"
    payload: dict = {"msg_type": "interactive", "card": _feishu_card(message)}
    if secrets.get("signing_secret"):
        timestamp = str(int(time.time()))
        # Feishu signs with the string as the HMAC key and an empty message (their documented quirk).
        payload = {
            "timestamp": timestamp,
            "sign": _b64_hmac(f"{timestamp}\n{secrets['signing_secret']}".encode(), b""),
            **payload,
        }
    _vendor_ok(ChannelKind.FEISHU, _post(url, _json_bytes(payload), options, key), "code", "msg")


def _feishu_card(message: Message) -> dict:
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": message.title},
            "template": LEVEL_COLOURS.get(message.level, "blue"),
        },
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": message.as_markdown()}}],
    }


def _send_telegram(message: Message, options: dict, secrets: dict, key: str) -> None:
    url = f"{_base(options, ChannelKind.TELEGRAM)}/bot{secrets['token']}/sendMessage"
    body = _json_bytes(
        {
            "chat_id": options["chat_id"],
            "text": message.as_telegram_html(),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
    )
    response = _post(url, body, options, key)
    if _json(response).get("ok") is not True:
        raise DeliveryError(f"Telegram: {_json(response).get('description', response.text[:300])}", retryable=False)


SENDERS: dict[str, Callable[[Message, dict, dict, str], None]] = {
    ChannelKind.EMAIL: _send_email,
    ChannelKind.WEBHOOK: _send_webhook,
    ChannelKind.WECOM: _send_wecom,
    ChannelKind.DINGTALK: _send_dingtalk,
    ChannelKind.FEISHU: _send_feishu,
    ChannelKind.TELEGRAM: _send_telegram,
}


# --- HTTP ------------------------------------------------------------------------------


def _post(url: str, body: bytes, options: dict, key: str, headers: dict | None = None) -> requests.Response:
    """POST JSON carrying the delivery's idempotency key, and sort the answer into
    ok / retry later / give up."""
    all_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": key,
        "X-Riskdesk-Delivery": key,
        **(headers or {}),
    }
    try:
        # No redirects: a POST silently turned into a GET elsewhere is a misconfiguration, not a success.
        response = requests.post(url, data=body, headers=all_headers, timeout=timeout_s(options), allow_redirects=False)
    except requests.Timeout:
        raise DeliveryError(f"no answer within {timeout_s(options)} s", retryable=True) from None
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from None
    _check_status(response)
    return response


def _check_status(response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    text = f"HTTP {status}: {response.text[:500]}"
    if status == 429:
        raise DeliveryError(text, retryable=True, retry_after_s=_retry_after_s(response))
    if status == 408 or status >= 500:
        raise DeliveryError(text, retryable=True)
    # Any other 4xx (or a redirect) is a request the receiver will refuse again: bad key, bad chat id, bad URL.
    raise DeliveryError(text, retryable=False)


def _retry_after_s(response: requests.Response) -> float | None:
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(float(header), 0.0)
        except ValueError:
            try:
                return max((parsedate_to_datetime(header) - timezone.now()).total_seconds(), 0.0)
            except (TypeError, ValueError):
                return None
    # Telegram says it in the body: {"parameters": {"retry_after": 7}}.
    retry_after = (_json(response).get("parameters") or {}).get("retry_after")
    return float(retry_after) if isinstance(retry_after, int | float) else None


def _vendor_ok(kind: str, response: requests.Response, code_field: str, message_field: str) -> None:
    """The robot APIs answer HTTP 200 and put the verdict in the body."""
    answer = _json(response)
    code = answer.get(code_field, answer.get("StatusCode"))
    if code == 0:
        return
    raise DeliveryError(
        f"{kind} {code_field} {code}: {answer.get(message_field, answer.get('StatusMessage', response.text[:300]))}",
        retryable=code in RETRYABLE_VENDOR_CODES.get(kind, set()),
    )


def _json(response: requests.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _b64_hmac(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def _base(options: dict, kind: str) -> str:
    return str(options.get("base_url") or DEFAULT_BASE_URLS[kind]).rstrip("/")


# Query parameters and path parts that carry credentials in the vendors' URLs.
_CREDENTIAL_PATTERNS = [
    re.compile(r"((?:key|access_token|sign|token)=)[^&\s'\"]+"),
    re.compile(r"(/bot)[^/\s'\"]+"),
    re.compile(r"(/hook/)[^/\s'\"?]+"),
]


def _scrub(text: str, secrets: dict) -> str:
    for secret in secrets.values():
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            if form:
                text = text.replace(form, "***")
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
