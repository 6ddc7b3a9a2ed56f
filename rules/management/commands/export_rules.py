from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from rules.models import RiskProfile
from rules.yamlio import dump_rules


class Command(BaseCommand):
    help = "Write a risk profile as a risk_control YAML file (the format import_rules reads)."

    def add_arguments(self, parser):
        parser.add_argument("--profile", help="profile name (default: the default profile)")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, profile: str | None, output: str | None, **options):
        query = RiskProfile.objects.filter(name=profile) if profile else RiskProfile.objects.filter(is_default=True)
        found = query.first()
        if found is None:
            known = ", ".join(RiskProfile.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no profile {profile or '(default)'!r}; known profiles: {known}")
        values = found.limit_values()
        values.update(description=found.description, is_default=found.is_default)
        text = dump_rules(values)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"wrote profile {found.name!r} to {output}")
        else:
            self.stdout.write(text, ending="")
