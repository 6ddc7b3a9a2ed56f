"""The alerts page's numbers and sentences, in the request's language: an alert's message from its
code and parameters (alerts/messages.py), its value, worst value and limit rounded for its rule."""

from __future__ import annotations

from typing import Any

from django import template

from alerts import messages

register = template.Library()


@register.filter
def alert_message(alert: Any) -> str:
    """The message in the active (request) language; rows from before message codes keep theirs."""
    return messages.alert_text(alert)


@register.filter
def alert_number(alert: Any, field: str) -> str:
    """`value`, `peak_value`, `value_at_open` or `limit` as a person reads it for the alert's rule:
    ratios as %, money to 2 decimals, leverage as 20×."""
    return messages.fmt_value(alert.rule, getattr(alert, field, None))


@register.filter
def alert_price(value: Any) -> str:
    return messages.fmt_price(value)


@register.filter
def resolution_label(resolution: str) -> str:
    return messages.resolution_label(resolution) if resolution else ""


@register.filter
def rule_label(rule: str) -> str:
    return messages.rule_name(rule)


@register.filter
def subject_label(subject: str) -> str:
    return messages.fmt_subject(subject) if subject and ":" in subject else subject
