"""Pure fixtures for the risk-maths tests (no database, no Django)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from positions.margin import Bracket, brackets_from_binance

DATA_DIR = Path(__file__).resolve().parents[2] / "marketdata" / "data"
BRACKET_FIXTURE = DATA_DIR / "binance_um_leverageBracket_majors_2024-10-24.json"


@lru_cache(maxsize=1)
def load_bracket_tables() -> dict[str, tuple[Bracket, ...]]:
    """symbol -> validated bracket table, from the 2024-10-24 fixture (27 symbols)."""
    rows = json.loads(BRACKET_FIXTURE.read_text())
    return {row["symbol"]: tuple(brackets_from_binance(row["brackets"])) for row in rows}


@pytest.fixture
def bracket_tables() -> dict[str, tuple[Bracket, ...]]:
    return load_bracket_tables()
