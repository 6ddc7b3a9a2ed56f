"""Rule evaluation: a profile's limits against the risk book's figures. Plain Python.

`measure` turns one account's figures into measurements (rule, subject, value);
`Latch` turns a stream of measurements into level changes, with N consecutive
evaluations to latch, and a hysteresis band plus a minimum dwell (time inside the
band, per rule) to clear, so a price hovering at a threshold does not flap. The
stream process calls both on every change the book reports and writes an alert
only when a latched level changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from positions.book import AccountRisk, PositionRisk
from rules.limits import LIMITS, LOWER_IS_WORSE
from rules.score import risk_score

NORMAL, WARNING, CRITICAL = 0, 20, 30  # the alert levels (alerts.models.Level)
ONE = Decimal(1)
# What one evaluation stands for in time: marks come once a second, so `breach_after_n` evaluations
# take (n - 1) s from the first breaching one; the timer confirms after as long when none come.
BREACH_CONFIRM_STEP_MS = 1000

# rule name -> (limit name in rules.limits, reason code)
RULES: dict[str, tuple[str, str]] = {
    "equity_floor": ("min_equity", "EQUITY_BELOW_FLOOR"),
    "asset_cap": ("asset_caps", "ASSET_ABOVE_CAP"),
    "utilization": ("max_utilization", "FUND_UTILIZATION_HIGH"),
    "position_notional": ("max_position_notional", "POSITION_NOTIONAL_HIGH"),
    "account_notional": ("max_account_notional", "ACCOUNT_NOTIONAL_HIGH"),
    "leverage": ("max_leverage", "LEVERAGE_HIGH"),
    "margin_ratio": ("margin_ratio", "MARGIN_RATIO_HIGH"),
    "liq_distance": ("liq_distance", "LIQUIDATION_NEAR"),
    "concentration": ("max_concentration", "CONCENTRATION_HIGH"),
    "daily_loss": ("max_daily_loss", "DAILY_LOSS_HIGH"),
    "drawdown": ("max_drawdown", "DRAWDOWN_HIGH"),
    "risk_degree": ("risk_degree", "RISK_DEGREE_HIGH"),  # the account-wide margin ratio (name kept)
    "hhi": ("max_hhi", "HHI_HIGH"),
    "risk_score": ("risk_score", "RISK_SCORE_HIGH"),
}
# Rules a profile may set per symbol (RiskProfile.symbol_limits): measured per position.
SYMBOL_RULES = ("position_notional", "leverage")
LOWER_WORSE = {lim.name for lim in LIMITS if lim.direction == LOWER_IS_WORSE}


@dataclass(frozen=True)
class Thresholds:
    warning: Decimal | None
    critical: Decimal | None
    lower_is_worse: bool = False


@dataclass(frozen=True)
class Limits:
    """A profile's limits as evaluation needs them (built from RiskProfile.limit_values())."""

    by_rule: dict[str, Thresholds]
    asset_caps: dict[str, Decimal]
    breach_after_n: int = 2
    hysteresis: Decimal = Decimal("0.02")
    auto_action: str = "none"
    auto_action_mode: str = "propose"
    # A level clears (or steps down) only after the value stayed inside the band this long.
    # 0 here (a Limits built by hand clears at once); profiles default to 30 s.
    clear_dwell_s: int = 0
    clear_dwell_by_rule: Mapping[str, int] = field(default_factory=dict)
    reopen_window_s: int | None = None  # None: the alerts app's default
    # symbol -> rule -> Thresholds, for SYMBOL_RULES: a symbol's position is held to these
    by_symbol: Mapping[str, Mapping[str, Thresholds]] = field(default_factory=dict)
    score_weights: Mapping[str, Any] | None = None  # None: settings.RISK_SCORE (rules.score)

    def thresholds(self, rule: str, subject: str) -> Thresholds | None:
        if self.by_symbol and rule in SYMBOL_RULES:
            found = self.by_symbol.get(subject.partition(":")[0])
            if found is not None and rule in found:
                return found[rule]
        return self.by_rule.get(rule)

    def dwell_ms(self, rule: str) -> int:
        return int(self.clear_dwell_by_rule.get(rule, self.clear_dwell_s)) * 1000

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Limits:
        by_rule = {}
        for rule, (limit, _) in RULES.items():
            if limit == "asset_caps":
                continue
            warning, critical = values.get(f"{limit}_warning"), values.get(f"{limit}_critical")
            if warning is None and critical is None:
                continue
            by_rule[rule] = Thresholds(_d(warning), _d(critical), limit in LOWER_WORSE)
        caps = {k: Decimal(str(v)) for k, v in (values.get("asset_caps") or {}).items()}
        by_symbol = {}
        for symbol, override in (values.get("symbol_limits") or {}).items():
            found = {}
            for rule in SYMBOL_RULES:
                limit = RULES[rule][0]
                names = (f"{limit}_warning", f"{limit}_critical")
                if not any(override.get(n) is not None for n in names):
                    continue
                warning, critical = (override.get(n, values.get(n)) for n in names)
                found[rule] = Thresholds(_d(warning), _d(critical), limit in LOWER_WORSE)
            if found:
                by_symbol[symbol] = found
        return cls(
            by_symbol=by_symbol,
            by_rule=by_rule,
            asset_caps=caps,
            breach_after_n=int(values.get("breach_after_n") or 1),
            hysteresis=Decimal(str(values.get("hysteresis") or 0)),
            auto_action=values.get("auto_action") or "none",
            auto_action_mode=values.get("auto_action_mode") or "propose",
            clear_dwell_s=int(values.get("clear_dwell_s") or 0),
            clear_dwell_by_rule={str(k): int(v) for k, v in (values.get("clear_dwell_by_rule") or {}).items()},
            reopen_window_s=None if values.get("reopen_window_s") is None else int(values["reopen_window_s"]),
            score_weights=values.get("score_weights"),
        )


