"""The anomaly baselines read the archive (issue 17: "Baselines are learned from the order log and
fills, archived history included"): the order log stays hot 7 days and the baseline looks back 30,
so the beat job reads through positions.archive.history. Archiving the days changes no baseline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from positions.archive import services as archive
from positions.archive.store import DirectoryStore
from positions.models import ArchiveBatch, Fill, OrderLog
from rules.baselines import baselines_recompute
from rules.models import AccountBaseline
from rules.tests.test_anomaly_alerts import account, seed_history  # noqa: F401 - the fixture, by name

FIELDS = (
    "orders_10s_median",
    "orders_10s_mad",
    "cancels_10s_median",
    "cancels_10s_mad",
    "notional_p99",
    "symbols",
    "hour_shares",
    "orders_seen",
)


@pytest.fixture
def store(tmp_path, settings):
    settings.ARCHIVE_URL = str(tmp_path / "archive")
    return DirectoryStore(tmp_path / "archive")


def _baseline(of) -> dict:
    return AccountBaseline.objects.filter(account=of).values(*FIELDS).get()


def test_archiving_the_order_log_and_fills_leaves_the_baseline_unchanged(account, store):  # noqa: F811
    seed_history(account, days=5)
    assert baselines_recompute() == 1
    before = _baseline(account)
    assert before["orders_seen"] == 5 * 3 * 12

    # The three oldest days go to the archive (as the nightly job would past their retention).
    cutoff = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    hot_before = OrderLog.objects.filter(account=account).count()
    moved = archive.archive_table("orderlog", before=cutoff, store=store).rows
    moved += archive.archive_table("fill", before=cutoff, store=store).rows
    assert moved > 0 and ArchiveBatch.objects.filter(table="orderlog").exists()
    assert OrderLog.objects.filter(account=account).count() < hot_before
    assert not OrderLog.objects.filter(account=account, created_at__lt=cutoff).exists()
    assert not Fill.objects.filter(account=account, time__lt=cutoff).exists()

    assert baselines_recompute() == 1
    assert _baseline(account) == before


def test_rows_older_than_the_baselines_window_do_not_count_hot_or_archived(account, store):  # noqa: F811
    seed_history(account, days=3)
    now = datetime.now(tz=UTC)
    baselines_recompute(now=now)
    recent = _baseline(account)
    # the same baseline computed about a month later: the oldest of the rows have left its 30-day window,
    # whether they are hot or archived
    news = [r for r in OrderLog.objects.filter(account=account) if (r.details or {}).get("execution") == "NEW"]
    times = sorted(r.created_at for r in news)
    since = times[len(times) // 2]  # the window's start falls amid the seeded rows, whatever the hour
    later = since + timedelta(days=30)
    inside = sum(1 for r in news if r.created_at >= since)
    assert 0 < inside < len(news)
    baselines_recompute(now=later)
    hot_view = _baseline(account)
    assert hot_view["orders_seen"] == inside < recent["orders_seen"]
    archive.archive_table("orderlog", before=now, store=store)
    archive.archive_table("fill", before=now, store=store)
    assert not OrderLog.objects.filter(account=account).exists()
    baselines_recompute(now=later)
    assert _baseline(account) == hot_view
