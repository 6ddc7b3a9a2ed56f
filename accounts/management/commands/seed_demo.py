from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts import services
from accounts.models import ExchangeAccount, Role, User
from marketdata import bars
from marketdata.models import Symbol
from marketdata.services import brackets_replace
from riskdesk.progress import progress
from rules.models import RiskProfile

DEMO_PASSWORD = "riskdesk-demo"
USERS = [("risk", Role.RISK_MANAGER), ("alice", Role.TRADER), ("bob", Role.TRADER), ("viewer", Role.VIEWER)]
# name, simulator key/secret, position mode, traders
ACCOUNTS = [
    ("alpha-btc-20x", "demo-key-1", "demo-secret-1", "one_way", ["alice"]),
    ("alpha-eth", "demo-key-2", "demo-secret-2", "one_way", ["alice"]),
    ("beta-hedge", "demo-key-3", "demo-secret-3", "hedge", ["bob"]),
    ("gamma-isolated", "demo-key-4", "demo-secret-4", "one_way", []),
]
# Binance USDⓈ-M filters as published for these contracts (exchangeInfo); refresh_symbols replaces them.
SYMBOLS = {
    "BTCUSDT": dict(
        base_asset="BTC",
        tick_size="0.10",
        step_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty="120",
        min_notional="100",
        price_precision=2,
        quantity_precision=3,
    ),
    "ETHUSDT": dict(
        base_asset="ETH",
        tick_size="0.01",
        step_size="0.001",
        min_qty="0.001",
        max_qty="10000",
        market_max_qty="2000",
        min_notional="20",
        price_precision=2,
        quantity_precision=3,
    ),
}
BRACKETS_FILE = Path(settings.BASE_DIR) / "marketdata/data/binance_um_leverageBracket_majors_2024-10-24.json"
DEMO_RULES = Path(settings.BASE_DIR) / "rules/fixtures/demo_rules.yaml"
DEMO_PROFILE = "desk-default"
# The demo's simulator replays 2021-05-19 today, so no market history lies "90 days before now": the
# VaR reads the bundled real 2021 bars instead, up to the crash's eve (scripts/demo sets
# ALLOCATION_HISTORY_END to the same instant). Nothing of the crash day is loaded: no look-ahead.
HISTORY_SYMBOLS = ("BTCUSDT", "ETHUSDT")
HISTORY_END = datetime(2021, 5, 19, tzinfo=UTC)
HISTORY_FIRST_DAY = datetime(2021, 4, 21, tzinfo=UTC)  # the bundle starts 2021-04-20 20:40
KLINES_REFRESH_TASK = "marketdata.tasks.refresh_klines_task"  # its beat row prunes old bars


class Command(BaseCommand):
    help = (
        "Seed a demo desk: a risk manager, two traders, a viewer, exchange accounts, symbols and rules. "
        "Run again, it keeps what exists: the demo profile's edits survive (--reset-rules undoes them)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-rules",
            action="store_true",
            help=f"re-import {DEMO_RULES.name} over the profile {DEMO_PROFILE!r}, undoing edits made since",
        )

    def handle(self, *args, reset_rules: bool = False, **options):
        users: dict[str, User] = {}
        steps = {
            "users": lambda: users.update(self._users()),
            "symbols": self._symbols,
            "rules": lambda: self._rules(reset=reset_rules),
            "accounts": lambda: self._accounts(users),
            "market history": self._market_history,
        }
        with transaction.atomic():
            for step in progress(list(steps), desc="seeding the demo desk", stream=self.stderr):
                steps[step]()
        self.stdout.write(self.style.SUCCESS("demo desk seeded"))
        for name, role in USERS:
            self.stdout.write(f"  login {name:<7} password {DEMO_PASSWORD}  ({role.label})")

    def _rules(self, *, reset: bool) -> None:
        # scripts/demo seeds on every start: re-importing the file each time silently undid every
        # limit a risk manager had changed in the admin (an import makes the profile hold the file).
        if not reset and RiskProfile.objects.filter(name=DEMO_PROFILE).exists():
            self.stdout.write(
                self.style.WARNING(
                    f"profile {DEMO_PROFILE!r} exists: kept as it is, with any edits "
                    f"(seed_demo --reset-rules re-imports {DEMO_RULES.name} over it)"
                )
            )
            return
        call_command("import_rules", str(DEMO_RULES), profile=DEMO_PROFILE, stdout=self.stdout)

    def _market_history(self) -> None:
        """The bundled 1-minute bars before HISTORY_END, once: a later seed finds them and skips (the
        load is an idempotent upsert anyway, but 80,000 rows cost seconds at every demo start)."""
        self._keep_bundled_history()
        first_day = bars.closes(HISTORY_SYMBOLS, HISTORY_FIRST_DAY, HISTORY_FIRST_DAY + timedelta(days=1))
        last_hour = bars.closes(HISTORY_SYMBOLS, HISTORY_END - timedelta(hours=1), HISTORY_END)
        if all(first_day[s] and last_hour[s] for s in HISTORY_SYMBOLS):
            return
        written = bars.load_bundled(HISTORY_SYMBOLS, end=HISTORY_END)
        self.stdout.write(f"market history: {written} bundled 1-minute bars before {HISTORY_END:%Y-%m-%d} loaded")

    def _keep_bundled_history(self) -> None:
        """The daily klines refresh (beat, 00:15 UTC) deletes bars older than its keep_days (400): the
        2021 bars are five years old, so the demo's first night (or a start just after 00:15) emptied
        its VaR. Its beat row's keep_days (an admin setting) is raised to reach back to the bundle's
        start, 400 days more from today: counted again at every demo start, never lowered."""
        keep = (timezone.now() - HISTORY_FIRST_DAY).days + 400
        for task in PeriodicTask.objects.filter(task=KLINES_REFRESH_TASK):
            try:
                kwargs = json.loads(task.kwargs or "{}")
            except ValueError:
                kwargs = {}
            if float(kwargs.get("keep_days") or 0) < keep:
                task.kwargs = json.dumps({**kwargs, "keep_days": keep})
                task.save(update_fields=["kwargs"])

    def _users(self) -> dict[str, User]:
        users = {}
        for name, role in USERS:
            user = User.objects.filter(username=name).first()
            if user is None:
                user = services.user_create(username=name, password=DEMO_PASSWORD, role=role)
            users[name] = services.user_set_role(user=user, role=role)
        return users

    def _symbols(self) -> None:
        tables = {row["symbol"]: row["brackets"] for row in json.loads(BRACKETS_FILE.read_text())}
        for name, filters in SYMBOLS.items():
            values = {
                k: (Decimal(v) if isinstance(v, str) and k not in ("base_asset",) else v) for k, v in filters.items()
            }
            symbol, _ = Symbol.objects.update_or_create(name=name, defaults=values)
            brackets_replace(symbol=symbol, rows=tables[name])

    def _accounts(self, users: dict[str, User]) -> None:
        for name, key, secret, mode, traders in ACCOUNTS:
            if ExchangeAccount.objects.filter(name=name).exists():
                continue
            services.account_create(
                name=name, api_key=key, api_secret=secret, position_mode=mode, traders=[users[t] for t in traders]
            )
