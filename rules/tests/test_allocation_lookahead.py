"""No look-ahead: the suggestion made the evening before the 2021-05-19 crash comes from bars before
it only. With the crash (and the day after) in the bar store, or without it, the result and the
suggestion as of 2021-05-19 00:00 UTC are the same; as of a later time they differ."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketdata import bars
from rules.allocation import params, selectors, services
from rules.tests import test_allocation_fixtures as fx

client_for, desk, gate_env = fx.client_for, fx.desk, fx.gate_env

pytestmark = pytest.mark.django_db

EVE = datetime(2021, 5, 19, 0, 0, tzinfo=UTC)


def _both(inputs, as_of):
    result = services.risk_compute(inputs=inputs, as_of=as_of)
    return result, services.allocation_suggest(result=result, params=params.defaults())


def test_the_suggestion_of_the_evening_before_reads_no_bar_after_it(desk, settings):
    settings.ALLOCATION_HISTORY_DAYS = 90
    settings.ALLOCATION_MIN_HISTORY_DAYS = 20
    inputs = selectors.desk_inputs()
    bars.load_bundled(end=EVE)  # history up to the evening before, nothing of the crash
    before, suggestion_before = _both(inputs, EVE)
    assert before["available"], before["not_available"]
    assert before["history"]["last"] <= EVE.isoformat()
    bars.load_bundled()  # now the crash day and the day after are stored too
    after, suggestion_after = _both(inputs, EVE)
    assert after == before
    assert suggestion_after == suggestion_before
    later, _ = _both(inputs, datetime(2021, 5, 20, 0, 0, tzinfo=UTC))
    assert later["desk"]["var_historical"] != before["desk"]["var_historical"]  # the crash is in its history


def test_the_demo_reads_its_2021_history_through_allocation_history_end(desk, settings):
    settings.ALLOCATION_HISTORY_END = EVE.isoformat()
    bars.load_bundled(end=EVE)
    result = services.risk_refresh()  # now: 2026, yet the history ends on the crash's eve
    assert result["available"], result["not_available"]
    assert result["as_of"] == EVE.isoformat()
