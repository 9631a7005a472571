from django.contrib import admin, messages

from cutover import services
from cutover.drain import lag_seconds
from cutover.models import KvOutbox, WriteFreeze
from fivedocks.admin import ReadOnlyAdminMixin


@admin.register(WriteFreeze)
class WriteFreezeAdmin(admin.ModelAdmin):
    list_display = ("domain", "frozen", "reason", "retry_after_seconds", "updated_at")
    actions = ("freeze", "unfreeze")
    fields = ("domain", "frozen", "reason", "retry_after_seconds")

    def save_model(self, request, obj, form, change) -> None:
        saved = services.set_freeze(
            domain=obj.domain,
            frozen=obj.frozen,
            reason=obj.reason,
            retry_after_seconds=obj.retry_after_seconds,
        )
        obj.pk = saved.pk

    @admin.action(description="Freeze writes")
    def freeze(self, request, queryset) -> None:
        for row in queryset:
            services.set_freeze(domain=row.domain, frozen=True, reason=row.reason or "cutover")
        self.message_user(request, "Writes frozen.", messages.WARNING)

    @admin.action(description="Unfreeze writes")
    def unfreeze(self, request, queryset) -> None:
        for row in queryset:
            services.set_freeze(domain=row.domain, frozen=False)
        self.message_user(request, "Writes open again.", messages.SUCCESS)


@admin.register(KvOutbox)
class KvOutboxAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The mirror's backlog: lag (oldest undrained change) and failures at a glance."""

    list_display = ("id", "key", "domain", "operation", "created_at", "attempts", "last_error")
    list_filter = ("domain",)
    search_fields = ("key",)
    readonly_fields = ("key", "domain", "created_at", "attempts", "last_error")
    exclude = ("value",)

    @admin.display(description="operation")
    def operation(self, obj: KvOutbox) -> str:
        return "delete" if obj.value is None else "set"

    def changelist_view(self, request, extra_context=None):
        failing = KvOutbox.objects.filter(attempts__gt=0).count()
        lag = lag_seconds()
        self.message_user(
            request,
            f"Mirror lag: {lag:.0f} s (oldest undrained change); rows with failed attempts: {failing}.",
            messages.WARNING if failing or lag > 60 else messages.INFO,
        )
        return super().changelist_view(request, extra_context)
