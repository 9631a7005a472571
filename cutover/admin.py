from django.contrib import admin, messages

from cutover import services
from cutover.models import WriteFreeze


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
