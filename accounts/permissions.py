from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.access import is_desk_member, is_risk_manager


class IsDeskMember(BasePermission):
    """Refuses outsiders (authenticated users without a desk role)."""

    message = "You have no role on this desk."

    def has_permission(self, request, view) -> bool:
        return is_desk_member(request.user)


class RiskManagerWrites(BasePermission):
    """Everyone on the desk may read what they can see; only risk managers write."""

    message = "Only risk managers may change risk configuration."

    def has_permission(self, request, view) -> bool:
        if not is_desk_member(request.user):
            return False
        return request.method in SAFE_METHODS or is_risk_manager(request.user)
