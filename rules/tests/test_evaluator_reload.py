"""The evaluator re-reads the risk profiles every PROFILE_RELOAD_S: a change reaches evaluation,
and an unchanged set keeps the limits object (and with it the screen's bounds, which are rebuilt
on the next frame's path whenever the limits object changes)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from accounts import services as account_services
from marketdata.sink import DjangoSink
from marketdata.streams import AccountSpec, StreamEngine
from rules.evaluator import attach
from rules.models import RiskProfile


@pytest.mark.django_db(transaction=True)
def test_a_reload_keeps_unchanged_limits_and_picks_up_a_changed_profile_and_keeps_the_day():
    account = account_services.account_create(name="reload", api_key="k", api_secret="s")
    profile = RiskProfile.objects.create(name="desk", is_default=True, max_leverage_warning=20)
    engine = StreamEngine(
        accounts=[AccountSpec(account.id, account.name, "k", "s")],
        rest_url="http://127.0.0.1:9",  # never started: only the evaluator's reload runs
        ws_url="ws://127.0.0.1:9",
        sink=DjangoSink(),
    )
    evaluator = attach(engine)

    asyncio.run(evaluator.load())
    first, days = evaluator.limits, evaluator.days
    assert first[account.id].by_rule["leverage"].warning == D(20)

    asyncio.run(evaluator.load_limits())  # what the reloader runs every PROFILE_RELOAD_S
    assert evaluator.limits is first  # nothing changed: the same object, the screen stays built

    profile.max_leverage_warning = 10
    profile.save()
    asyncio.run(evaluator.load_limits())
    assert evaluator.limits is not first and evaluator.limits[account.id].by_rule["leverage"].warning == D(10)
    assert evaluator.days is days  # the day's figures evaluation keeps are not re-read over
