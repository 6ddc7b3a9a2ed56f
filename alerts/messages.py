"""What an alert says, as a code plus parameters, rendered in the reader's language.

An alert stores `message_code` and `message_params` (plain JSON: numbers as full-precision
strings). Pages render them in the request's language, each channel in its own
`NotificationChannel.language`, the stored `message` column in English for search. Rendering
rounds for people — ratios as %, money to 2 decimals, prices to the tick when known, leverage as
"20×" — while the row and the API keep the full-precision numbers.

Codes (the parameters each one reads):
- ``limit_breach``: rule, subject, value, limit, level, comparison ("above" | "below" | "at").
  The comparison is recomputed from value and limit when they are equal, so the text never says
  "20 is above the critical limit 20".
- ``feed_stale``: name, last_message_ms.
- ``margin_call``: symbol, side, maintenance_margin, mark_price.
- ``position_drift``: count, source ("stream" | "reconciliation").
- ``exchange_config_changed``: what ("leverage" | "multi_assets" | "margin_type"), symbol,
  old, new.
- ``liquidated``: symbol, side, qty, price, realized_pnl, time_ms, last_liquidation_price,
  last_distance.
- ``stream_down``: heartbeat_ms (the stream process's last beat, None when none is known).
- ``deadman_fired``: symbol, count, countdown_s, deadline_ms (marketdata/deadman.py).
- ``anomaly``: detector (rules.anomalies: ORDER_BYPASSED_GATE, ORDER_BURST, ...), subject, value,
  limit, level, measure, observed {...}, baseline {...}.

An unknown code renders "" and the caller falls back to the stored message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from positions.templatetags.desk import number

DASH = "—"
MONEY, RATIO, LEVERAGE, COUNT = "money", "ratio", "leverage", "count"

# The evaluator's rules (rules/levels.py RULES): how a person reads their numbers and names.
RULE_KINDS: dict[str, str] = {
    "equity_floor": MONEY,
    "asset_cap": MONEY,
    "utilization": RATIO,
    "position_notional": MONEY,
    "account_notional": MONEY,
    "leverage": LEVERAGE,
    "margin_ratio": RATIO,
    "liq_distance": RATIO,
    "concentration": RATIO,
    "daily_loss": MONEY,
    "drawdown": RATIO,
    "risk_degree": RATIO,
    "hhi": RATIO,
    "risk_score": COUNT,
    "desk_concentration": RATIO,
    "margin_call": MONEY,  # its value is the maintenance margin the exchange reported
}
# Lower is worse for these (a floor, a distance): the worst value is the minimum.
LOWER_IS_WORSE = {"equity_floor", "liq_distance"}
RULE_NAMES = {
    "equity_floor": gettext_lazy("Equity floor"),
    "asset_cap": gettext_lazy("Asset cap"),
    "utilization": gettext_lazy("Fund utilization"),
    "position_notional": gettext_lazy("Position notional"),
    "account_notional": gettext_lazy("Account notional"),
    "leverage": gettext_lazy("Leverage"),
    "margin_ratio": gettext_lazy("Margin ratio"),
    "liq_distance": gettext_lazy("Distance to liquidation"),
    "concentration": gettext_lazy("Concentration"),
    "daily_loss": gettext_lazy("Daily loss"),
    "drawdown": gettext_lazy("Drawdown"),
    "risk_degree": gettext_lazy("Account margin ratio"),
    "hhi": gettext_lazy("Concentration (HHI)"),
    "risk_score": gettext_lazy("Risk score"),
    "desk_concentration": gettext_lazy("Desk concentration"),
    "feed_stale": gettext_lazy("Stale market feed"),
    "margin_call": gettext_lazy("Margin call"),
    "position_drift": gettext_lazy("Position drift"),
    "exchange_config": gettext_lazy("Exchange configuration"),
    "liquidated": gettext_lazy("Liquidation"),
    "stream_down": gettext_lazy("Stream process down"),
    "deadman": gettext_lazy("Dead-man switch"),
}
SIDES = {"LONG": gettext_lazy("long"), "SHORT": gettext_lazy("short"), "BOTH": gettext_lazy("one-way")}
LEVEL_WORDS = {20: gettext_lazy("warning"), 30: gettext_lazy("critical"), 40: gettext_lazy("emergency")}
LEVEL_BY_NAME = {"warning": 20, "critical": 30, "emergency": 40}


def render(code: str, params: Mapping[str, Any] | None, language: str) -> str:
    """The message for `code` in `language` ("en", "zh-hans"); "" for an unknown code."""
    renderer = RENDERERS.get(code or "")
    if renderer is None:
        return ""
    with translation.override(language):
        return str(renderer(dict(params or {})))


def alert_text(alert: Any, language: str | None = None) -> str:
    """An alert's (or a snapshot dict's) message in `language` (default: the active one), falling
    back to the stored English sentence for rows written before message codes."""
    get = alert.get if isinstance(alert, Mapping) else lambda name, default=None: getattr(alert, name, default)
    text = render(get("message_code", ""), get("message_params") or {}, language or translation.get_language() or "en")
    return text or get("message", "") or ""


def rule_name(rule: str, language: str | None = None) -> str:
    """A rule as a person names it ("Distance to liquidation", "强平距离"); unknown: as given."""
    name = RULE_NAMES.get(rule)
    if name is None:
        return rule
    if language is None:
        return str(name)
    with translation.override(language):
        return str(name)


def lower_is_worse(rule: str, details: Mapping[str, Any] | None = None) -> bool:
    """Whether the row's worst value is its minimum: the evaluator says so in details; else the rule."""
    flag = (details or {}).get("lower_is_worse")
    return bool(flag) if flag is not None else rule in LOWER_IS_WORSE


