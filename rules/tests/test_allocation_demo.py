"""The demo shows /allocation/ from a fresh clone: seed_demo loads the bundled 2021 bars before the
crash's eve once, and scripts/demo points the VaR's history at the same instant."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts.management.commands import seed_demo
from marketdata import bars
from marketdata.models import MinuteBar

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_seed_demo_loads_the_bundled_bars_before_the_crash_once():
    said = _seed()
    assert "bundled 1-minute bars before 2021-05-19 loaded" in said
    have = bars.coverage(seed_demo.HISTORY_SYMBOLS)
    for symbol in seed_demo.HISTORY_SYMBOLS:
        assert have[symbol].last < seed_demo.HISTORY_END  # nothing of the crash day: no look-ahead
        assert (have[symbol].last - have[symbol].first).days >= django_settings.ALLOCATION_MIN_HISTORY_DAYS
    count = MinuteBar.objects.count()
    assert count > 2 * 38_000

    again = _seed()
    assert "market history" not in again and MinuteBar.objects.count() == count


def test_the_daily_refresh_no_longer_prunes_the_demos_bundled_history():
    """Its beat row deleted bars older than 400 days at 00:15 UTC: the 2021 bars went on the demo's
    first night (seen in a running demo). seed_demo raises its keep_days to reach them."""
    _seed()
    task = PeriodicTask.objects.get(task=seed_demo.KLINES_REFRESH_TASK)
    kwargs = json.loads(task.kwargs)
    assert kwargs["days"] == 2  # the rest of the row as it was
    before = MinuteBar.objects.count()
    assert bars.prune(before=timezone.now() - timedelta(days=kwargs["keep_days"])) == 0
    assert MinuteBar.objects.count() == before
    # a person's larger keep_days is kept
    task.kwargs = json.dumps({**kwargs, "keep_days": 99_999})
    task.save()
    _seed()
    assert json.loads(PeriodicTask.objects.get(pk=task.pk).kwargs)["keep_days"] == 99_999


def test_scripts_demo_ends_the_history_where_seed_demo_stops():
    script = (Path(django_settings.BASE_DIR) / "scripts/demo").read_text()
    (value,) = re.findall(r'ALLOCATION_HISTORY_END="\$\{ALLOCATION_HISTORY_END-([^}]+)\}"', script)
    assert datetime.fromisoformat(value) == seed_demo.HISTORY_END
    # set before rundesk starts the web server, the worker and beat (they inherit the environment)
    assert script.index("export ALLOCATION_HISTORY_END") < script.index("manage.py rundesk")
