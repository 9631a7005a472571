"""Staff screens for balances and the ledger. The ledger is read-only; changes go through services."""

import datetime as dt
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from credits import services
from credits.forms import CreditChangeForm
from credits.models import CreditAccount, CreditHold, CreditTransaction, PendingCreditChange
from fivedocks.admin import ReadOnlyAdminMixin
from fivedocks.errors import DomainError

LEDGER_ROWS = 50


class BalanceRangeFilter(admin.SimpleListFilter):
    title = "balance"
    parameter_name = "balance_range"
    RANGES = {
        "negative": ("below 0", {"balance__lt": 0}),
        "zero": ("0", {"balance": 0}),
        "1-100": ("1 to 100", {"balance__gte": 1, "balance__lte": 100}),
        "101-1000": ("101 to 1,000", {"balance__gte": 101, "balance__lte": 1000}),
        "1001-10000": ("1,001 to 10,000", {"balance__gte": 1001, "balance__lte": 10000}),
        "10001+": ("above 10,000", {"balance__gt": 10000}),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.RANGES.items()]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in self.RANGES:
            return queryset.filter(**self.RANGES[self.value()][1])
        return queryset


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("user_email", "balance", "total_purchased", "total_used", "is_blocked", "last_updated")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    list_filter = (BalanceRangeFilter, "is_blocked")
    ordering = ("-last_updated",)
    readonly_fields = (
        "user", "balance", "total_purchased", "total_used", "opening_total_purchased",
        "opening_total_used", "is_blocked", "monthly_allowance", "last_top_up", "metadata",
        "last_updated", "created_at", "change_credits", "ledger",
    )  # fmt: skip
    fields = readonly_fields

    @admin.display(description="email", ordering="user__email")
    def user_email(self, obj: CreditAccount) -> str:
        return obj.user.email

    @admin.display(description="grant or adjust")
    def change_credits(self, obj: CreditAccount) -> str:
        url = reverse("admin:credits_creditaccount_change_credits", args=[obj.pk])
        return format_html('<a class="button" href="{}">Grant or adjust credits…</a>', url)

    @admin.display(description="ledger (newest first)")
    def ledger(self, obj: CreditAccount) -> str:
        # The ledger hangs off the user, not the account row, so it is shown here, not as an inline.
        rows = CreditTransaction.objects.filter(user_id=obj.pk).order_by("-created_at", "-id")[:LEDGER_ROWS]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r.created_at, r.type, f"{r.amount:+d}", r.balance_after, r.reason) for r in rows),
        )
        full = reverse("admin:credits_credittransaction_changelist") + "?" + urlencode({"q": obj.user.email})
        return format_html(
            '<table class="ledger"><thead><tr><th>when</th><th>type</th><th>amount</th>'
            "<th>balance after</th><th>reason</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">Full ledger…</a></p>',
            body,
            full,
        )

    def get_urls(self):
        return [
            path(
                "<int:user_id>/change-credits/",
                self.admin_site.admin_view(self.change_credits_view),
                name="credits_creditaccount_change_credits",
            ),
            *super().get_urls(),
        ]

    def change_credits_view(self, request, user_id: int):
        if not request.user.has_perm(services.GRANT_PERMISSION):
            raise PermissionDenied
        user = get_user_model().objects.filter(pk=user_id).first()
        if user is None:
            raise Http404("No such user")
        form = CreditChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                change = services.request_staff_change(
                    actor=request.user,
                    user=user,
                    kind=data["kind"],
                    amount=data["amount"],
                    reason=data["reason"],
                    metadata={"via": "admin"},
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                if change.pending is not None:
                    self.message_user(
                        request,
                        f"{change.pending.kind} of {change.pending.amount:+d} credits is above "
                        f"{services.approval_threshold():,}: it waits for a second staff member's approval "
                        "(Pending credit changes).",
                        messages.WARNING,
                    )
                else:
                    result = change.result
                    self.message_user(
                        request,
                        f"{result.transaction.type} of {result.transaction.amount:+d} credits recorded; "
                        f"balance is now {result.balance}.",
                        messages.SUCCESS,
                    )
                return HttpResponseRedirect(reverse("admin:credits_creditaccount_change", args=[user.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Grant or adjust credits: {user.email}",
            "form": form,
            "target_user": user,
            "account": CreditAccount.objects.filter(user=user).first(),
        }
        return TemplateResponse(request, "admin/credits/change_credits.html", context)


@admin.register(PendingCreditChange)
class PendingCreditChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Staff changes above the approval threshold; another staff member approves or rejects."""

    list_display = (
        "requested_at",
        "user",
        "kind",
        "amount",
        "reason",
        "status",
        "requested_by",
        "decided_by",
    )
    list_select_related = ("user", "requested_by", "decided_by")
    list_filter = ("status", "kind")
    search_fields = ("user__email", "reason")
    ordering = ("-requested_at", "-id")
    actions = ("approve", "reject")

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm(services.GRANT_PERMISSION)

    has_reject_permission = has_approve_permission

    def _decide(self, request, queryset, decide, verb: str) -> None:
        done = 0
        for pending_id in queryset.values_list("pk", flat=True):
            try:
                decide(pending_id)
            except DomainError as exc:
                self.message_user(request, f"Change {pending_id}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} change(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Approve the selected changes", permissions=["approve"])
    def approve(self, request, queryset):
        self._decide(
            request,
            queryset,
            lambda pk: services.approve_pending_change(pending_id=pk, approver=request.user),
            "approved",
        )

    @admin.action(description="Reject the selected changes", permissions=["reject"])
    def reject(self, request, queryset):
        self._decide(
            request,
            queryset,
            lambda pk: services.reject_pending_change(pending_id=pk, actor=request.user),
            "rejected",
        )


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "user_email", "type", "amount", "balance_after", "reason")
    list_select_related = ("user",)
    list_filter = ("type", "created_at")
    search_fields = ("user__email", "reason", "idempotency_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="email", ordering="user__email")
    def user_email(self, obj: CreditTransaction) -> str:
        return obj.user.email


class HoldStateFilter(admin.SimpleListFilter):
    """Open means open and unexpired; expired is open past its expiry (decided at read time)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open"), ("expired", "expired"), ("captured", "captured"), ("released", "released")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "open":
            return queryset.filter(status="open", expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(status="open", expires_at__lte=now)
        if self.value() in ("captured", "released"):
            return queryset.filter(status=self.value())
        return queryset


@admin.register(CreditHold)
class CreditHoldAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Holds of the service API. Read-only; the purge action deletes selected holds that are
    settled or expired (credits.services.purge_holds, as `manage.py credit_holds purge`); an open
    hold is never deleted."""

    list_display = (
        "id", "created_at", "user_email", "amount", "state", "captured_amount", "operation", "expires_at",
    )  # fmt: skip
    list_select_related = ("user",)
    list_filter = (HoldStateFilter, "created_at")
    search_fields = ("user__email", "idempotency_key", "=id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ["purge_old"]

    @admin.display(description="email", ordering="user__email")
    def user_email(self, obj: CreditHold) -> str:
        return obj.user.email

    @admin.display(description="state")
    def state(self, obj: CreditHold) -> str:
        return "expired" if obj.is_expired() else obj.status

    @admin.action(description="Purge selected holds that are settled or expired")
    def purge_old(self, request, queryset) -> None:
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers may purge holds.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        deleted = services.purge_holds(older_than=dt.timedelta(0), ids=ids)
        self.message_user(
            request, f"{deleted} of {len(ids)} holds purged (open holds are kept).", messages.SUCCESS
        )
