"""The simulator's symbol universe: exchangeInfo filters and leverage brackets.

Brackets come from the 2024-10-24 fixture (marketdata/data, provenance in
SOURCES.md). BTCUSDT and ETHUSDT carry Binance's real filter values; the other
fixture symbols and the synthetic SYNnnnUSDT ones get filters derived from a
typical price by one rule (tick ~ price/10^4..10^5, min notional 5 USDT), which
is close to Binance's listings and good enough for a test exchange.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from positions.margin import Bracket, brackets_from_binance

from .numbers import decimals_of

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
BRACKET_FIXTURE = DATA_DIR / "binance_um_leverageBracket_majors_2024-10-24.json"
QUOTE_ASSET = "USDT"
SYNTHETIC_PREFIX = "SYN"

# Typical prices around 2024-10-24, only used as default marks (no replay, no
# --marks, no account entry price) and to derive tick/step for the filters.
TYPICAL_PRICES: dict[str, str] = {
    "BTCUSDT": "67000",
    "ETHUSDT": "2500",
    "BNBUSDT": "590",
    "SOLUSDT": "170",
    "XRPUSDT": "0.52",
    "DOGEUSDT": "0.14",
    "ADAUSDT": "0.35",
    "LTCUSDT": "70",
    "LINKUSDT": "11.5",
    "DOTUSDT": "4.2",
    "AVAXUSDT": "26",
    "BCHUSDT": "350",
    "TRXUSDT": "0.16",
    "TONUSDT": "5.0",
    "SUIUSDT": "2.0",
    "NEARUSDT": "4.6",
    "FILUSDT": "3.8",
    "ETCUSDT": "19",
    "UNIUSDT": "7.5",
    "APTUSDT": "9.5",
    "ARBUSDT": "0.55",
    "OPUSDT": "1.7",
    "ATOMUSDT": "4.4",
    "POLUSDT": "0.34",
    "1000PEPEUSDT": "0.0095",
    "1000SHIBUSDT": "0.018",
    "WIFUSDT": "2.3",
}


@dataclass(frozen=True)
class Filters:
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int


# Binance's published values for the two symbols the demo desk trades.
KNOWN_FILTERS: dict[str, Filters] = {
    "BTCUSDT": Filters(
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("1000"), Decimal("120"), Decimal("100"), 2, 3
    ),
    "ETHUSDT": Filters(
        Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal("10000"), Decimal("2000"), Decimal("20"), 2, 3
    ),
}


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base_asset: str
    filters: Filters
    brackets: tuple[Bracket, ...]
    bracket_rows: tuple[dict, ...] = field(repr=False)  # raw fixture rows, echoed by /leverageBracket
    typical_price: Decimal
    synthetic: bool = False
    quote_asset: str = QUOTE_ASSET
    margin_asset: str = QUOTE_ASSET

    @property
    def max_leverage(self) -> int:
        return self.brackets[0].max_leverage

    def max_notional_for(self, leverage: int) -> Decimal:
        """Binance's maxNotionalValue: the cap of the last bracket that still allows ``leverage``."""
        cap = self.brackets[0].cap
        for bracket in self.brackets:
            if bracket.max_leverage >= leverage:
                cap = bracket.cap
        return cap


def derived_filters(price: Decimal) -> Filters:
    """Filters for a symbol trading near ``price``: ~5 significant digits of price, 5 USDT minimum."""
    magnitude = math.floor(math.log10(price))
    tick = Decimal(1).scaleb(min(magnitude - 4, 0))
    step_exp = max(-3, min(0, math.floor(math.log10(5 / price))))
    step = Decimal(1).scaleb(step_exp)
    max_qty = Decimal(1).scaleb(max(1, math.ceil(math.log10(10_000_000 / price))))
    return Filters(tick, step, step, max_qty, max_qty / 10, Decimal(5), decimals_of(tick), decimals_of(step))


def _spec(symbol: str, rows: list[dict], price: Decimal, *, synthetic: bool = False) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol,
        base_asset=symbol.removesuffix(QUOTE_ASSET),
        filters=KNOWN_FILTERS.get(symbol) or derived_filters(price),
        brackets=tuple(brackets_from_binance(rows)),
        bracket_rows=tuple(rows),
        typical_price=price,
        synthetic=synthetic,
    )


def synthetic_price(rng: random.Random) -> Decimal:
    """A log-uniform price between 0.1 and 30,000 with 5 significant digits."""
    value = Decimal(str(10 ** rng.uniform(-1, 4.5)))
    return value.quantize(Decimal(1).scaleb(math.floor(math.log10(value)) - 4))


def load_universe(
    *, synthetic_symbols: int = 0, seed: int = 0, fixture: Path = BRACKET_FIXTURE
) -> dict[str, SymbolSpec]:
    """Fixture symbols plus ``synthetic_symbols`` SYNnnnUSDT ones with bracket tables cycled from the fixture."""
    table = json.loads(fixture.read_text())
    universe = {
        row["symbol"]: _spec(row["symbol"], row["brackets"], Decimal(TYPICAL_PRICES.get(row["symbol"], "10")))
        for row in table
    }
    rng = random.Random(seed)
    for n in range(synthetic_symbols):
        name = f"{SYNTHETIC_PREFIX}{n:03d}{QUOTE_ASSET}"
        universe[name] = _spec(name, table[n % len(table)]["brackets"], synthetic_price(rng), synthetic=True)
    return universe
