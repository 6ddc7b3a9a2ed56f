"""Tell open desk sockets when what a user may see changes.

Receivers, not a service call, because the assignments change through paths no service owns: the
admin's change forms (both the account's traders and the user's accounts), the shell, a fixture.
This is invalidation of the sockets' copy of `access.visible_account_ids`, the one kind of work
receivers may do (STYLE.md). The message goes after commit, so a rolled-back change sends nothing;
a failed send (Redis down) is logged and leaves the change saved (`robust`).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from accounts.models import ExchangeAccount, User

# The fields of a user that decide what they may see (accounts.access).
ACCESS_FIELDS = ("role", "is_active", "is_superuser")


def _tell(user_ids) -> None:
    from alerts import broadcast

    ids = {int(i) for i in user_ids if i is not None}
    if ids:
        transaction.on_commit(lambda: broadcast.access_changed(ids), robust=True)


def traders_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if action == "pre_clear":
        # pk_set is None on clear: note who is about to lose the accounts before they go.
        if reverse:  # user.exchange_accounts.clear()
            _tell([instance.pk])
        else:
            _tell(instance.traders.values_list("pk", flat=True))
    elif action in ("post_add", "post_remove"):
        _tell([instance.pk] if reverse else pk_set or [])


def user_saving(sender, instance: User, update_fields=None, **kwargs) -> None:
    """Remember what the row held, to tell a role change from a last_login update."""
    if instance.pk is None or (update_fields is not None and not set(update_fields) & set(ACCESS_FIELDS)):
        instance._access_before = None
        return
    before = User.objects.filter(pk=instance.pk).values(*ACCESS_FIELDS).first()
    instance._access_before = before


def user_saved(sender, instance: User, created: bool, update_fields=None, **kwargs) -> None:
    before = getattr(instance, "_access_before", None)
    if created or before is None:
        return
    if any(before[f] != getattr(instance, f) for f in ACCESS_FIELDS):
        _tell([instance.pk])


def user_deleted(sender, instance: User, **kwargs) -> None:
    _tell([instance.pk])


def connect() -> None:
    m2m_changed.connect(traders_changed, sender=ExchangeAccount.traders.through, dispatch_uid="desk-access-traders")
    pre_save.connect(user_saving, sender=User, dispatch_uid="desk-access-user-before")
    post_save.connect(user_saved, sender=User, dispatch_uid="desk-access-user")
    post_delete.connect(user_deleted, sender=User, dispatch_uid="desk-access-user-deleted")
