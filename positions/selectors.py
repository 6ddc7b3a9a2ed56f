"""What the desk pages show: each visible account's figures and positions with their freshness.

Reads only. The live figures come from the order gate's `account_risk` (the stream engine's
live state plus its staleness verdict, one round trip), so a page and the gate never disagree
about whether a figure is fresh. Without live state (the stream process is down, or has not
published yet) the figures fall back to the last Position rows and AccountSnapshot, and say so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import access
from accounts.models import ExchangeAccount, TradingState, User
from marketdata import live
from marketdata.models import LeverageBracket
from positions import whatif
from positions.figures import PositionInput
from positions.margin import Bracket, liquidation_distance
from positions.models import AccountSnapshot, ClosedPosition, Fill, FundingFee, Position
from riskdesk.redis_clients import REDIS_DOWN

# Colour bands of the distance to liquidation (fraction of the mark), shared by the table and the legend.
BAND_SAFE = Decimal("0.15")
BAND_DANGER = Decimal("0.05")
CLOSED_ROWS = 200  # a page of today's closes; more is the admin's job
ACTION_HISTORY_ROWS = 50
PNL_POINTS = 600  # per account on first load: enough for a smooth curve, small enough to ship in the page


@dataclass(frozen=True)
class Freshness:
    """How old a set of figures is and whether to trust it. `source` is live | snapshot | none."""

    source: str
    at: datetime | None
    age_s: float | None
    stale: bool
    reasons: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        return self.source == "live"

    @property
    def at_ms(self) -> int | None:
        return int(self.at.timestamp() * 1000) if self.at else None


@dataclass(frozen=True)
class Feed:
    name: str  # "market" or "user:<account id>"
    account_id: int | None
    account_name: str
    connected: bool
    stale: bool
    last_ms: int | None
    age_s: float | None
    reconnects: int
    messages: int = 0  # events received since the stream process started
    unavailable: bool = False  # Redis is down: nothing is known about the feed (the pages' banner)

    @property
    def quiet(self) -> bool:
        """A user stream that has carried no account event yet (not: one whose last event is old)."""
        return self.account_id is not None and self.last_ms is None and not self.messages


@dataclass
class PositionRow:
    account_id: int
    account_name: str
    symbol: str
    side: str
    qty: Decimal
    is_long: bool
    notional: Decimal | None
    leverage: int | None
    entry_price: Decimal | None
    mark: Decimal | None
    unrealized_pnl: Decimal | None
    liquidation_price: Decimal | None
    liquidation_distance: Decimal | None
    margin_type: str
    freshness: Freshness
    raw_qty: Decimal = Decimal(0)  # as the maths takes it: signed for BOTH, absolute for a hedge leg
    isolated_wallet: Decimal = Decimal(0)
    margin_asset: str = "USDT"

    @property
    def band(self) -> str:
        return distance_band(self.liquidation_distance)

    @property
    def key(self) -> str:
        return f"{self.account_id}-{self.symbol}-{self.side}"


@dataclass(frozen=True)
class Liquidation:
    """What the account's open LIQUIDATED alerts say: when (the latest fill) and the realized loss
    (summed over every liquidated position still waiting for a person)."""

    at: datetime
    realized_pnl: Decimal
    subjects: tuple[str, ...]
    alert_ids: tuple[int, ...]


@dataclass
class AccountView:
    id: int
    name: str
    trading_state: str
    trading_state_reason: str
    freshness: Freshness
    figures: dict[str, Decimal | None]
    positions: list[PositionRow]
    symbol_exposures: dict[str, Decimal] = field(default_factory=dict)
    open_orders: int = 0
    user_feed: Feed | None = None
    realized_pnl_today: Decimal | None = None
    liquidation: Liquidation | None = None  # while a LIQUIDATED alert waits for a risk manager
    # Balances by asset as the stream process published them (marketdata/collateral.py): assets rows
    # (asset, balance, index, haircut, rate, value), multi_assets, total (USD), missing.
    assets: dict[str, Any] | None = None

    @property
    def asset_rows(self) -> list[dict[str, Any]]:
        """The rows worth showing: every asset held, or every one listed in multi-assets mode."""
        rows = (self.assets or {}).get("assets") or []
        return [r for r in rows if (_dec(r.get("balance")) or 0) != 0 or r.get("asset") == "USDT"]

    def figure(self, name: str) -> Decimal | None:
        return self.figures.get(name)

    @property
    def trading_state_label(self) -> str:
        return str(TradingState(self.trading_state).label) if self.trading_state in TradingState.values else ""


def distance_band(distance: Decimal | None) -> str:
    """safe (≥ 15 %), warn (5–15 %), danger (< 5 %), none (no liquidation price: Binance's "--")."""
    if distance is None:
        return "none"
    if distance >= BAND_SAFE:
        return "safe"
    if distance >= BAND_DANGER:
        return "warn"
    return "danger"


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _from_ms(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms else None


def _age_s(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


FIGURES = (
    "wallet_balance",
    "margin_balance",
    "equity",
    "unrealized_pnl",
    "maint_margin",
    "margin_ratio",
    "initial_margin",
    "utilization",
    "gross_exposure",
    "net_exposure",
)


# --------------------------------------------------------------------------- accounts


def desk_accounts(user: User, *, account_id: int | None = None) -> list[AccountView]:
    """Every account the user may see (or the one asked for, 404 when not theirs), with figures."""
    if account_id is not None:
        accounts = [access.get_account_for_user(user, account_id)]
    else:
        accounts = list(access.accounts_visible_to(user).order_by("name"))
    return _with_ledger([_account_view(a) for a in accounts])


def account_view(account: ExchangeAccount) -> AccountView:
    return _with_ledger([_account_view(account)])[0]


def _account_view(account: ExchangeAccount) -> AccountView:
    from rules import gate  # the order gate owns the live read and its staleness verdict

    risk = gate.account_risk(account=account)  # without Redis: no live figures, stale for LIVE_STATE_UNAVAILABLE
    user_feed = _live_feed(f"user:{account.id}", account)
    view = _from_rows(account, risk) if risk["published_ms"] is None else _from_live(account, risk)
    view.user_feed = user_feed
    from marketdata.collateral import account_assets_get

    try:
        view.assets = account_assets_get(account.id)
    except REDIS_DOWN:  # balances by asset live only in the cache: without Redis the card has none
        view.assets = None
    return view


def _with_ledger(views: list[AccountView]) -> list[AccountView]:
    """Realized PnL today and the liquidation mark, for all the views in a few queries."""
    ids = [v.id for v in views]
    realized = realized_pnl_today(account_ids=ids)
    liquidations = liquidations_unacknowledged(account_ids=ids)
    for v in views:
        v.realized_pnl_today = realized.get(v.id)
        v.liquidation = liquidations.get(v.id)
    return views


def liquidations_unacknowledged(*, account_ids: list[int]) -> dict[int, Liquidation]:
    """Accounts with an open (not yet acknowledged) LIQUIDATED alert. The alert keeps the fills
    it was raised for (alerts.services.alert_liquidated); its value is the summed realized loss."""
    from alerts.models import Alert, AlertStatus

    found: dict[int, list[Alert]] = {}
    rows = Alert.objects.filter(account_id__in=account_ids, rule="liquidated", status=AlertStatus.OPEN)
    for alert in rows.order_by("opened_at"):
        found.setdefault(alert.account_id, []).append(alert)
    marks = {}
    for account_id, alerts in found.items():
        times = [_liquidation_ms(a) for a in alerts]
        marks[account_id] = Liquidation(
            at=_from_ms(max(times)) or alerts[-1].opened_at,
            realized_pnl=sum((_liquidation_pnl(a) for a in alerts), Decimal(0)),
            subjects=tuple(a.subject for a in alerts),
            alert_ids=tuple(a.id for a in alerts),
        )
    return marks


def _liquidation_ms(alert: Any) -> int:
    details = alert.details or {}
    times = [int(f.get("time_ms") or 0) for f in details.get("fills") or []] or [int(details.get("time_ms") or 0)]
    return max(times) or int(alert.opened_at.timestamp() * 1000)


def _liquidation_pnl(alert: Any) -> Decimal:
    value = _dec((alert.details or {}).get("realized_pnl"))
    return value if value is not None else (alert.value or Decimal(0))


def _from_live(account: ExchangeAccount, risk: dict[str, Any]) -> AccountView:
    now = timezone.now()
    at = _from_ms(risk["published_ms"])
    fresh = Freshness("live", at, _age_s(at, now), bool(risk["stale"]), tuple(risk["stale_reasons"]))
    raw = risk["figures"] or {}
    figures = {name: _dec(raw.get(name)) for name in FIGURES}
    rows = [_live_row(account, p, fresh) for p in risk["positions"]]
    exposures = {s: _dec(v) or Decimal(0) for s, v in (raw.get("symbol_exposures") or {}).items()}
    return AccountView(
        id=account.id,
        name=account.name,
        trading_state=account.trading_state,  # the row just read: what a risk manager set
        trading_state_reason=account.trading_state_reason,
        freshness=fresh,
        figures=figures,
        positions=rows,
        symbol_exposures=exposures,
        open_orders=int(risk["open_orders"] or 0),
    )


def _live_row(account: ExchangeAccount, p: dict[str, Any], fresh: Freshness) -> PositionRow:
    qty = _dec(p.get("qty")) or Decimal(0)
    side = str(p.get("side") or "BOTH")
    return PositionRow(
        account_id=account.id,
        account_name=account.name,
        symbol=str(p.get("symbol")),
        side=side,
        qty=-qty if side == "SHORT" else qty,
        is_long=side == "LONG" or (side == "BOTH" and qty > 0),
        notional=_dec(p.get("notional")),
        leverage=p.get("leverage"),
        entry_price=_dec(p.get("entry_price")),
        mark=_dec(p.get("mark")),
        unrealized_pnl=_dec(p.get("unrealized_pnl")),
        liquidation_price=_dec(p.get("liquidation_price")),
        liquidation_distance=_dec(p.get("liquidation_distance")),
        margin_type=str(p.get("margin_type") or "cross"),
        freshness=fresh,
        raw_qty=qty,
        isolated_wallet=_dec(p.get("isolated_wallet")) or Decimal(0),
        margin_asset=str(p.get("margin_asset") or "USDT"),
    )


def _from_rows(account: ExchangeAccount, risk: dict[str, Any]) -> AccountView:
    """No live state: the last persisted rows, marked as such (stale unless nothing is open and nothing known)."""
    now = timezone.now()
    snapshot = AccountSnapshot.objects.filter(account=account).order_by("-time").first()
    positions = list(Position.objects.filter(account=account).select_related("symbol"))
    stamps = [p.updated_at for p in positions] + ([snapshot.time] if snapshot else [])
    at = max(stamps) if stamps else None
    reasons = tuple(risk.get("stale_reasons") or ()) or ("ACCOUNT_STATE_MISSING",)
    fresh = Freshness("snapshot" if at else "none", at, _age_s(at, now), True, reasons)
    rows = [_db_row(account, p, fresh) for p in positions]
    figures: dict[str, Decimal | None] = dict.fromkeys(FIGURES)
    if snapshot is not None:
        figures.update(
            wallet_balance=snapshot.wallet_balance,
            margin_balance=snapshot.margin_balance,
            equity=snapshot.margin_balance,
            unrealized_pnl=snapshot.unrealized_pnl,
            maint_margin=snapshot.maint_margin,
            margin_ratio=snapshot.margin_ratio,
        )
    exposures: dict[str, Decimal] = {}
    for row in rows:
        exposures[row.symbol] = exposures.get(row.symbol, Decimal(0)) + (row.notional or Decimal(0))
    figures["gross_exposure"] = sum(exposures.values(), Decimal(0)) if rows else None
    return AccountView(
        id=account.id,
        name=account.name,
        trading_state=account.trading_state,  # the row just read: what a risk manager set
        trading_state_reason=account.trading_state_reason,
        freshness=fresh,
        figures=figures,
        positions=rows,
        symbol_exposures=exposures,
    )


def _db_row(account: ExchangeAccount, p: Position, fresh: Freshness) -> PositionRow:
    row_fresh = dataclasses.replace(fresh, at=p.updated_at, age_s=_age_s(p.updated_at, timezone.now()))
    distance = None
    if p.mark_price and p.liquidation_price:
        distance = liquidation_distance(mark=p.mark_price, liquidation=p.liquidation_price, long=p.is_long)
    return PositionRow(
        account_id=account.id,
        account_name=account.name,
        symbol=p.symbol.name,
        side=p.side,
        qty=-p.quantity if p.side == "SHORT" else p.quantity,
        is_long=p.is_long,
        notional=p.notional,
        leverage=p.leverage,
        entry_price=p.entry_price,
        mark=p.mark_price,
        unrealized_pnl=p.unrealized_pnl,
        liquidation_price=p.liquidation_price,
        liquidation_distance=distance,
        margin_type=p.margin_type,
        freshness=row_fresh,
        raw_qty=p.quantity,
        isolated_wallet=p.isolated_wallet,
    )


# --------------------------------------------------------------------------- feeds


def _feed_stale(status: dict[str, Any] | None, *, user_stream: bool) -> bool:
    if not user_stream:
        return live.feed_is_stale(status)  # marks arrive every second: silence means trouble
    # A user stream is quiet until the account changes: stale when down, not when silent
    # (the order gate's judgement, rules.gate.account_risk).
    return not live.user_feed_is_live(status)


def _live_feed(name: str, account: ExchangeAccount | None) -> Feed:
    """The feed's status from the live cache; with Redis down, a stale feed marked unavailable, so
    the page shows its banner and the database's figures instead of answering 500 (issue 14)."""
    try:
        status = live.feed_get(name)
    except REDIS_DOWN:
        return dataclasses.replace(_feed(name, account, None), unavailable=True)
    return _feed(name, account, status)


def _feed(name: str, account: ExchangeAccount | None, status: dict[str, Any] | None) -> Feed:
    last_ms = int(status["last_message_ms"]) if status and status.get("last_message_ms") else None
    age = None if last_ms is None else max(0.0, (live.now_ms() - last_ms) / 1000)
    connected = bool(status and status.get("connected"))
    return Feed(
        name=name,
        account_id=account.id if account else None,
        account_name=account.name if account else "",
        connected=connected,
        stale=_feed_stale(status, user_stream=account is not None),
        last_ms=last_ms,
        age_s=age,
        reconnects=int((status or {}).get("reconnects") or 0),
        messages=int((status or {}).get("messages") or 0),
    )


def desk_feeds(user: User, accounts: list[AccountView] | None = None) -> list[Feed]:
    """The market feed and the user stream of every account the user may see."""
    market = _live_feed("market", None)
    if accounts is not None:
        return [market, *(a.user_feed for a in accounts if a.user_feed is not None)]
    visible = access.accounts_visible_to(user).order_by("name")
    return [market, *(_live_feed(f"user:{a.id}", a) for a in visible)]


# --------------------------------------------------------------------------- positions table

SORT_KEYS = {
    "account": lambda r: r.account_name,
    "symbol": lambda r: r.symbol,
    "side": lambda r: (r.is_long, r.side),
    "size": lambda r: abs(r.qty),
    "notional": lambda r: r.notional,
    "leverage": lambda r: r.leverage,
    "entry": lambda r: r.entry_price,
    "mark": lambda r: r.mark,
    "upnl": lambda r: r.unrealized_pnl,
    "liq": lambda r: r.liquidation_price,
    "distance": lambda r: r.liquidation_distance,
}


@dataclass(frozen=True)
class PositionFilter:
    account_id: int | None = None
    symbol: str = ""
    side: str = ""  # long | short
    band: str = ""  # safe | warn | danger | none
    sort: str = "distance"
    descending: bool = False


def position_rows(accounts: list[AccountView], f: PositionFilter) -> list[PositionRow]:
    rows = [r for a in accounts for r in a.positions]
    if f.account_id is not None:
        rows = [r for r in rows if r.account_id == f.account_id]
    if f.symbol:
        rows = [r for r in rows if f.symbol.upper() in r.symbol]
    if f.side in ("long", "short"):
        rows = [r for r in rows if r.is_long == (f.side == "long")]
    if f.band:
        rows = [r for r in rows if r.band == f.band]
    key = SORT_KEYS.get(f.sort, SORT_KEYS["distance"])
    # Missing values (no liquidation price, no mark) sort last whichever way the column is sorted.
    present = [r for r in rows if key(r) is not None]
    missing = [r for r in rows if key(r) is None]
    present.sort(key=key, reverse=f.descending)
    return present + missing


def closed_today(accounts: list[AccountView], f: PositionFilter) -> list[ClosedPosition]:
    """Today's closed and liquidated positions of the given accounts, newest first."""
    names = {a.id: a.name for a in accounts}
    ids = [f.account_id] if f.account_id is not None else list(names)
    rows = ClosedPosition.objects.filter(account_id__in=ids, closed_at__gte=trading_day_start())
    if f.symbol:
        rows = rows.filter(symbol__icontains=f.symbol)
    rows = list(rows.order_by("-closed_at", "-id")[:CLOSED_ROWS])
    if f.side in ("long", "short"):
        rows = [r for r in rows if r.is_long == (f.side == "long")]
    for row in rows:
        row.account_name = names.get(row.account_id, "")
    return rows


def risk_actions(*, account_ids: set[int] | list[int]) -> tuple[list[Any], list[Any]]:
    """The accounts' pending risk actions (a person decides) and the recent decided ones."""
    from rules.models import RiskAction

    rows = RiskAction.objects.filter(account_id__in=account_ids).select_related("account", "decided_by")
    pending = list(rows.filter(status__in=RiskAction.PENDING).order_by("-created_at")[:CLOSED_ROWS])
    history = list(rows.exclude(status__in=RiskAction.PENDING).order_by("-created_at")[:ACTION_HISTORY_ROWS])
    return pending, history


# --------------------------------------------------------------------------- overview charts


def exposure_by_symbol(accounts: list[AccountView]) -> list[dict[str, Any]]:
    """Long and short notional per symbol over the given accounts, largest gross first."""
    totals: dict[str, list[Decimal]] = {}
    for account in accounts:
        for row in account.positions:
            long_short = totals.setdefault(row.symbol, [Decimal(0), Decimal(0)])
            long_short[0 if row.is_long else 1] += row.notional or Decimal(0)
    ordered = sorted(totals.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    return [{"symbol": s, "long": str(ls[0]), "short": str(ls[1])} for s, ls in ordered]


def trading_day_start(now: datetime | None = None) -> datetime:
    """Midnight of the current trading day (settings.TRADING_DAY_TZ), when daily PnL restarts."""
    zone = ZoneInfo(settings.TRADING_DAY_TZ)
    local = (now or timezone.now()).astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# Commissions and funding in these assets count at par; others (BNB fee discounts) have no price
# on the desk and are left out rather than guessed.
PAR_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "")


def realized_pnl_today(*, account_ids: list[int] | set[int], now: datetime | None = None) -> dict[int, Decimal]:
    """Each account's realized PnL since the trading day began (TRADING_DAY_TZ): the fills'
    realized PnL, minus their commissions, plus funding. Accounts without any are 0."""
    start = trading_day_start(now)
    totals = dict.fromkeys(account_ids, Decimal(0))
    fills = (
        Fill.objects.filter(account_id__in=totals, time__gte=start)
        .values("account_id")
        .annotate(rp=Sum("realized_pnl"))
    )
    for row in fills:
        totals[row["account_id"]] += row["rp"] or Decimal(0)
    fees = (
        Fill.objects.filter(account_id__in=totals, time__gte=start, commission_asset__in=PAR_ASSETS)
        .values("account_id")
        .annotate(fee=Sum("commission"))
    )
    for row in fees:
        totals[row["account_id"]] -= row["fee"] or Decimal(0)
    funding = (
        FundingFee.objects.filter(account_id__in=totals, time__gte=start, asset__in=PAR_ASSETS)
        .values("account_id")
        .annotate(amount=Sum("amount"))
    )
    for row in funding:
        totals[row["account_id"]] += row["amount"] or Decimal(0)
    return totals


def realized_pnl_today_annotation(now: datetime | None = None):
    """realized_pnl_today as an expression over ExchangeAccount rows (the admin's column): the same
    sums as `realized_pnl_today`, as correlated subqueries."""
    start = trading_day_start(now)
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=32, decimal_places=12))

    def total(model, value: str, **filters):
        rows = model.objects.filter(account_id=OuterRef("pk"), time__gte=start, **filters).order_by()
        summed = rows.values("account_id").annotate(total=Sum(value)).values("total")
        return Coalesce(Subquery(summed[:1]), zero)

    return (
        total(Fill, "realized_pnl")
        - total(Fill, "commission", commission_asset__in=PAR_ASSETS)
        + total(FundingFee, "amount", asset__in=PAR_ASSETS)
    )


def pnl_curves(accounts: list[AccountView]) -> dict[str, Any]:
    """Today's PnL per account: margin balance now minus the first snapshot of the trading day
    (realized and unrealized together; transfers would show as PnL, the desk has none).
    The live point is appended; the browser keeps appending from the socket."""
    start = trading_day_start()
    series = []
    for account in accounts:
        snapshots = list(
            AccountSnapshot.objects.filter(account_id=account.id, time__gte=start)
            .order_by("time")
            .values_list("time", "margin_balance")
        )
        baseline = snapshots[0][1] if snapshots else account.figure("margin_balance")
        if baseline is None:
            continue
        step = max(1, len(snapshots) // PNL_POINTS)
        points = [[int(t.timestamp() * 1000), str(mb - baseline)] for t, mb in snapshots[::step]]
        now_mb = account.figure("margin_balance")
        if account.freshness.live and now_mb is not None and account.freshness.at_ms:
            points.append([account.freshness.at_ms, str(now_mb - baseline)])
        series.append({"account_id": account.id, "name": account.name, "baseline": str(baseline), "points": points})
    return {"start_ms": int(start.timestamp() * 1000), "series": series}


# --------------------------------------------------------------------------- what-if

CRASH_DAY_FILES = {
    "BTCUSDT": "marketdata/data/binance_spot_BTCUSDT_1m_2021-05-19_crashday.csv",
    "ETHUSDT": "marketdata/data/binance_spot_ETHUSDT_1m_2021-05-19_crashday.csv",
}
CRASH_PROXY = "BTCUSDT"  # symbols without a stored day fall like BTC did (alts fell at least as far)


def crash_day_moves() -> dict[str, whatif.WorstMove]:
    return {s: whatif.worst_move(s, Path(settings.BASE_DIR) / f) for s, f in CRASH_DAY_FILES.items()}


def bracket_tables(account_ids: list[int]) -> tuple[dict[str, list[Bracket]], dict[int, dict[str, list[Bracket]]]]:
    """Symbol defaults and per-account tables (Binance scales some accounts' brackets)."""
    defaults: dict[str, list[Bracket]] = {}
    overrides: dict[int, dict[str, list[Bracket]]] = {}
    rows = LeverageBracket.objects.filter(Q(account__isnull=True) | Q(account_id__in=account_ids))
    for r in rows.select_related("symbol").order_by("symbol__name", "account_id", "bracket"):
        bracket = Bracket(
            floor=r.notional_floor,
            cap=r.notional_cap,
            mmr=r.maint_margin_ratio,
            cum=r.cum,
            max_leverage=r.initial_leverage,
        )
        table = defaults if r.account_id is None else overrides.setdefault(r.account_id, {})
        table.setdefault(r.symbol.name, []).append(bracket)
    return defaults, overrides


@dataclass
class WhatIfResult:
    account: AccountView
    projection: whatif.Projection | None
    problem: str = ""  # why this account could not be projected


def whatif_projections(accounts: list[AccountView], shocks: dict[str, Decimal]) -> list[WhatIfResult]:
    """Each account's current positions (live, or the last rows) revalued at the shocked marks."""
    defaults, overrides = bracket_tables([a.id for a in accounts])
    results = []
    for account in accounts:
        brackets = {**defaults, **overrides.get(account.id, {})}
        try:
            subject = _whatif_account(account)
            projection = whatif.project(subject, shocks, brackets) if subject.positions else None
        except ValueError as exc:  # missing marks, brackets or wallet: say so rather than guess
            results.append(WhatIfResult(account, None, str(exc)))
            continue
        results.append(WhatIfResult(account, projection))
    return results


def position_inputs(account: AccountView) -> list[PositionInput]:
    """The maths' inputs for the account's positions that have a quantity, a mark and an entry
    (the what-if page and the allocation model both revalue these)."""
    return [
        PositionInput(
            symbol=r.symbol,
            side=r.side,
            qty=r.raw_qty,
            entry_price=r.entry_price,
            mark_price=r.mark,
            leverage=int(r.leverage or 1),
            margin_type=r.margin_type,
            isolated_wallet=r.isolated_wallet,
            margin_asset=r.margin_asset,
        )
        for r in account.positions
        if r.raw_qty and r.mark and r.entry_price
    ]


def _whatif_account(account: AccountView) -> whatif.WhatIfAccount:
    positions = position_inputs(account)
    assets = {p.margin_asset for p in positions} or {"USDT"}
    if len(assets) > 1:
        # The live state carries one wallet total, not one per margin asset: do not split it by guesswork.
        raise ValueError("positions in several margin assets; the what-if needs one wallet per asset")
    wallet = account.figure("wallet_balance")
    if wallet is None:
        raise ValueError("no wallet balance known for this account")
    cross_wallet = wallet - sum((p.isolated_wallet for p in positions), Decimal(0))
    return whatif.WhatIfAccount(account.id, account.name, {assets.pop(): cross_wallet}, positions)


def margin_ratio_bands(accounts: list[AccountView]) -> dict[int, tuple[Decimal | None, Decimal | None]]:
    """Each account's margin-ratio warning and critical levels (its profile, else the default)."""
    from rules.models import RiskProfile

    profiles = {p.id: p for p in RiskProfile.objects.all()}
    default = next((p for p in profiles.values() if p.is_default), None)
    owned = dict(ExchangeAccount.objects.filter(id__in=[a.id for a in accounts]).values_list("id", "risk_profile_id"))
    bands = {}
    for account in accounts:
        profile = profiles.get(owned.get(account.id)) or default
        bands[account.id] = (profile.margin_ratio_warning, profile.margin_ratio_critical) if profile else (None, None)
    return bands


def positions_held(*, account_ids: list[int]) -> dict[int, tuple[dict[tuple[str, str], dict[str, Any]], int]]:
    """What the desk's rows held for each account when the stream process (re)starts, in the plain
    form of the book's rows, with the time of the oldest row (epoch ms). The engine compares them
    with the exchange on its first sync: a position gone while nobody watched was closed or
    liquidated then, and forceOrders from that time tells which."""
    held: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
    since: dict[int, int] = {}
    rows = Position.objects.filter(account_id__in=account_ids).exclude(quantity=0).select_related("symbol")
    for p in rows:
        held.setdefault(p.account_id, {})[(p.symbol.name, p.side)] = {
            "symbol": p.symbol.name,
            "side": p.side,
            "qty": str(p.quantity),
            "entry_price": str(p.entry_price),
            "leverage": p.leverage,
            "margin_type": p.margin_type,
            "mark": None if p.mark_price is None else str(p.mark_price),
            "liquidation_price": None if p.liquidation_price is None else str(p.liquidation_price),
            "liquidation_distance": None,  # not stored: the LIQUIDATED alert then says it is unknown
        }
        at_ms = int(p.updated_at.timestamp() * 1000)
        since[p.account_id] = min(since.get(p.account_id, at_ms), at_ms)
    return {a: (rows_of, since[a]) for a, rows_of in held.items()}
