"""Staff view of the flags. Read-only: flags are written by the services (API, kvmigrate)."""

from django.contrib import admin

from fivedocks.admin import ReadOnlyAdminMixin
from notifications import catalogue
from notifications.models import UserNotification


class CatalogueEntryFilter(admin.SimpleListFilter):
    """Filter by notification id, labelled with the catalogue's names."""

    title = "notification id"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        return [
            (f"{kind}:{entry.id}", f"{kind} {entry.id}: {entry.name}")
            for kind in catalogue.KINDS
            for entry in catalogue.entries(kind)
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        kind, _, entry_id = self.value().partition(":")
        if kind not in catalogue.KINDS or not entry_id.isdigit():
            return queryset.none()
        return queryset.filter(kind=kind, notification_id=int(entry_id))


@admin.register(UserNotification)
class UserNotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "user", "kind", "notification_id", "name", "shown_at")
    list_filter = ("kind", CatalogueEntryFilter, "notification_id", "shown_at")
    date_hierarchy = "shown_at"
    search_fields = ("user__email",)
    list_select_related = ("user",)
    readonly_fields = ("user", "kind", "notification_id", "name", "shown_at", "metadata")
    fields = readonly_fields
    ordering = ("-shown_at", "-id")

    @admin.display(description="name")
    def name(self, obj: UserNotification) -> str:
        return obj.name