@dataclass(frozen=True)
class Measurement:
    rule: str
    subject: str
    value: Decimal
    mark: Decimal | None = None


@dataclass
class DayState:
    """What daily loss and drawdown need beyond the book: equity at the start of the trading
    day and the peak since then. The caller resets it when the trading day rolls over."""

    day: str
    start_equity: Decimal
    peak_equity: Decimal

    def observe(self, equity: Decimal) -> None:
        self.peak_equity = max(self.peak_equity, equity)


def day_state_for(
    days: MutableMapping[Any, DayState], account_id: Any, day: str, equity: Decimal | None
) -> DayState | None:
    """The account's DayState after observing ``equity`` (None: an incomplete account, nothing moves).
    A new trading day starts from the equity seen first."""
    state = days.get(account_id)
    if equity is None:
        return state
    if state is None or state.day != day:
        state = days[account_id] = DayState(day=day, start_equity=equity, peak_equity=equity)
    state.observe(equity)
    return state


def measure(
    *,
    risk: AccountRisk,
    positions: Iterable[PositionRisk],
    day: DayState | None,
    rules: Iterable[str],
    anomalies: Decimal = Decimal(0),
    weights: Mapping[str, Any] | None = None,
) -> list[Measurement]:
    """The values the active rules compare. Figures the book could not compute are left out:
    the caller treats an incomplete account as a breach of its own (fail closed). ``anomalies``:
    the account's open anomaly alerts weighted by level (rules.score.anomaly_load), for the score."""
    wanted = set(rules)
    positions = list(positions)
    found: list[Measurement] = []
    found += _account_measurements(risk, day, wanted)
    for p in positions:
        found += _position_measurements(p, wanted)
    if "risk_score" in wanted:
        value = risk_score(risk=risk, positions=positions, day=day, anomalies=anomalies, weights=weights)
        if value is not None:
            found.append(Measurement("risk_score", "account", value.score))
    return found


def _account_measurements(risk: AccountRisk, day: DayState | None, wanted: set[str]) -> list[Measurement]:
    out = []
    candidates = {
        "equity_floor": risk.margin_balance,
        "utilization": risk.utilization,
        "account_notional": risk.gross_exposure,
        "concentration": risk.largest_symbol_share if (risk.gross_exposure or 0) > 0 else None,
        "hhi": risk.herfindahl if (risk.gross_exposure or 0) > 0 else None,
        "risk_degree": risk.margin_ratio,
        "margin_ratio": risk.cross_margin_ratio,
    }
    for rule, value in candidates.items():
        if rule in wanted and value is not None:
            out.append(Measurement(rule, "cross" if rule == "margin_ratio" else "account", value))
    if day is not None and risk.margin_balance is not None:
        if "daily_loss" in wanted:
            out.append(Measurement("daily_loss", "account", max(Decimal(0), day.start_equity - risk.margin_balance)))
        if "drawdown" in wanted and day.peak_equity > 0:
            drawdown = max(Decimal(0), (day.peak_equity - risk.margin_balance) / day.peak_equity)
            out.append(Measurement("drawdown", "account", drawdown))
    if "asset_cap" in wanted:
        for asset, figures in risk.per_asset.items():
            if figures is not None:
                out.append(Measurement("asset_cap", asset, figures.wallet_balance))
    return out


