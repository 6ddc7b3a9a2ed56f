"""Run the Binance USDⓈ-M exchange simulator (marketdata/simulator, docs/SIMULATOR.md)."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.simulator.cli import add_arguments, config_from_options, serve, summary
from marketdata.simulator.config import ConfigError


class Command(BaseCommand):
    help = "Serve a simulated Binance USDⓈ-M exchange (REST + WebSocket on one port) for tests and demos."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        try:
            config = config_from_options(options)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if options["check"]:
            summary(config, self.stdout)
            return
        try:
            asyncio.run(serve(config, str(options["host"]), int(options["port"]), self.stdout))  # type: ignore[call-overload]
        except OSError as exc:  # port in use, bad host
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from None
