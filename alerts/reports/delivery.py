"""A stored report to the channels that receive reports: email gets the whole HTML with the CSV
and the PDF attached; WeCom, DingTalk, Feishu, Telegram and webhooks get a summary and a link."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from alerts import notifiers
from alerts.models import ChannelKind, Level, NotificationChannel, Report
from alerts.reports import render


def report_url(report: Report) -> str:
    return settings.SITE_URL + reverse("reports:detail", args=[report.id])


def _summary_rows(report: Report) -> list[tuple[str, str]]:
    desk = report.figures["desk"]
    return [
        (_("Net realized (PnL − fees + funding)"), render.shown(desk["net_realized"], "money")),
        (_("Unrealized PnL at the close"), render.shown(desk["unrealized_pnl"], "money")),
        (_("Intraday max drawdown"), render.shown(desk["max_drawdown"], "money")),
        (_("Peak margin ratio"), render.shown(desk["peak_margin_ratio"], "percent")),
        (_("Liquidations"), str(len(desk["liquidations"]))),
        (_("Gate denials"), str(desk["gate_denials"])),
    ]


def report_message(report: Report, *, channel: NotificationChannel) -> notifiers.Message:
    """The message in the channel's language (each recipient reads their own)."""
    with translation.override(channel.language):
        title = _("riskdesk risk report: %(period)s, %(start)s") % {
            "period": report.get_period_display(),
            "start": report.figures["start"][:10],
        }
        rows = _summary_rows(report)
        link = report_url(report)
        payload = {"event": "report", "report_id": report.id, "url": link, "period": report.period}
        if channel.kind != ChannelKind.EMAIL:
            return notifiers.Message(title, rows, Level.INFO, link, payload=payload, link_label=_("Open the report"))
        same = channel.language == report.language
        html = report.html if same else render.html(report, language=channel.language)
        pdf = bytes(report.pdf) if same else render.pdf(report, language=channel.language)
        stem = f"risk-report-{report.period}-{report.figures['start'][:10]}"
        return notifiers.Message(
            title,
            rows,
            Level.INFO,
            link,
            payload=payload,
            link_label=_("Open the report"),
            html_body=html,
            attachments=((f"{stem}.csv", report.csv.encode(), "text/csv"), (f"{stem}.pdf", pdf, "application/pdf")),
        )


def channels_for(report: Report) -> list[NotificationChannel]:
    """A channel for every account (no accounts chosen) gets the desk report; a channel for some
    accounts gets the reports of those accounts alone."""
    report_ids = set(report.accounts.values_list("id", flat=True))
    chosen = []
    for channel in NotificationChannel.objects.filter(enabled=True, receives_reports=True).prefetch_related("accounts"):
        mine = {a.id for a in channel.accounts.all()}
        if (not mine and len(report_ids) > 1) or (mine and len(report_ids) == 1 and report_ids <= mine):
            chosen.append(channel)
    return chosen


def report_deliver(*, report: Report) -> list[str]:
    """Send to the channels that receive this report; errors are kept on the report, not
    raised: one channel down must not stop the others (the page always has the report)."""
    errors = []
    for channel in channels_for(report):
        try:
            notifiers.send(
                channel, report_message(report, channel=channel), idempotency_key=f"report-{report.id}-{channel.id}"
            )
        except notifiers.DeliveryError as exc:
            errors.append(f"{channel.name}: {exc.message}")
    report.delivered_at = timezone.now()
    report.delivery_errors = errors
    report.save(update_fields=["delivered_at", "delivery_errors"])
    return errors
