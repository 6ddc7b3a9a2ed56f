"""A simulator on loopback (the real exchange protocol) for adapter and stream tests."""

from __future__ import annotations

import pytest

from marketdata.simulator import SimulatorThread, build_config

KEY, SECRET = "test-key-1", "test-secret-1"
HEDGE_KEY, HEDGE_SECRET = "test-key-2", "test-secret-2"
ACCOUNTS = {
    "accounts": [
        {
            "api_key": KEY,
            "api_secret": SECRET,
            "position_mode": "one-way",
            "wallet": {"USDT": "10000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "BOTH",
                    "qty": "0.5",
                    "entry_price": "43000",
                    "leverage": 20,
                    "margin_type": "cross",
                }
            ],
        },
        {
            "api_key": HEDGE_KEY,
            "api_secret": HEDGE_SECRET,
            "position_mode": "hedge",
            "wallet": {"USDT": "30000"},
            "positions": [
                {
                    "symbol": "BTCUSDT",
                    "side": "LONG",
                    "qty": "0.3",
                    "entry_price": "42500",
                    "leverage": 10,
                    "margin_type": "cross",
                },
                {
                    "symbol": "BTCUSDT",
                    "side": "SHORT",
                    "qty": "0.1",
                    "entry_price": "43500",
                    "leverage": 10,
                    "margin_type": "cross",
                },
            ],
        },
    ]
}


@pytest.fixture
def sim():
    config = build_config(accounts=ACCOUNTS, marks={"BTCUSDT": "43000", "ETHUSDT": "3400"}, tick_interval_s=0.2)
    thread = SimulatorThread(config)
    thread.start()
    yield thread
    thread.stop()
