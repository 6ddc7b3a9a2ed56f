"""A report of a day the archive has already moved to Parquet gives the same figures as before
(issue 16: "Reports work for archived days too"): the fixture day, archived, reported again."""

from __future__ import annotations

from datetime import timedelta

from alerts.models import ReportPeriod
from alerts.reports import services
from alerts.tests.test_report_fixture_day import END, START, fixture_day  # noqa: F401 - the fixture
from positions.archive.services import archive_table
from positions.models import AccountSnapshot, ClosedPosition, Fill, FundingFee, OrderLog

TABLES = ("orderlog", "accountsnapshot", "fill", "fundingfee", "closedposition", "alert", "riskaction")


def test_an_archived_day_reports_the_same_figures(fixture_day, settings, tmp_path):  # noqa: F811
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    before = services.report_figures(accounts=[fixture_day], start=START, end=END, now=END)
    for table in TABLES:
        archive_table(table, before=END + timedelta(days=2))
    assert not OrderLog.objects.exists() and not AccountSnapshot.objects.filter(time__gte=START).exists()
    assert not Fill.objects.filter(time__lt=END).exists() and not FundingFee.objects.exists()
    assert not ClosedPosition.objects.exists()
    after = services.report_generate(period=ReportPeriod.DAY, start=START, end=END, accounts=[fixture_day], now=END)
    assert after.figures["accounts"] == before["accounts"]
    assert after.figures["desk"] == before["desk"]