def _position_measurements(p: PositionRisk, wanted: set[str]) -> list[Measurement]:
    subject = f"{p.symbol}:{p.side}"
    out = []
    if "position_notional" in wanted and p.notional is not None:
        out.append(Measurement("position_notional", subject, p.notional, p.mark))
    if "leverage" in wanted:
        out.append(Measurement("leverage", subject, Decimal(p.leverage), p.mark))
    if "liq_distance" in wanted and p.liquidation_distance is not None:
        out.append(Measurement("liq_distance", subject, p.liquidation_distance, p.mark))
    if "margin_ratio" in wanted and p.margin_type == "isolated" and p.maint_margin is not None:
        balance = p.isolated_wallet + (p.unrealized_pnl or 0)
        ratio = p.maint_margin / balance if balance > 0 else ONE
        out.append(Measurement("margin_ratio", subject, ratio, p.mark))
    return out


def raw_level(value: Decimal, t: Thresholds) -> int:
    """The level a value is at right now, ignoring latching."""
    for level, limit in ((CRITICAL, t.critical), (WARNING, t.warning)):
        if limit is not None and (value <= limit if t.lower_is_worse else value >= limit):
            return level
    return NORMAL


def _still_breached(value: Decimal, limit: Decimal | None, t: Thresholds, band: Decimal) -> bool:
    """Clearing needs the value back inside the limit by the hysteresis band."""
    if limit is None:
        return False
    if t.lower_is_worse:
        return value < limit * (ONE + band)
    return value > limit * (ONE - band)


@dataclass
class _LatchState:
    level: int = NORMAL
    streaks: dict[int, int] = field(default_factory=lambda: {WARNING: 0, CRITICAL: 0})
    # Since when (ms) the value has been inside the band continuously, while a lower level waits
    # for its dwell; None when it is not (or the level is NORMAL).
    inside_since_ms: int | None = None
    # The last measurement (for the quiet refresh of an open row's value) and what was written.
    value: Decimal | None = None
    mark: Decimal | None = None
    written: Decimal | None = None
    written_ms: int = 0
    # Since when (ms, the caller's clock) the value has been at or beyond each level without a break.
    breach_since_ms: dict[int, int | None] = field(default_factory=lambda: {WARNING: None, CRITICAL: None})

    def pending(self) -> bool:
        """A level the value is at is not latched yet (its confirmation runs)."""
        return any(self.streaks[lv] and self.level < lv for lv in (WARNING, CRITICAL))


def _held_long(state: _LatchState, level: int, now_ms: int | None, confirm_ms: int) -> bool:
    since = state.breach_since_ms[level]
    return state.streaks[level] > 0 and now_ms is not None and since is not None and now_ms - since >= confirm_ms


@dataclass(frozen=True)
class Change:
    rule: str
    subject: str
    level: int  # NORMAL means cleared
    previous: int
    measurement: Measurement
    thresholds: Thresholds
    vanished: bool = False  # the subject left the book (a closed position), not a value back inside


