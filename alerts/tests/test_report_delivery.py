"""A report to the channels that receive reports: email with the HTML body and the CSV and PDF
attached; an IM channel gets the summary and the link. Real local receivers (conftest)."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.models import ReportPeriod
from alerts.reports import delivery, services

START = datetime(2026, 12, 6, tzinfo=UTC)
END = datetime(2026, 12, 7, tzinfo=UTC)


def desk_report(accounts):
    return services.report_generate(period=ReportPeriod.DAY, start=START, end=END, accounts=accounts)


def test_email_carries_the_html_with_the_csv_and_pdf_attached(make_channel, smtp_server, account_a, account_b):
    channel = make_channel("email", options={"to": "risk@example.com", "host": "127.0.0.1", "port": smtp_server.port})
    channel.receives_reports = True
    channel.save()
    report = desk_report([account_a, account_b])
    assert delivery.report_deliver(report=report) == []
    [mail] = smtp_server.messages
    html = mail.get_body(("html",)).get_content()
    assert "data:image/png;base64," in html and "Intraday max drawdown" in html
    names = {part.get_filename(): part.get_content_type() for part in mail.iter_attachments()}
    assert names == {
        "risk-report-day-2026-12-06.csv": "text/csv",
        "risk-report-day-2026-12-06.pdf": "application/pdf",
    }
    report.refresh_from_db()
    assert report.delivered_at is not None


def test_an_im_channel_gets_a_summary_with_the_link_in_its_language(make_channel, receiver, account_a, account_b):
    channel = make_channel("wecom", options={"base_url": receiver.url}, token="k", language="zh-hans")
    channel.receives_reports = True
    channel.save()
    make_channel("webhook", name="alerts-only", options={"url": f"{receiver.url}/hook"})  # not for reports
    report = desk_report([account_a, account_b])
    assert delivery.report_deliver(report=report) == []
    [request] = receiver.requests
    text = request.json["markdown"]["content"]
    assert f"/reports/{report.id}/" in text and "PDF" not in text


def test_a_channel_for_one_account_gets_that_accounts_report_not_the_desks(
    make_channel, receiver, account_a, account_b
):
    channel = make_channel("webhook", options={"url": f"{receiver.url}/hook"}, accounts=(account_a,))
    channel.receives_reports = True
    channel.save()
    assert delivery.channels_for(desk_report([account_a, account_b])) == []
    assert delivery.channels_for(desk_report([account_a])) == [channel]
    assert delivery.channels_for(desk_report([account_b])) == []
