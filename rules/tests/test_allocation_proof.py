"""docs/ALLOCATION.md's proof, kept true: the demo desk over the real 2021-05-19 marks, as it is and
with the adviser's caps of the evening before (rules/allocation/proof.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules.allocation import proof


@pytest.fixture(scope="module")
def outcome():
    return proof.run()


def test_as_is_the_replay_liquidates_what_the_simulator_does(outcome):
    as_is = {a["name"][:6]: a for a in outcome["versions"]["as_is"]["accounts"]}
    # marketdata/fixtures/demo_accounts.yaml: 1's cross pool at 33,132.53 (reached ~12:55 UTC),
    # 4's isolated ETH at 3,142.57 (~02:55 UTC); 2 and 3 survive.
    assert [x["at"][:5] for x in as_is["demo-1"]["liquidations"]] == ["12:54"]
    assert [x["at"][:5] for x in as_is["demo-4"]["liquidations"]] == ["02:54"]
    assert not as_is["demo-2"]["liquidations"] and not as_is["demo-3"]["liquidations"]
    assert outcome["versions"]["as_is"]["liquidations"] == 2


def test_the_exchange_simulator_liquidates_the_same_positions(outcome):
    for version in outcome["versions"].values():
        ours = [len(a["liquidations"]) for a in version["accounts"]]
        theirs = [a["liquidations"] for a in version["simulator"]["accounts"]]
        assert ours == theirs
        for a, b in zip(version["accounts"], version["simulator"]["accounts"], strict=True):
            if not a["liquidations"]:  # no liquidation: the same equity path to the cent
                assert abs(Decimal(a["loss_at_close"]) - Decimal(b["loss_at_close"])) <= Decimal("0.02")


def test_the_suggestion_comes_from_before_the_crash_and_cuts_liquidations_and_loss(outcome):
    assert outcome["as_of"] == "2021-05-19T00:00:00+00:00"
    assert outcome["result"]["history"]["last"] <= outcome["as_of"]
    as_is, suggested = outcome["versions"]["as_is"], outcome["versions"]["suggested"]
    assert suggested["liquidations"] < as_is["liquidations"]
    assert Decimal(suggested["loss_at_trough"]) < Decimal(as_is["loss_at_trough"])
    for row in outcome["suggestion"]["limits"]:
        assert row["leverage_cap"] <= row["tier_max_leverage"]
    # the model's own crash scenario named the same two liquidations the replay found
    named = {(x["name"][:6], x["symbol"]) for x in outcome["result"]["scenarios"][0]["liquidations"]}
    assert named == {("demo-1", None), ("demo-4", "ETHUSDT")}