@dataclass
class Latch:
    """Per (rule, subject) latched levels for one account."""

    states: dict[tuple[str, str], _LatchState] = field(default_factory=dict)

    def update(
        self,
        m: Measurement,
        t: Thresholds,
        *,
        n: int,
        band: Decimal,
        now_ms: int | None = None,
        dwell_ms: int = 0,
        settle: bool = False,
        count: bool = True,
    ) -> Change | None:
        """A level latches once the value has been at or beyond it for `n` evaluations in a row
        (so 0.79 then 0.81 against 0.5/0.8 latches warning, not nothing), and at once moves up.
        It steps down (or clears) once the value is back inside the limit by the hysteresis band
        and has stayed there for `dwell_ms` (on the caller's clock `now_ms`; without a clock there
        is no dwell). A value back out of the band in between restarts the dwell, so a value
        crossing and re-crossing a limit every few seconds keeps its one level.

        `settle`: step down now, without the dwell: the level was seeded from the alert rows
        after a restart, or the limits changed, and the caller resolves what no longer holds.

        Confirmation also completes with time (issue 14): a value at or beyond a level since
        (n - 1) x BREACH_CONFIRM_STEP_MS ago latches it, so a market frozen at a breach (no frame,
        no evaluation) does not hold the alert back. `count=False`: a re-visit on the clock (the
        evaluator's timer), which re-reads the same figures: it does not count as an evaluation,
        only the time moves (a spike then a re-visit must not pass for two frames)."""
        state = self.states.setdefault((m.rule, m.subject), _LatchState())
        state.value, state.mark = m.value, m.mark
        now = raw_level(m.value, t)
        for level in (WARNING, CRITICAL):
            if now < level:
                state.streaks[level], state.breach_since_ms[level] = 0, None
            elif count or state.streaks[level] == 0:
                state.streaks[level] += 1
                if state.streaks[level] == 1:
                    state.breach_since_ms[level] = now_ms
        confirm_ms = (n - 1) * BREACH_CONFIRM_STEP_MS
        latched = max(
            (lv for lv in (WARNING, CRITICAL) if state.streaks[lv] >= n or _held_long(state, lv, now_ms, confirm_ms)),
            default=NORMAL,
        )
        target = max(latched, self._held(m.value, t, state.level, band))
        if target >= state.level:
            state.inside_since_ms = None
            if target == state.level:
                return None
        elif not settle and now_ms is not None and dwell_ms > 0:
            if state.inside_since_ms is None:
                state.inside_since_ms = now_ms
            if now_ms - state.inside_since_ms < dwell_ms:
                return None
            state.inside_since_ms = None
        else:
            state.inside_since_ms = None
        previous, state.level = state.level, target
        return Change(m.rule, m.subject, target, previous, m, t)

    def seed(self, levels: Mapping[tuple[str, str], int]) -> None:
        """Latched levels from the open alert rows (after a restart): the latch starts where the
        alerts are, so a breach that still holds does not open a second row or notify again.
        Streaks start at zero: the level is held by the band, not re-latched."""
        for key, level in levels.items():
            if level > NORMAL:
                self.states.setdefault(key, _LatchState()).level = max(WARNING, min(int(level), CRITICAL))

    def dwelling(self) -> bool:
        """A lower level is waiting for its dwell, or a higher one for its confirmation: evaluate
        again on the clock even if nothing moves."""
        return any(s.inside_since_ms is not None or s.pending() for s in self.states.values())

    def holding(self, rules: Iterable[str] | None = None) -> set[tuple[str, str]]:
        """(rule, subject) latched above NORMAL (the alerts that should be open)."""
        wanted = None if rules is None else set(rules)
        return {k for k, s in self.states.items() if s.level != NORMAL and (wanted is None or k[0] in wanted)}

    def forget_missing(self, seen: set[tuple[str, str]]) -> list[tuple[str, str, int]]:
        """Subjects that disappeared (a closed position, a rule the profile no longer sets): cleared."""
        gone = [(key, s.level) for key, s in self.states.items() if key not in seen and s.level != NORMAL]
        for key, _ in gone:
            del self.states[key]
        return [(rule, subject, level) for (rule, subject), level in gone]

    @staticmethod
    def _held(value: Decimal, t: Thresholds, current: int, band: Decimal) -> int:
        """The latched level a value keeps while it has not cleared that level's limit by the band."""
        if current == CRITICAL and _still_breached(value, t.critical, t, band):
            return CRITICAL
        if current >= WARNING and _still_breached(value, t.warning, t, band):
            return WARNING
        return NORMAL


def evaluate(
    *,
    latch: Latch,
    limits: Limits,
    risk: AccountRisk,
    positions: list[PositionRisk],
    day: DayState | None,
    now_ms: int | None = None,
    settle: Iterable[str] = (),
    count: bool = True,
    anomalies: Decimal = Decimal(0),
) -> list[Change]:
    """Level changes for one account after one update of its figures. ``now_ms``: the clock the
    clearing dwell and the confirmation timer run on (None: neither). ``settle``: rules whose levels
    step down at once; ``count``: False for a re-visit on the clock (see Latch.update)."""
    rules = set(limits.by_rule) | ({"asset_cap"} if limits.asset_caps else set())
    for found in limits.by_symbol.values():
        rules.update(found)
    settle = set(settle)
    changes: list[Change] = []
    seen: set[tuple[str, str]] = set()
    measured = measure(
        risk=risk, positions=positions, day=day, rules=rules, anomalies=anomalies, weights=limits.score_weights
    )
    for m in measured:
        t = _asset_thresholds(limits, m.subject) if m.rule == "asset_cap" else limits.thresholds(m.rule, m.subject)
        if t is None:
            continue
        seen.add((m.rule, m.subject))
        change = latch.update(
            m,
            t,
            n=limits.breach_after_n,
            band=limits.hysteresis,
            now_ms=now_ms,
            dwell_ms=limits.dwell_ms(m.rule),
            settle=m.rule in settle,
            count=count,
        )
        if change is not None:
            changes.append(change)
    if not risk.complete:
        return changes  # a missing figure is not a recovery: keep what is latched
    for rule, subject, level in latch.forget_missing(seen):
        changes.append(
            Change(
                rule,
                subject,
                NORMAL,
                level,
                Measurement(rule, subject, Decimal(0)),
                Thresholds(None, None),
                vanished=True,
            )
        )
    return changes


def _asset_thresholds(limits: Limits, asset: str) -> Thresholds | None:
    cap = limits.asset_caps.get(asset)
    return Thresholds(None, cap) if cap is not None else None


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
