"""The risk_control YAML format: parse with line numbers, validate whole, write back.

```yaml
risk_control:
  position: {max_leverage: 20, max_position_value: 1000000, risk_ratio_threshold: 0.8}
  order: {max_single_order: 100000, price_deviation_limit: 0.05, order_frequency_limit: 10}
  account: {max_daily_loss: 50000, risk_level_threshold: 0.9}
  symbols:                     # per-symbol overrides (rules.limits.SYMBOL_LIMIT_FIELDS)
    BTCUSDT: {max_order_qty: 5, max_position_notional_critical: 2000000, max_leverage_critical: 10}
```

The seed's keys map to profile fields through `SEED_ALIASES`; every other
profile field is written under its family's section by its own name. Numbers
are read as Decimal from their source text (never through a float), so
`0.1` stays exactly 0.1. No Django here: the command and tests call it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml

from rules.limits import (
    ACTION_FIELDS,
    EVALUATION_FIELDS,
    LIMITS,
    LIST_FIELDS,
    SEED_ALIASES,
    SYMBOL_LIMIT_FIELDS,
    validate_limits,
)

ROOT = "risk_control"
PROFILE_KEYS = ("description", "is_default")


def _section_keys() -> dict[str, dict[str, str]]:
    """section -> {yaml key -> profile field}."""
    sections: dict[str, dict[str, str]] = {
        "profile": {k: k for k in PROFILE_KEYS},
        "funds": {"asset_caps": "asset_caps"},
        "position": {},
        "order": {f: f for f in LIST_FIELDS},
        "account": {},
        "anomaly": {},
        "evaluation": {f: f for f in EVALUATION_FIELDS},
        "actions": {f: f for f in ACTION_FIELDS},
        "symbols": {},  # symbol -> overrides: read by _collect_symbols, not key by key
    }
    for limit in LIMITS:
        for field in limit.fields():
            sections[limit.section][field] = field
    for (section, key), field in SEED_ALIASES.items():
        sections[section].pop(field, None)  # the seed's name wins on export
        sections[section][key] = field
    return sections


SECTIONS = _section_keys()


class RulesFileError(ValueError):
    """A refused file. `problems` lists every problem, each naming the key and line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class _DecimalLoader(yaml.SafeLoader):
    pass


def _decimal_float(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = loader.construct_scalar(node).replace("_", "").lower()
    # YAML spells the specials .nan/.inf; they are read so that validation can refuse them by name.
    specials = {".nan": "NaN", ".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity"}
    return Decimal(specials.get(text, text))


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal_float)


def _lines(node: yaml.Node, path: str = "") -> dict[str, int]:
    """Map 'a.b.c' key paths to 1-based line numbers, for error messages."""
    found: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{path}.{key_node.value}" if path else str(key_node.value)
            found[key] = key_node.start_mark.line + 1
            found.update(_lines(value_node, key))
    return found


def _where(path: str, lines: dict[str, int]) -> str:
    return f"{path} (line {lines[path]})" if path in lines else path


def _type_problem(field: str, value: Any) -> str | None:
    if field in LIST_FIELDS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "expected a list of strings"
    if field == "asset_caps":
        return None if isinstance(value, dict) else "expected a mapping of asset to cap"
    if field in ("description", "auto_action", "auto_action_mode", "bypass_action"):
        return None if isinstance(value, str) else "expected text"
    if field == "is_default":
        return None if isinstance(value, bool) else "expected true or false"
    if field in ("breach_after_n", "clear_dwell_s", "reopen_window_s"):
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected a whole number"
    if field == "clear_dwell_by_rule":
        return None if isinstance(value, dict) else "expected a mapping of rule to seconds"
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return f"expected a number, got {type(value).__name__}"
    return None