# --- numbers for people ---------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def fmt_money(value: Any) -> str:
    d = _dec(value)
    return DASH if d is None else f"{number(d, 2)} USDT"


def fmt_ratio(value: Any) -> str:
    d = _dec(value)
    return DASH if d is None else f"{number(d * 100, 2)} %"


def fmt_leverage(value: Any) -> str:
    d = _dec(value)
    if d is None:
        return DASH
    d = d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
    return f"{d:f}×"


def fmt_count(value: Any) -> str:
    d = _dec(value)
    return DASH if d is None else number(d, 0)


def fmt_price(value: Any, tick: Any = None) -> str:
    """To the tick when it is known; else as the exchange gave it, without trailing zeros."""
    d, step = _dec(value), _dec(tick)
    if d is None:
        return DASH
    if step:
        d = (d / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step
        places = max(0, -step.normalize().as_tuple().exponent)
    else:
        d = d.normalize()
        places = max(0, -d.as_tuple().exponent)
    return number(d, places)


def fmt_qty(value: Any) -> str:
    d = _dec(value)
    if d is None:
        return DASH
    d = d.normalize()
    return number(d, max(0, -d.as_tuple().exponent))


FORMATS: dict[str, Callable[[Any], str]] = {
    MONEY: fmt_money,
    RATIO: fmt_ratio,
    LEVERAGE: fmt_leverage,
    COUNT: fmt_count,
}


def fmt_for_rule(rule: str, value: Any) -> str:
    return FORMATS.get(RULE_KINDS.get(rule, ""), fmt_qty)(value)


def fmt_value(rule: str, value: Any) -> str:
    """An alert row's value or limit for a person: by the rule's kind; a liquidation's value is
    its realized PnL (money); anything else as stated, without trailing zeros."""
    if rule == "liquidated":
        return fmt_money(value)
    return fmt_for_rule(rule, value)


def resolution_label(resolution: str) -> str:
    from alerts.models import Resolution  # models import nothing from here; keep it that way

    try:
        return str(Resolution(resolution).label)
    except ValueError:
        return resolution


def fmt_subject(subject: str) -> str:
    """ "BTCUSDT:LONG" -> "BTCUSDT long"; "account" -> the account itself."""
    if not subject or subject == "account":
        return str(_("the account"))
    symbol, sep, side = subject.partition(":")
    if not sep:
        return subject
    return f"{symbol} {SIDES.get(side, side)}"


def _time(ms: Any) -> str:
    try:
        moment = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return DASH
    return timezone.localtime(moment).strftime("%H:%M:%S")


def _level(value: Any) -> int | None:
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        return LEVEL_BY_NAME.get(value.lower())
    return int(value) if value is not None else None


# --- the catalogue ---------------------------------------------------------------------


def _limit_breach(p: dict) -> str:
    rule, value, limit = p.get("rule", ""), _dec(p.get("value")), _dec(p.get("limit"))
    comparison = p.get("comparison") or ("below" if rule in LOWER_IS_WORSE else "above")
    if value is not None and limit is not None and value == limit:
        comparison = "at"  # the evaluator latches at >= / <=: equal is a breach, said as "at"
    words = {
        "rule": rule_name(rule),
        "subject": fmt_subject(p.get("subject", "")),
        "value": fmt_for_rule(rule, value),
        "limit": fmt_for_rule(rule, limit),
        "level": LEVEL_WORDS.get(_level(p.get("level")), ""),
    }
    if comparison == "at":
        return _("%(rule)s of %(subject)s: %(value)s is at the %(level)s limit") % words
    if comparison == "below":
        return _("%(rule)s of %(subject)s: %(value)s is below the %(level)s limit %(limit)s") % words
    return _("%(rule)s of %(subject)s: %(value)s is above the %(level)s limit %(limit)s") % words


def _feed_stale(p: dict) -> str:
    return _("The %(name)s feed is stale: no data since %(since)s. Orders are denied until it recovers.") % {
        "name": p.get("name", ""),
        "since": _time(p.get("last_message_ms")),
    }


def _margin_call(p: dict) -> str:
    return _("The exchange sent a margin call for %(position)s: maintenance margin %(mm)s at mark price %(mark)s.") % {
        "position": fmt_subject(f"{p.get('symbol', '')}:{p.get('side', '')}"),
        "mm": fmt_money(p.get("maintenance_margin")),
        "mark": fmt_price(p.get("mark_price"), p.get("tick")),
    }


def _position_drift(p: dict) -> str:
    words = {"count": fmt_count(p.get("count"))}
    if p.get("source") == "stream":
        return _("%(count)s position(s) differed from the exchange's; the desk re-synced to the exchange.") % words
    return _("%(count)s position(s) differ from the exchange's; a re-sync was requested.") % words


def _exchange_config_changed(p: dict) -> str:
    what, symbol = p.get("what", ""), p.get("symbol") or ""
    where = symbol if symbol and symbol != "account" else str(_("the account"))
    if what == "leverage":
        words = {"where": where, "old": fmt_leverage(p.get("old")), "new": fmt_leverage(p.get("new"))}
        if p.get("old") in (None, ""):
            return _("Leverage of %(where)s was changed on the exchange to %(new)s.") % words
        return _("Leverage of %(where)s was changed on the exchange from %(old)s to %(new)s.") % words
    if what == "multi_assets":
        on = str(p.get("new")).lower() in ("true", "1")
        if on:
            return _("Multi-assets mode was switched on on the exchange.")
        return _("Multi-assets mode was switched off on the exchange.")
    if what == "margin_type":
        words = {"where": where, "new": _margin_type(p.get("new"))}
        return _("Margin type of %(where)s was changed on the exchange to %(new)s.") % words
    return _("The exchange configuration of %(where)s changed.") % {"where": where}


def _margin_type(value: Any) -> str:
    text = str(value or "").lower()
    return str({"cross": _("cross"), "crossed": _("cross"), "isolated": _("isolated")}.get(text, value or DASH))


def _liquidated(p: dict) -> str:
    pnl = _dec(p.get("realized_pnl"))
    words = {
        "position": fmt_subject(f"{p.get('symbol', '')}:{p.get('side', '')}"),
        "time": _time(p.get("time_ms")),
        "qty": fmt_qty(p.get("qty")),
        "price": fmt_price(p.get("price"), p.get("tick")),
        "pnl": fmt_money(pnl),
    }
    text = _("%(position)s was liquidated at %(time)s: %(qty)s filled at %(price)s, realized %(pnl)s.") % words
    if p.get("last_liquidation_price") not in (None, "") or p.get("last_distance") not in (None, ""):
        text += " " + _("The desk last saw its liquidation price at %(liq)s, %(distance)s away.") % {
            "liq": fmt_price(p.get("last_liquidation_price"), p.get("tick")),
            "distance": fmt_ratio(p.get("last_distance")),
        }
    return text


def _stream_down(p: dict) -> str:
    if p.get("heartbeat_ms") in (None, ""):
        return _("The stream process is not running: no heartbeat. Live state is stale and orders are denied.")
    return _(
        "The stream process stopped beating at %(since)s. Live state is stale and orders are denied until it is back."
    ) % {"since": _time(p.get("heartbeat_ms"))}


def _deadman_fired(p: dict) -> str:
    words = {
        "count": fmt_count(p.get("count")),
        "symbol": p.get("symbol") or "",
        "countdown": fmt_count(p.get("countdown_s")),
        "since": _time(p.get("deadline_ms")),
    }
    return (
        _(
            "The exchange's dead-man switch cancelled %(count)s open order(s) in %(symbol)s at %(since)s: the desk"
            " did not renew its %(countdown)s s countdown while it was blind."
        )
        % words
    )


# The anomaly detectors' rules (rules.anomalies: the detector's name in lower case).
RULE_NAMES.update(
    {
        "order_bypassed_gate": gettext_lazy("Order around the gate"),
        "order_burst": gettext_lazy("Order burst"),
        "cancel_ratio": gettext_lazy("Cancel ratio"),
        "size_outlier": gettext_lazy("Order size outlier"),
        "new_symbol": gettext_lazy("New symbol"),
        "off_hours": gettext_lazy("Off-hours trading"),
        "loss_velocity": gettext_lazy("Loss velocity"),
        "leverage_jump": gettext_lazy("Leverage jump"),
        "key_permissions": gettext_lazy("API key permissions"),
    }
)


def _anomaly(p: dict) -> str:
    """The anomaly detectors' findings: what was seen, against what baseline."""
    seen, base = p.get("observed") or {}, p.get("baseline") or {}
    detector, value, limit = p.get("detector", ""), p.get("value"), p.get("limit")
    if detector == "ORDER_BYPASSED_GATE":
        order = seen.get("order") or {}
        return _(
            "Order %(client_id)s on %(symbol)s (%(side)s %(qty)s) was placed on the exchange around the risk gate:"
            " the desk never approved it (%(count)s today)."
        ) % {
            "client_id": order.get("c") or order.get("i") or DASH,
            "symbol": order.get("s") or DASH,
            "side": order.get("S") or DASH,
            "qty": fmt_qty(order.get("q")),
            "count": fmt_count(seen.get("bypassed_today")),
        }
    if detector == "ORDER_BURST":
        words = {
            "count": fmt_count(seen.get("count_10s")),
            "median": fmt_qty(base.get("median")),
            "mad": fmt_qty(base.get("mad")),
            "k": fmt_qty(seen.get("mads_above_median")),
        }
        if p.get("measure") == "cancels":
            return _("%(count)s cancels in 10 s: %(k)s MADs above the usual %(median)s (MAD %(mad)s).") % words
        return _("%(count)s orders in 10 s: %(k)s MADs above the usual %(median)s (MAD %(mad)s).") % words
    if detector == "CANCEL_RATIO":
        return _(
            "%(cancels)s cancels against %(fills)s fills in 5 minutes: a ratio of %(ratio)s (limit %(limit)s)."
        ) % {
            "cancels": fmt_count(seen.get("cancels_5m")),
            "fills": fmt_count(seen.get("fills_5m")),
            "ratio": fmt_qty(seen.get("ratio")),
            "limit": fmt_qty(limit),
        }
    if detector == "SIZE_OUTLIER":
        return _("An order of %(notional)s on %(symbol)s is %(k)s× the account's 30-day p99 of %(p99)s.") % {
            "notional": fmt_money(seen.get("notional")),
            "symbol": seen.get("symbol") or DASH,
            "k": fmt_qty(seen.get("multiple")),
            "p99": fmt_money(base.get("notional_p99")),
        }
    if detector == "NEW_SYMBOL":
        return _("First order in %(symbol)s, a symbol the account has never traded (%(count)s new today).") % {
            "symbol": seen.get("symbol") or DASH,
            "count": fmt_count(value),
        }
    if detector == "OFF_HOURS":
        return _("%(count)s order(s) at %(hour)s:00 UTC, an hour with %(share)s of the account's usual orders.") % {
            "count": fmt_count(seen.get("orders_this_hour")),
            "hour": f"{int(seen.get('hour_utc') or 0):02d}",
            "share": fmt_ratio(base.get("hour_share")),
        }
    if detector == "LOSS_VELOCITY":
        if p.get("measure") == "loss_per_minute":
            return _("The margin balance fell by %(lost)s within a minute, to %(balance)s.") % {
                "lost": fmt_money(seen.get("lost_1m")),
                "balance": fmt_money(seen.get("margin_balance")),
            }
        return _("The margin balance fell by %(share)s within 5 minutes, from %(high)s to %(balance)s.") % {
            "share": fmt_ratio(seen.get("lost_5m_share")),
            "high": fmt_money(base.get("high_5m")),
            "balance": fmt_money(seen.get("margin_balance")),
        }
    if detector == "LEVERAGE_JUMP":
        words = {
            "symbol": seen.get("symbol") or DASH,
            "old": fmt_leverage(seen.get("old")),
            "new": fmt_leverage(seen.get("new")),
            "limit": fmt_leverage(limit),
        }
        if p.get("measure") == "profile":
            return (
                _("Leverage of %(symbol)s was raised on the exchange to %(new)s, beyond the profile's %(limit)s.")
                % words
            )
        return _("Leverage of %(symbol)s was raised on the exchange from %(old)s to %(new)s.") % words
    if detector == "KEY_PERMISSIONS":
        problems = {
            "withdrawals_enabled": str(_("withdrawals are enabled")),
            "no_ip_restriction": str(_("it is not restricted to IP addresses")),
        }
        said = [problems.get(x, x) for x in (seen.get("problems") or p.get("problems") or [])]
        return _("The exchange API key is too permissive: %(problems)s.") % {"problems": "; ".join(said) or DASH}
    return _("Abnormal behaviour (%(detector)s): %(value)s against a limit of %(limit)s.") % {
        "detector": detector,
        "value": fmt_qty(value),
        "limit": fmt_qty(limit),
    }


RENDERERS: dict[str, Callable[[dict], str]] = {
    "limit_breach": _limit_breach,
    "feed_stale": _feed_stale,
    "margin_call": _margin_call,
    "position_drift": _position_drift,
    "exchange_config_changed": _exchange_config_changed,
    "liquidated": _liquidated,
    "stream_down": _stream_down,
    "anomaly": _anomaly,
    "deadman_fired": _deadman_fired,
}
