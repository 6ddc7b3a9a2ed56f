"""Backfill 1-minute market history (MinuteBar) from GET /fapi/v1/klines for a new desk, or re-fetch a
window: idempotent, resumable (what was written stays), weight-aware (marketdata/bars.py backfill)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata import bars
from marketdata.exchange import ExchangeError
from marketdata.models import Symbol

MAX_DAYS = 400


class Command(BaseCommand):
    help = (
        "Fetch up to --days of 1-minute klines per symbol over REST into the market history "
        "(default: 90 days, every trading Symbol row). Safe to run again: bars are upserted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=90.0, help="how far back from --end (default 90)")
        parser.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="default: every TRADING symbol")
        parser.add_argument(
            "--end", help="ISO date-time (UTC if no zone) the history ends at, default now; e.g. 2021-05-20T20:40"
        )
        parser.add_argument("--page-size", type=int, default=bars.PAGE_SIZE, help="klines per request (1..1500)")
        parser.add_argument(
            "--weight-share",
            type=float,
            default=bars.WEIGHT_SHARE,
            help="wait for the next minute past this share of the IP's request weight (default 0.5)",
        )

    def handle(self, *args: object, **options: object) -> None:
        days = float(options["days"])  # type: ignore[arg-type]
        if not 0 < days <= MAX_DAYS:
            raise CommandError(f"--days must be above 0 and at most {MAX_DAYS}, got {days:g}")
        page_size = int(options["page_size"])  # type: ignore[call-overload]
        if not 1 <= page_size <= 1500:
            raise CommandError(f"--page-size must be 1..1500, got {page_size}")
        share = float(options["weight_share"])  # type: ignore[arg-type]
        if not 0 < share <= 0.9:
            raise CommandError(f"--weight-share must be above 0 and at most 0.9, got {share:g}")
        end = _parse_end(options.get("end"))  # type: ignore[arg-type]
        symbols = [s.upper() for s in options.get("symbols") or []]  # type: ignore[union-attr]
        if not symbols:
            symbols = list(Symbol.objects.filter(status="TRADING").values_list("name", flat=True))
        if not symbols:
            raise CommandError("no symbols: pass --symbols, or sync the exchange's symbols first")
        start = end - timedelta(days=days)
        self.stdout.write(f"klines {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC for {len(symbols)} symbol(s)")
        try:
            result = bars.backfill(
                symbols=symbols,
                start_ms=bars.to_ms(start),
                end_ms=bars.to_ms(end),
                page_size=page_size,
                weight_share=share,
                stream=self.stderr,
            )
        except ExchangeError as exc:
            raise CommandError(f"the exchange refused the backfill: {exc} (bars written so far are kept)") from None
        for symbol, count in result.bars.items():
            if symbol in result.failed:
                self.stderr.write(f"  {symbol}: refused by the exchange: {result.failed[symbol]}")
            else:
                self.stdout.write(f"  {symbol}: {count} bars")
        if len(result.failed) == len(symbols):
            raise CommandError("the exchange refused every symbol; nothing was written")
        self.stdout.write(
            self.style.SUCCESS(
                f"{sum(result.bars.values())} bars in {result.pages} requests"
                f" ({result.rate_limited} rate-limit answers, {result.paused_s:.0f} s waited)"
            )
        )


def _parse_end(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--end {value!r}: expected an ISO date-time such as 2021-05-20T20:40") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
