"""Audit rows in the admin: read-only for everyone, superusers included.

The order log, alerts, deliveries, risk actions, the ledger and account snapshots are evidence
of what the desk saw and did. Their fields were already read-only, but the admin still let a
risk manager delete them, and simple-history's "revert" saved an old version over a live row
(a dismissed risk action back to proposed). What moves them goes through a service, from admin
actions declared with ``permissions=["act"]``: allowed to whoever holds the model's change
permission, as before, while the change form itself is refused.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied


class AuditAdminMixin:
    """Put before ModelAdmin (or SimpleHistoryAdmin) in the bases."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_act_permission(self, request) -> bool:
        """May run the admin actions that call a service (acknowledge, resolve, approve, ...)."""
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    def save_model(self, request, obj, form, change):
        # simple-history's history form saves on POST without asking has_change_permission.
        raise PermissionDenied("Audit rows are read-only.")

    def delete_model(self, request, obj):
        raise PermissionDenied("Audit rows are read-only.")


class AuditAdmin(AuditAdminMixin, admin.ModelAdmin):
    pass
