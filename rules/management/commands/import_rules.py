from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from marketdata.services import exchange_max_leverage
from riskdesk.progress import steps
from rules import services
from rules.models import RiskProfile
from rules.yamlio import RulesFileError, parse_rules


class Command(BaseCommand):
    help = (
        "Import a risk_control YAML file into a risk profile. The whole file is checked first; "
        "if anything is wrong nothing is changed. Fields the file leaves out are reset to their defaults."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the YAML file ('-' reads standard input)")
        parser.add_argument("--profile", help="profile name (default: the default profile, or 'default')")
        parser.add_argument("--dry-run", action="store_true", help="check the file and change nothing")

    def handle(self, *args, file: str, profile: str | None, dry_run: bool, **options):
        # Three steps behind one bar (drawn on a terminal only): reading, checking every field
        # against the exchange's leverage, and saving with history and the gate's reload.
        with steps(3, desc=f"importing {Path(file).name}", stream=self.stderr) as bar:
            text = self._read(file)
            bar.update()
            try:
                values = parse_rules(text, exchange_max_leverage=exchange_max_leverage())
            except RulesFileError as exc:
                raise CommandError(f"{file} refused, nothing imported:\n  - " + "\n  - ".join(exc.problems)) from exc
            bar.update()
            name = profile or self._default_name()
            if dry_run:
                self.stdout.write(
                    f"{file} is valid: {len(values)} settings for profile {name!r} (dry run, nothing changed)"
                )
                return
            if not RiskProfile.objects.exists():
                values.setdefault("is_default", True)  # the first profile governs every account
            try:
                saved, created = services.profile_import(name=name, values=values, by=None, source=Path(file).name)
            except ValidationError as exc:
                raise CommandError(f"{file} refused, nothing imported: {exc.message_dict}") from exc
            bar.update()
        verb = "created" if created else "updated"
        self.stdout.write(self.style.SUCCESS(f"profile {saved.name!r} {verb} from {file} ({len(values)} settings)"))

    def _read(self, file: str) -> str:
        if file == "-":
            import sys

            return sys.stdin.read()
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc

    def _default_name(self) -> str:
        default = RiskProfile.objects.filter(is_default=True).first()
        return default.name if default else "default"
