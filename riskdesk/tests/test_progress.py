"""Progress bars on long commands: drawn on a terminal, silent when piped (issue 14 item 11)."""

from __future__ import annotations

import io

from django.core.management import call_command

from riskdesk.progress import progress, steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_and_nothing_when_piped():
    tty, pipe = Terminal(), io.StringIO()
    assert list(progress([1, 2, 3], desc="loading replays", stream=tty)) == [1, 2, 3]
    assert list(progress([1, 2, 3], desc="loading replays", stream=pipe)) == [1, 2, 3]
    assert "loading replays" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_a_step_bar_counts_by_hand():
    tty = Terminal()
    with steps(2, desc="importing x.yaml", stream=tty) as bar:
        bar.update()
        bar.update()
    assert "importing x.yaml" in tty.getvalue()


def test_seed_demo_and_import_rules_draw_on_a_terminal_and_stay_quiet_in_a_pipe(db):
    tty, pipe = Terminal(), io.StringIO()
    call_command("seed_demo", stdout=io.StringIO(), stderr=tty)
    assert "seeding the demo desk" in tty.getvalue()
    call_command("seed_demo", stdout=io.StringIO(), stderr=pipe)
    call_command("import_rules", "rules/fixtures/demo_rules.yaml", profile="p2", stdout=io.StringIO(), stderr=pipe)
    assert pipe.getvalue() == ""
    tty = Terminal()
    call_command("import_rules", "rules/fixtures/demo_rules.yaml", profile="p3", stdout=io.StringIO(), stderr=tty)
    assert "importing demo_rules.yaml" in tty.getvalue()


def test_the_simulator_draws_a_bar_while_loading_its_replays(monkeypatch):
    from marketdata.simulator import config

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    config.build_config(
        accounts="marketdata/fixtures/demo_accounts.yaml",
        replay=["marketdata/data/binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv"],
    )
    assert "loading replays" in terminal.getvalue()
