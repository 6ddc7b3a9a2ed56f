"""Simulator configuration: the accounts file and the run options.

The accounts file is validated strictly because a typo there silently changes a
demo (a misspelt ``isolated_wallet`` would otherwise give a cross position):
every error names the key path, e.g. ``accounts[2].positions[0].side``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

from riskdesk.progress import progress

from .faults import FaultSpec
from .numbers import ZERO, to_decimal
from .replay import ReplaySource
from .symbols import SymbolSpec, load_universe

DEFAULT_LEVERAGE = 20  # Binance's default for a symbol never configured
ONE_WAY, HEDGE = "one-way", "hedge"
ACCOUNT_KEYS = {"api_key", "api_secret", "position_mode", "wallet", "positions", "leverage", "margin_type", "name"}
POSITION_KEYS = {"symbol", "side", "qty", "entry_price", "leverage", "margin_type", "isolated_wallet"}
MARGIN_TYPES = ("cross", "isolated")


class ConfigError(ValueError):
    """A malformed accounts file or option; the message names the offending key."""


@dataclass(frozen=True)
class PositionSpec:
    symbol: str
    side: str  # BOTH, LONG or SHORT
    qty: Decimal  # signed for BOTH, > 0 for a hedge leg
    entry_price: Decimal
    isolated_wallet: Decimal = ZERO


@dataclass(frozen=True)
class AccountSpec:
    api_key: str
    api_secret: str
    hedge: bool
    wallet: dict[str, Decimal]
    positions: tuple[PositionSpec, ...]
    leverage: dict[str, int]  # per symbol; symbols not listed use DEFAULT_LEVERAGE
    margin_type: dict[str, str]  # per symbol; default cross
    name: str = ""


@dataclass
class SimConfig:
    """Everything a ``Simulator`` needs. Build it with ``build_config``."""

    accounts: list[AccountSpec]
    symbols: dict[str, SymbolSpec]
    replay: list[ReplaySource] = field(default_factory=list)
    marks: dict[str, Decimal] = field(default_factory=dict)
    speed: float = 60.0  # simulated seconds per real second
    tick_interval_s: float = 1.0
    loop_replay: bool = True
    start_at: str | None = None
    seed: int = 0
    faults: list[FaultSpec] = field(default_factory=list)
    taker_fee_rate: Decimal = Decimal("0.0004")
    maker_fee_rate: Decimal = Decimal("0.0002")
    margin_call_ratio: Decimal = Decimal("0.8")
    listen_key_validity_s: float = 3600.0
    synthetic_volatility: float = 0.0002  # relative stdev per sqrt(simulated second)


# --------------------------------------------------------------------------- accounts file


def _keys(where: str, data: object, allowed: set[str], required: Sequence[str]) -> Mapping:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}: missing key {key!r}")
    return data


def _number(where: str, value: object) -> Decimal:
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _leverage(where: str, value: object, spec: SymbolSpec) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= spec.max_leverage:
        raise ConfigError(
            f"{where}: leverage must be an int from 1 to {spec.max_leverage} for {spec.symbol}, got {value!r}"
        )
    return value


def _margin_type(where: str, value: object) -> str:
    if value not in MARGIN_TYPES:
        raise ConfigError(f"{where}: must be one of {MARGIN_TYPES}, got {value!r}")
    return str(value)


def _symbol(where: str, value: object, symbols: Mapping[str, SymbolSpec]) -> SymbolSpec:
    if not isinstance(value, str) or value not in symbols:
        raise ConfigError(f"{where}: unknown symbol {value!r}")
    return symbols[value]


def _side_and_qty(where: str, row: Mapping, hedge: bool) -> tuple[str, Decimal]:
    side = row.get("side", "LONG" if hedge else "BOTH")
    allowed = ("LONG", "SHORT") if hedge else ("BOTH",)
    if side not in allowed:
        mode = HEDGE if hedge else ONE_WAY
        raise ConfigError(f"{where}.side: {side!r} is not valid in {mode} mode (use {' or '.join(allowed)})")
    qty = _number(f"{where}.qty", row["qty"])
    if qty == 0:
        raise ConfigError(f"{where}.qty: must not be 0")
    if side == "LONG" and qty < 0:
        raise ConfigError(f"{where}.qty: a LONG leg needs qty > 0, got {qty}")
    # Binance reports hedge SHORT legs negative; accept either sign, keep the size.
    return side, abs(qty) if side != "BOTH" else qty


def _position(
    where: str,
    row: object,
    hedge: bool,
    symbols: Mapping[str, SymbolSpec],
    settings: dict[str, tuple[int | None, str | None]],
) -> PositionSpec:
    data = _keys(where, row, POSITION_KEYS, ("symbol", "qty", "entry_price"))
    spec = _symbol(f"{where}.symbol", data["symbol"], symbols)
    side, qty = _side_and_qty(where, data, hedge)
    entry = _number(f"{where}.entry_price", data["entry_price"])
    if entry <= 0:
        raise ConfigError(f"{where}.entry_price: must be > 0, got {entry}")
    leverage = _leverage(f"{where}.leverage", data["leverage"], spec) if "leverage" in data else None
    margin_type = _margin_type(f"{where}.margin_type", data["margin_type"]) if "margin_type" in data else None
    _merge_setting(where, spec.symbol, settings, leverage, margin_type)
    leverage, margin_type = settings[spec.symbol]
    iw = ZERO
    if "isolated_wallet" in data:
        if margin_type != "isolated":
            raise ConfigError(f"{where}.isolated_wallet: only an isolated position has one (set margin_type: isolated)")
        iw = _number(f"{where}.isolated_wallet", data["isolated_wallet"])
        if iw <= 0:
            raise ConfigError(f"{where}.isolated_wallet: must be > 0, got {iw}")
    elif margin_type == "isolated":
        # Default: exactly the initial margin at entry, as if opened just now.
        iw = abs(qty) * entry / (leverage or DEFAULT_LEVERAGE)
    return PositionSpec(spec.symbol, side, qty, entry, iw)


def _merge_setting(
    where: str,
    symbol: str,
    settings: dict[str, tuple[int | None, str | None]],
    leverage: int | None,
    margin_type: str | None,
) -> None:
    """Leverage and margin type are per symbol on Binance: hedge legs must agree."""
    old_leverage, old_type = settings.get(symbol, (None, None))
    if None not in (old_leverage, leverage) and old_leverage != leverage:
        raise ConfigError(f"{where}.leverage: {symbol} already has leverage {old_leverage} (it is per symbol)")
    if None not in (old_type, margin_type) and old_type != margin_type:
        raise ConfigError(f"{where}.margin_type: {symbol} is already {old_type} (it is per symbol)")
    settings[symbol] = (leverage or old_leverage, margin_type or old_type)


def _wallet(where: str, data: object) -> dict[str, Decimal]:
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f'{where}: expected a mapping of asset to amount, e.g. {{USDT: "10000"}}')
    wallet = {}
    for asset, amount in data.items():
        value = _number(f"{where}.{asset}", amount)
        if value < 0:
            raise ConfigError(f"{where}.{asset}: must be >= 0, got {value}")
        wallet[_text(f"{where} asset", asset)] = value
    return wallet


def _symbol_map(where: str, data: object, symbols: Mapping[str, SymbolSpec], parse) -> dict:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of symbol to value")
    return {_symbol(f"{where}.{k}", k, symbols).symbol: parse(f"{where}.{k}", v, symbols[k]) for k, v in data.items()}


def _account(where: str, row: object, symbols: Mapping[str, SymbolSpec]) -> AccountSpec:
    data = _keys(where, row, ACCOUNT_KEYS, ("api_key", "api_secret", "wallet"))
    mode = data.get("position_mode", ONE_WAY)
    if mode not in (ONE_WAY, HEDGE):
        raise ConfigError(f"{where}.position_mode: must be {ONE_WAY!r} or {HEDGE!r}, got {mode!r}")
    hedge = mode == HEDGE
    leverage = _symbol_map(f"{where}.leverage", data.get("leverage", {}), symbols, _leverage)
    margin = _symbol_map(
        f"{where}.margin_type", data.get("margin_type", {}), symbols, lambda w, v, _s: _margin_type(w, v)
    )
    settings: dict[str, tuple[int | None, str | None]] = {s: (v, None) for s, v in leverage.items()}
    for symbol, value in margin.items():
        settings[symbol] = (settings.get(symbol, (None, None))[0], value)
    rows = data.get("positions") or []
    if not isinstance(rows, list):
        raise ConfigError(f"{where}.positions: expected a list")
    positions = tuple(_position(f"{where}.positions[{i}]", r, hedge, symbols, settings) for i, r in enumerate(rows))
    seen = set()
    for i, p in enumerate(positions):
        if (p.symbol, p.side) in seen:
            raise ConfigError(f"{where}.positions[{i}]: second {p.symbol} {p.side} position")
        seen.add((p.symbol, p.side))
    return AccountSpec(
        api_key=_text(f"{where}.api_key", data["api_key"]),
        api_secret=_text(f"{where}.api_secret", data["api_secret"]),
        hedge=hedge,
        wallet=_wallet(f"{where}.wallet", data["wallet"]),
        positions=positions,
        leverage={s: lev for s, (lev, _t) in settings.items() if lev is not None},
        margin_type={s: t for s, (_l, t) in settings.items() if t is not None},
        name=str(data.get("name", "")),
    )


def parse_accounts(data: object, symbols: Mapping[str, SymbolSpec]) -> list[AccountSpec]:
    """Validate a loaded accounts document ``{"accounts": [...]}``."""
    top = _keys("accounts file", data, {"accounts"}, ("accounts",))
    rows = top["accounts"]
    if not isinstance(rows, list) or not rows:
        raise ConfigError("accounts: expected a non-empty list")
    accounts = [_account(f"accounts[{i}]", row, symbols) for i, row in enumerate(rows)]
    keys = [a.api_key for a in accounts]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ConfigError(f"accounts[{i}].api_key: duplicate api_key {key!r}")
    return accounts


def load_accounts(path: str | Path, symbols: Mapping[str, SymbolSpec]) -> list[AccountSpec]:
    """Read and validate an accounts YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read accounts file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"accounts file {path} is not valid YAML: {exc}") from None
    return parse_accounts(data, symbols)


