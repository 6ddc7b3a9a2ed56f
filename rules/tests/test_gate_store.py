"""The gate's counters: the Redis rate-window script (atomic, shared by every process) and the
in-process fallback of embedded mode count the same way."""

from __future__ import annotations

import threading
import time
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.core.cache import cache

from conftest import require_service
from rules import checks as c
from rules import gate


def limits(**values) -> c.GateProfile:
    return c.compile_profile(values)


def order(price: str = "49900.0") -> c.Order:
    return c.Order.make(symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.010"), price=D(price))


@pytest.fixture(params=["redis", "local"])
def store(request):
    if request.param == "redis":
        if not settings.REDIS_URL:
            require_service("REDIS_URL")
        cache.clear()
        yield gate.RedisStore(settings.REDIS_URL)
    else:
        yield gate.LocalStore()


def gather(store, *, reserve=True, profile=None, o=None, account_id=901):
    return store.gather(account_id=account_id, order=o or order(), profile=profile, reserve=reserve)


def test_the_rate_windows_count_this_order_and_admit_only_up_to_the_limit(store):
    profile = limits(order_rate_per_second=3, order_rate_per_minute=100)
    seen = [gather(store, profile=profile).counters.rate_1s for _ in range(6)]
    # 1, 2, 3 admitted; the 4th and later are over the limit and not recorded, so they stay at 4
    assert seen == [1, 2, 3, 4, 4, 4]
    assert gather(store, profile=profile).counters.rate_1m == 4


def test_the_second_window_slides(store):
    profile = limits(order_rate_per_second=2)
    assert [gather(store, profile=profile).counters.rate_1s for _ in range(3)] == [1, 2, 3]
    time.sleep(1.05)
    after = gather(store, profile=profile).counters
    assert after.rate_1s == 1 and after.rate_1m == 3


def test_a_check_only_peeks(store):
    profile = limits(order_rate_per_second=5, duplicate_window_s=5)
    for _ in range(3):
        peek = gather(store, profile=profile, reserve=False).counters
        assert (peek.rate_1s, peek.duplicate, peek.daily_orders) == (1, False, 1)


def test_duplicates_within_the_window_and_release(store):
    profile = limits(duplicate_window_s=5)
    first = gather(store, profile=profile)
    assert first.counters.duplicate is False
    assert gather(store, profile=profile).counters.duplicate is True
    assert gather(store, profile=profile, o=order("49800.0")).counters.duplicate is False
    store.release(first.reservation)  # the first was denied after all: its fingerprint goes
    assert gather(store, profile=profile, reserve=False).counters.duplicate is False


def test_the_day_count_reserves_and_releases(store):
    profile = limits(max_daily_orders=10)
    a, b = gather(store, profile=profile), gather(store, profile=profile)
    assert (a.counters.daily_orders, b.counters.daily_orders) == (1, 2)
    store.release(b.reservation)
    assert gather(store, profile=profile, reserve=False).counters.daily_orders == 2  # 1 held + this one


def test_cancels_are_counted_per_account(store):
    assert [store.cancel_counted(901) for _ in range(3)] == [1, 2, 3]
    assert gather(store, reserve=False).counters.daily_cancels == 3
    assert gather(store, reserve=False, account_id=902).counters.daily_cancels == 0


def test_concurrent_threads_never_admit_more_than_the_limit(store):
    profile = limits(order_rate_per_minute=25)
    results: list[int] = []
    lock = threading.Lock()

    def fire():
        for _ in range(20):
            n = gather(store, profile=profile).counters.rate_1m
            with lock:
                results.append(n)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for n in results if n <= 25) == 25