def _collect(doc: Any, lines: dict[str, int]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(values by field, field -> yaml path, problems)."""
    if not isinstance(doc, dict) or set(doc) != {ROOT}:
        return {}, {}, [f"the file must hold one top-level key '{ROOT}'"]
    body = doc[ROOT]
    if not isinstance(body, dict):
        return {}, {}, [f"{_where(ROOT, lines)}: expected a mapping of sections"]
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for section, entries in body.items():
        path = f"{ROOT}.{section}"
        if section == "symbols":
            _collect_symbols(entries, path, lines, values, origin, problems)
            continue
        if section not in SECTIONS:
            problems.append(f"{_where(path, lines)}: unknown section (known: {', '.join(SECTIONS)})")
            continue
        if not isinstance(entries, dict):
            problems.append(f"{_where(path, lines)}: expected a mapping")
            continue
        for key, value in entries.items():
            key_path = f"{path}.{key}"
            field = SECTIONS[section].get(str(key))
            if field is None:
                problems.append(f"{_where(key_path, lines)}: unknown key")
                continue
            problem = _type_problem(field, value)
            if problem:
                problems.append(f"{_where(key_path, lines)}: {problem}")
                continue
            values[field], origin[field] = value, key_path
    return values, origin, problems


def _collect_symbols(
    entries: Any, path: str, lines: dict[str, int], values: dict, origin: dict, problems: list[str]
) -> None:
    if not isinstance(entries, dict):
        problems.append(f"{_where(path, lines)}: expected a mapping of symbol to limits")
        return
    found: dict[str, dict[str, Any]] = {}
    for symbol, override in entries.items():
        symbol_path = f"{path}.{symbol}"
        if not isinstance(override, dict):
            problems.append(f"{_where(symbol_path, lines)}: expected a mapping of limit to value")
            continue
        found[str(symbol).upper()] = {}
        for key, value in override.items():
            key_path = f"{symbol_path}.{key}"
            if key not in SYMBOL_LIMIT_FIELDS:
                problems.append(f"{_where(key_path, lines)}: unknown key (known: {', '.join(SYMBOL_LIMIT_FIELDS)})")
                continue
            problem = _type_problem(key, value)
            if problem:
                problems.append(f"{_where(key_path, lines)}: {problem}")
                continue
            found[str(symbol).upper()][key] = value
    values["symbol_limits"], origin["symbol_limits"] = found, path


def parse_rules(text: str, *, exchange_max_leverage: int) -> dict[str, Any]:
    """Profile field values from a rules file, or RulesFileError naming every problem."""
    try:
        node = yaml.compose(text, Loader=_DecimalLoader)
        doc = yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RulesFileError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    lines = _lines(node) if node is not None else {}
    values, origin, problems = _collect(doc, lines)
    if not problems:
        for field, message in validate_limits(values, exchange_max_leverage=exchange_max_leverage).items():
            problems.append(f"{_where(origin.get(field, field), lines)}: {message}")
    if problems:
        raise RulesFileError(problems)
    return values


def _yaml_number(value: Decimal) -> int | Decimal:
    return int(value) if value == value.to_integral_value() else value


class _DecimalDumper(yaml.SafeDumper):
    pass


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:float", format(value.normalize(), "f"))


_DecimalDumper.add_representer(Decimal, _represent_decimal)


def dump_rules(values: dict[str, Any]) -> str:
    """The file for one profile's values; unset limits are left out."""
    body: dict[str, dict[str, Any]] = {}
    for section, keys in SECTIONS.items():
        entries = {}
        for key, field in keys.items():
            value = values.get(field)
            if value is None or value == [] or value == {} or (field == "description" and value == ""):
                continue
            entries[key] = _yaml_number(value) if isinstance(value, Decimal) else value
        if entries:
            body[section] = entries
    symbols = {
        symbol: {k: _yaml_number(v) if isinstance(v, Decimal) else v for k, v in override.items() if v is not None}
        for symbol, override in sorted((values.get("symbol_limits") or {}).items())
    }
    if symbols:
        body["symbols"] = symbols
    return yaml.dump({ROOT: body}, Dumper=_DecimalDumper, sort_keys=False, allow_unicode=True)
