"""A stored report as HTML (charts embedded as PNG data URIs), CSV (one row per account and
metric) and PDF (WeasyPrint), in the reader's language."""

from __future__ import annotations

import base64
import csv
import io
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from django.template.loader import render_to_string
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from alerts.models import Level, Report
from alerts.reports import charts

CENT = Decimal("0.01")  # money to the cent, halves away from zero as accountants round
CSS = Path(__file__).resolve().parents[2] / "static" / "reports" / "report.css"

# (figure key, label, kind): the order of the HTML table and of the CSV rows.
METRICS = (
    ("start_equity", gettext_lazy("Start equity"), "money"),
    ("end_equity", gettext_lazy("End equity"), "money"),
    ("realized_pnl", gettext_lazy("Realized PnL (fills)"), "money"),
    ("fees", gettext_lazy("Fees"), "money"),
    ("funding", gettext_lazy("Funding"), "money"),
    ("net_realized", gettext_lazy("Net realized (PnL − fees + funding)"), "money"),
    ("unrealized_pnl", gettext_lazy("Unrealized PnL at the close"), "money"),
    ("max_drawdown", gettext_lazy("Intraday max drawdown"), "money"),
    ("peak_leverage", gettext_lazy("Peak leverage"), "number"),
    ("peak_margin_ratio", gettext_lazy("Peak margin ratio"), "percent"),
    ("min_liq_distance", gettext_lazy("Minimum distance to liquidation"), "percent"),
    ("gate_checks", gettext_lazy("Gate checks"), "count"),
    ("gate_denials", gettext_lazy("Gate denials"), "count"),
    ("actions_proposed", gettext_lazy("Risk actions proposed"), "count"),
    ("actions_executed", gettext_lazy("Risk actions executed"), "count"),
)
WHEN = {
    "max_drawdown": "max_drawdown_at",
    "peak_leverage": "peak_leverage_at",
    "peak_margin_ratio": "peak_margin_ratio_at",
    "min_liq_distance": "min_liq_distance_at",
}


def shown(value, kind: str) -> str:
    if value is None or value == "":
        return "—"
    if kind == "money":
        return f"{Decimal(value).quantize(CENT, ROUND_HALF_UP):,}"
    if kind == "percent":
        return f"{Decimal(value) * 100:.2f}%"
    if kind == "number":
        return f"{Decimal(value).normalize():f}"
    return str(value)


def _rows(figures: dict) -> list[dict]:
    return [
        {
            "label": str(label),
            "values": [shown(f.get(key), kind) for f in figures],
            "when": [(f.get(WHEN[key]) or "")[:19].replace("T", " ") if key in WHEN else "" for f in figures],
        }
        for key, label, kind in METRICS
    ]


def _level_name(level: str | int) -> str:
    try:
        return str(Level(int(level)).label)
    except ValueError:
        return str(level)


def chart_uris(report: Report) -> dict[str, str]:
    f = report.figures
    end, as_of = datetime.fromisoformat(f["end"]), datetime.fromisoformat(f["positions_as_of"])
    span = (f["start"], min(end, as_of).isoformat())
    pngs = {
        "equity": charts.lines(
            f.get("equity_series", {}), title=_("Equity per account"), no_data=_("No snapshots"), span=span
        ),
        "exposure": charts.bars(
            f.get("exposure_by_symbol", {}), title=_("Net exposure by symbol at the close"), no_data=_("No positions")
        ),
        "margin_ratio": charts.lines(
            f.get("margin_ratio_series", {}),
            title=_("Margin ratio (%)"),
            no_data=_("No snapshots"),
            span=span,
            percent=True,
        ),
    }
    return {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in pngs.items()}


