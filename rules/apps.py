from decimal import Decimal, InvalidOperation

from django.apps import AppConfig
from django.core import checks


def desk_settings_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """RISK_SCORE_WEIGHTS and DESK_CONCENTRATION_* (docs/RISK_LOGIC.md) refused at start, not at the first frame."""
    from django.conf import settings

    from rules.score import weights_error

    errors = []
    weights = getattr(settings, "RISK_SCORE_WEIGHTS", None)
    problem = weights_error(weights) if weights is not None else None
    if problem:
        errors.append(checks.Error(f"RISK_SCORE_WEIGHTS {problem}", id="rules.E001"))
    levels = []
    for name in ("DESK_CONCENTRATION_WARNING", "DESK_CONCENTRATION_CRITICAL"):
        raw = getattr(settings, name, None)
        if raw in (None, ""):
            levels.append(None)
            continue
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or not 0 <= value <= 1:
            errors.append(checks.Error(f"{name} must be a share between 0 and 1, not {raw!r}", id="rules.E002"))
        levels.append(value)
    if None not in levels and levels[0] > levels[1]:
        errors.append(checks.Error("DESK_CONCENTRATION_WARNING must not be above the critical level", id="rules.E003"))
    return errors


class RulesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rules"

    def ready(self) -> None:
        checks.register(desk_settings_check)
