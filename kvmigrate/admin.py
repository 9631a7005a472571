"""Staff screens for migration runs and quarantined records: read-only, the command does the work."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from fivedocks.admin import ReadOnlyAdminMixin
from kvmigrate.models import MigratedRecord, MigrationRun, QuarantinedRecord
from kvmigrate.report import COLUMNS

RAW_PREVIEW = 80
ENCRYPTED = "•••• (encrypted: holds OAuth tokens)"
COUNT_NAMES = COLUMNS


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


def _total(name: str):
    @admin.display(description=name)
    def column(self, obj: MigrationRun) -> int:
        return obj.total(name)

    return column


@admin.register(MigrationRun)
class MigrationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "mode", "status", "started_at", "finished_at", "source", "read", "created", "updated",
        "quarantined", "mismatched",
    )  # fmt: skip
    list_filter = ("status", "mode")
    ordering = ("-started_at", "-id")
    fields = (
        "mode",
        "status",
        "source",
        "options",
        "started_at",
        "finished_at",
        "pid",
        "error",
        "counts_table",
    )
    readonly_fields = fields

    read = _total("read")
    created = _total("created")
    updated = _total("updated")
    quarantined = _total("quarantined")
    mismatched = _total("mismatched")

    @admin.display(description="counts per domain")
    def counts_table(self, obj: MigrationRun) -> str:
        counts = obj.counts or {}
        if not counts:
            return "-"
        header = format_html_join("", "<th>{}</th>", ((name,) for name in COUNT_NAMES))
        rows = format_html_join(
            "",
            "<tr><th>{}</th>{}</tr>",
            (
                (domain, format_html_join("", "<td>{}</td>", ((values.get(n, 0),) for n in COUNT_NAMES)))
                for domain, values in counts.items()
                if isinstance(values, dict)
            ),
        )
        return format_html("<table><tr><th>domain</th>{}</tr>{}</table>", header, rows)


class ResolvedFilter(admin.SimpleListFilter):
    title = "resolved"
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("no", "still quarantined"), ("yes", "moved by a later run")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(QuarantinedRecord)
class QuarantinedRecordAdmin(ReadOnlyAdmin):
    list_display = ("key", "reason_code", "raw_preview", "run", "created_at", "resolved_at")
    list_filter = ("reason_code", ResolvedFilter, "run")
    search_fields = ("key", "reason")
    ordering = ("-created_at", "-id")
    fields = (
        "key", "reason_code", "reason", "run", "created_at", "resolved_at", "fingerprint", "escaped",
        "raw_encrypted", "raw_full",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="raw value")
    def raw_preview(self, obj: QuarantinedRecord) -> str:
        if obj.raw_encrypted:
            return ENCRYPTED
        raw = obj.raw_value
        return raw if len(raw) <= RAW_PREVIEW else raw[: RAW_PREVIEW - 1] + "…"

    @admin.display(description="raw value (as stored in the KV store)")
    def raw_full(self, obj: QuarantinedRecord) -> str:
        if obj.raw_encrypted:
            return ENCRYPTED
        return format_html(
            '<pre style="white-space: pre-wrap; word-break: break-all">{}</pre>', obj.raw_value
        )


@admin.register(MigratedRecord)
class MigratedRecordAdmin(ReadOnlyAdmin):
    list_display = ("key", "family", "domains", "user_id", "run", "updated_at")
    list_filter = ("family",)
    search_fields = ("key",)
    ordering = ("key",)
