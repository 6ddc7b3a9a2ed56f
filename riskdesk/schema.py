"""The OpenAPI schema as API clients read it (/api/schema, /api/docs, /api/redoc).

- Docstrings are for the people who maintain the code (why a serializer is built the way it is,
  how a view is wired): they are not the API's documentation, so they are left out. What a client
  needs is said here (``DESCRIPTIONS``) or in ``extend_schema(description=...)`` and field help.
- /orders/check authenticates with a cached subclass of simplejwt's JWT authentication: it is
  the same Bearer JWT, declared as such.
- Every operation lists the refusals it can answer with: 400 (bad input, a page out of range),
  401, 403, 404 (an id in the path) and 415 (a body that is not JSON), next to those the view
  documents itself (422 for a refused order, 429 when locked out).
"""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class CachedJWTScheme(SimpleJWTScheme):
    """The same Bearer JWT as simplejwt's (``jwtAuth``), required by name only: the component is
    registered once, by the views on simplejwt's own class (a second registration under the same
    name from another class is a schema warning)."""

    target_class = "rules.api_orders.CachedJWTAuthentication"
    name: list[str] = []  # nothing to register

    def get_security_requirement(self, auto_schema):
        return {SimpleJWTScheme.name: []}


class AutoSchema(SpectacularAutoSchema):
    def get_description(self) -> str:
        # Not the view's docstring; extend_schema(description=...) still wins (it subclasses this).
        return DESCRIPTIONS.get(self.get_operation_id(), "")


DESCRIPTIONS = {
    "orders_check": "Check an order against the account's risk profile and live state: the decision, every "
    "failed check and the projected position. Nothing is sent to the exchange or reserved.",
    "orders_submit": "Check an order and, if it passes, send it to the exchange. 201: on the exchange's book; "
    "422: refused by the gate or the exchange; 202: outcome unknown, being reconciled; 503: not sent.",
    "orders_cancel": "Cancel one order (order_id or client_order_id) or every open order of a symbol. "
    "Never blocked by risk checks.",
    "v1_accounts_risk_retrieve": "The account's live risk figures and how old they are.",
    "v1_accounts_trading_state_create": "Set the account's trading state (ACTIVE, REDUCING or HALTED) with a "
    "reason. Risk managers only.",
    "v1_accounts_kill_create": "Halt the account and cancel every open order; with flatten=true also close every "
    "position with reduce-only market orders. dry_run=true returns the plan only. Risk managers only.",
    "v1_profiles_accounts_retrieve": "The accounts this profile governs (those you may see).",
    "v1_profiles_accounts_create": "Assign more accounts to this profile. Risk managers only.",
}

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Field name to its errors (a list of messages), or `detail` for a body that is not valid JSON.",
    "additionalProperties": {},
}
REFUSALS = {
    "400": ("Bad input: the fields in error, or a body that is not valid JSON.", FIELD_ERRORS),
    "401": ("No credentials, or an invalid or expired token.", ERROR),
    "403": ("No role on this desk, or not allowed to do this.", ERROR),
    "404": ("No such object, or not one you may see (the two are not told apart).", ERROR),
    "415": ("The body is not JSON (send Content-Type: application/json).", ERROR),
}


def _response(code: str) -> dict:
    description, schema = REFUSALS[code]
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def add_refusals(result: dict, generator, request, public) -> dict:
    """A drf-spectacular postprocessing hook: the refusals each operation can answer with, and no
    developer notes on the components (serializer docstrings)."""
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = set()
            if operation.get("security") and {} not in operation["security"]:
                codes |= {"401", "403"}
            if path.rstrip("/").endswith(("auth/token", "auth/token/refresh")):
                codes.add("401")  # a wrong password or refresh token
            if "requestBody" in operation:
                codes |= {"400", "415"}
            if "{" in path:
                codes.add("404")
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                codes.add("400")
            responses = operation["responses"]
            for code in sorted(codes):
                if code not in responses:
                    responses[code] = _response(code)
                elif "content" not in responses[code]:
                    responses[code]["content"] = _response(code)["content"]
    for component in result.get("components", {}).get("schemas", {}).values():
        if "enum" not in component:  # an enum's description lists its values; keep that
            component.pop("description", None)
    return result