# --------------------------------------------------------------------------- whole config


def build_config(
    *,
    accounts: str | Path | Mapping,
    replay: Sequence[str] = (),
    synthetic_symbols: int = 0,
    seed: int = 0,
    marks: Mapping[str, object] | None = None,
    **options: object,
) -> SimConfig:
    """One entry point for the command, the tests and the bench.

    ``accounts`` is a YAML path or an already loaded ``{"accounts": [...]}``
    mapping; ``replay`` holds CSV paths or ``SYMBOL=path`` strings; other keyword
    arguments are ``SimConfig`` fields (speed, tick_interval_s, loop_replay, ...).
    """
    if synthetic_symbols < 0:
        raise ConfigError(f"--synthetic-symbols must be >= 0, got {synthetic_symbols}")
    symbols = load_universe(synthetic_symbols=synthetic_symbols, seed=seed)
    specs = parse_accounts(accounts, symbols) if isinstance(accounts, Mapping) else load_accounts(accounts, symbols)
    sources = [ReplaySource.load(arg, symbols) for arg in progress(list(replay), desc="loading replays")]
    if len({s.symbol for s in sources}) != len(sources):
        raise ConfigError("--replay: one file per symbol")
    fixed = {_symbol(f"--marks {k}", k, symbols).symbol: _positive(f"--marks {k}", v) for k, v in (marks or {}).items()}
    unknown = set(options) - set(SimConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r}")
    config = SimConfig(accounts=specs, symbols=symbols, replay=sources, marks=fixed, seed=seed, **options)  # type: ignore[arg-type]
    _check_run_options(config)
    return config


def _positive(where: str, value: object) -> Decimal:
    number = _number(where, value)
    if number <= 0:
        raise ConfigError(f"{where}: must be > 0, got {number}")
    return number


def _check_run_options(config: SimConfig) -> None:
    if not config.speed > 0:
        raise ConfigError(f"--speed must be > 0, got {config.speed}")
    if not config.tick_interval_s > 0:
        raise ConfigError(f"--tick-interval must be > 0, got {config.tick_interval_s}")
    if config.start_at and not config.replay:
        raise ConfigError("--start-at needs --replay")
