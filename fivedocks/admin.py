"""What every app's admin shares."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    """Staff may look (with the view permission) but never add, change or delete here: changes
    go through the services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # Viewing follows Django's model permissions (`view_<model>`): a staff account sees only
    # what its groups and permissions grant (ModelAdmin's own has_view_permission).
