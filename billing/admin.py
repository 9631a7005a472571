"""Staff screens: subscriptions (Stripe's state; only the plan name is editable, through a service)
and the webhook event log (read-only, failed events can be reprocessed)."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import F, QuerySet
from django.utils import formats
from django.utils.html import format_html

from billing import selectors, services
from billing.models import Subscription, WebhookEvent, WebhookEventStatus
from fivedocks.admin import EmailTitleMixin, NumberInputFilter, ReadOnlyAdminMixin, customer_link
from fivedocks.errors import DomainError


class PlanFilter(admin.SimpleListFilter):
    title = "plan"
    parameter_name = "plan"
    NO_PLAN = "__none__"

    def lookups(self, request, model_admin):
        stored = Subscription.objects.values_list("plan_type", flat=True).distinct().order_by("plan_type")
        known = {key: plan["name"] for key, plan in settings.BILLING_PLANS.items()}
        others = [(p, f"{p} (not in the catalogue)") for p in stored if p and p not in known]
        return [*known.items(), *others, (self.NO_PLAN, "no plan")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.NO_PLAN:
            return queryset.filter(plan_type="")
        if value:
            return queryset.filter(plan_type=value)
        return queryset


class ActiveWithCreditsFilter(NumberInputFilter):
    """The report "credits above N and an active subscription" as a list filter, N typed in
    (the report itself, with its CSV export, is the console's own page)."""

    title = "active (or trialing) with credits above"
    parameter_name = "active_credits_above"
    presets = (100, 1000, 10000)

    def filter_queryset(self, queryset: QuerySet, n: int) -> QuerySet:
        return selectors.filter_subscriptions_active_with_credits_above(queryset, min_credits=n)


@admin.register(Subscription)
class SubscriptionAdmin(EmailTitleMixin, admin.ModelAdmin):
    list_display = (
        "user_email", "balance", "plan_type", "status", "current_period_end", "cancel_at_period_end",
        "stripe_customer_id", "customer",
    )  # fmt: skip
    list_select_related = ("user",)
    list_filter = (
        "status",
        PlanFilter,
        ("current_period_end", admin.DateFieldListFilter),
        ActiveWithCreditsFilter,
    )
    search_fields = ("user__email", "stripe_customer_id", "stripe_subscription_id")
    ordering = ("-updated_at",)
    fields = (
        "user", "plan_type", "status", "stripe_customer_id", "stripe_subscription_id",
        "current_period_start", "current_period_end", "cancel_at_period_end", "stripe_event_created",
        "metadata", "created_at", "updated_at",
    )  # fmt: skip
    # Stripe's word is the source of truth; staff may only map a plan name the catalogue lacks.
    readonly_fields = tuple(f for f in fields if f != "plan_type")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(balance=F("user__credit_account__balance"))

    @admin.display(description="email", ordering="user__email")
    def user_email(self, obj: Subscription) -> str:
        return obj.user.email

    @admin.display(description="balance", ordering="balance")
    def balance(self, obj: Subscription) -> str:
        return "—" if obj.balance is None else formats.number_format(obj.balance, force_grouping=True)

    @admin.display(description="")
    def customer(self, obj: Subscription) -> str:
        return customer_link(obj.user_id)

    def save_model(self, request, obj: Subscription, form, change: bool) -> None:
        if "plan_type" in form.changed_data:
            services.set_plan_type(subscription=obj, plan_type=form.cleaned_data["plan_type"])


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("event_id", "type", "status", "attempts", "created", "received_at", "processed_at")
    list_filter = ("status", "type", "received_at")
    search_fields = ("event_id", "type")
    ordering = ("-received_at",)
    actions = ["reprocess"]
    fields = (
        "event_id", "type", "status", "attempts", "error", "note", "created", "received_at",
        "processed_at", "livemode", "payload_pretty",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Reprocess the selected failed events")
    def reprocess(self, request, queryset: QuerySet) -> None:
        done = failed = skipped = 0
        for event in queryset.order_by("created", "id"):
            if event.status != WebhookEventStatus.FAILED:
                skipped += 1
                continue
            try:
                result = services.reprocess_event(event=event)
            except DomainError as exc:
                self.message_user(request, f"{event.event_id}: {exc.message}", messages.WARNING)
                skipped += 1
                continue
            if result.status == WebhookEventStatus.FAILED:
                failed += 1
                self.message_user(request, f"{event.event_id} failed again: {result.error}", messages.ERROR)
            else:
                done += 1
        self.message_user(
            request,
            f"Reprocessed {done}; failed again {failed}; skipped {skipped} (not failed).",
            messages.INFO,
        )