def context(report: Report) -> dict:
    f = report.figures
    columns = [f["desk"], *f["accounts"]]
    columns[0] = {**columns[0], "name": _("Desk")}
    return {
        "report": report,
        "figures": f,
        "columns": [c["name"] for c in columns],
        "rows": _rows(columns),
        "states": sorted({s for c in columns for s in c["state_seconds"]}),
        "state_rows": [
            {
                "name": c["name"],
                "hours": [
                    f"{c['state_seconds'].get(s, 0) / 3600:.2f}"
                    for s in sorted({s for c in columns for s in c["state_seconds"]})
                ],
            }
            for c in columns
        ],
        "alerts_by_level": [(_level_name(k), v) for k, v in f["desk"]["alerts_by_level"].items()],
        "alerts_by_code": list(f["desk"]["alerts_by_code"].items()),
        "denials_by_reason": list(f["desk"]["denials_by_reason"].items()),
        "liquidations": f["desk"]["liquidations"],
        "risks": [
            {**r, "notional": shown(r["notional"], "money"), "liq_distance": shown(r["liq_distance"], "percent")}
            for r in f["largest_risks"]
        ],
        "charts": chart_uris(report),
        "var": _var_context(f.get("var")),
    }


def _var_context(var: dict | None) -> dict | None:
    """The VaR section as shown (money to the cent); None for reports made before it existed."""
    if not var:
        return None
    money = lambda v: shown(v, "money")  # noqa: E731
    return {
        **var,
        "as_of": (var.get("as_of") or "")[:16].replace("T", " "),
        "desk": {k: money(v) for k, v in var["desk"].items() if k != "var_pct_equity"}
        | {"var_pct_equity": shown(var["desk"].get("var_pct_equity"), "percent")}
        if var.get("desk")
        else None,
        "accounts": [{**a, **{k: money(a.get(k)) for k in ("var", "es", "var_parametric")}} for a in var["accounts"]],
        "history": [{**h, "var": money(h.get("var")), "es": money(h.get("es"))} for h in var["history"]],
        "liquidations": [{**x, "loss": money(x.get("loss"))} for x in var["liquidations"]],
    }


def html(report: Report, *, language: str, standalone: bool = True) -> str:
    """The whole document (email, PDF) or, with standalone=False, the body the page embeds."""
    with translation.override(language):
        body = render_to_string("reports/_report.html", context(report))
        if not standalone:
            return body
        # The stylesheet goes inline here, not in a template: an email or a PDF has no /static/.
        title = escape(str(report))
        return (
            f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>{title}</title>'
            f'<style>{CSS.read_text()}</style></head><body class="report-doc">{body}</body></html>'
        )


def csv_text(report: Report) -> str:
    """One row per account (the desk first) and metric; money to the cent, ratios as fractions."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period_start", "period_end", "account", "metric", "value", "at"])
    f = report.figures
    for column in [f["desk"], *f["accounts"]]:
        for key, _label, kind in METRICS:
            value = column.get(key)
            if kind == "money" and value not in (None, ""):
                value = f"{Decimal(value).quantize(CENT, ROUND_HALF_UP)}"
            writer.writerow(
                [
                    f["start"],
                    f["end"],
                    column["name"],
                    key,
                    "" if value is None else value,
                    column.get(WHEN.get(key, ""), "") or "",
                ]
            )
        for state, seconds in sorted(column["state_seconds"].items()):
            writer.writerow([f["start"], f["end"], column["name"], f"seconds_{state}", f"{seconds:.0f}", ""])
        for code, n in column["alerts_by_code"].items():
            writer.writerow([f["start"], f["end"], column["name"], f"alerts_{code}", n, ""])
        for code, n in column["denials_by_reason"].items():
            writer.writerow([f["start"], f["end"], column["name"], f"denials_{code}", n, ""])
    var = f.get("var") or {}
    rows = ([{"name": "desk", **var["desk"]}] if var.get("desk") else []) + [
        {
            "name": a["name"],
            "var_historical": a.get("var"),
            "es_historical": a.get("es"),
            "var_parametric": a.get("var_parametric"),
        }
        for a in var.get("accounts", [])
    ]
    for row in rows:
        for key in ("var_historical", "es_historical", "var_parametric"):
            if row.get(key) not in (None, ""):
                value = f"{Decimal(row[key]).quantize(CENT, ROUND_HALF_UP)}"
                writer.writerow([f["start"], f["end"], row["name"], key, value, var.get("as_of") or ""])
    return out.getvalue()


def pdf(report: Report, *, language: str) -> bytes:
    import weasyprint  # imported here: pango loads only when a PDF is made

    return weasyprint.HTML(string=html(report, language=language)).write_pdf()
