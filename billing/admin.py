"""Staff screens: subscriptions (Stripe's state; only the plan name is editable, through a service)
and the webhook event log (read-only, failed events can be reprocessed)."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from billing import selectors, services
from billing.models import Subscription, WebhookEvent, WebhookEventStatus
from fivedocks.admin import ReadOnlyAdminMixin
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


class ActiveWithCreditsFilter(admin.SimpleListFilter):
    """The report "credits above N and an active subscription" as a list filter."""

    title = "active (or trialing) with credits above"
    parameter_name = "active_credits_above"
    THRESHOLDS = (100, 1000, 10000)

    def lookups(self, request, model_admin):
        return [(str(n), f"{n:,} credits") for n in self.THRESHOLDS]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() and self.value().isdigit():
            return selectors.filter_subscriptions_active_with_credits_above(
                queryset, min_credits=int(self.value())
            )
        return queryset


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "user_email", "plan_type", "status", "current_period_end", "cancel_at_period_end",
        "stripe_customer_id", "updated_at",
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

    @admin.display(description="email", ordering="user__email")
    def user_email(self, obj: Subscription) -> str:
        return obj.user.email

    def save_model(self, request, obj: Subscription, form, change: bool) -> None:
        if "plan_type" in form.changed_data:
            try:
                services.set_plan_type(subscription=obj, plan_type=form.cleaned_data["plan_type"])
            except DomainError as exc:  # e.g. billing is frozen for a cutover step
                self.message_user(request, exc.message, messages.ERROR)
                request._fivedocks_refused = True

    def response_change(self, request, obj):
        if getattr(request, "_fivedocks_refused", False):
            return HttpResponseRedirect(request.path)  # the form again; the message says why
        return super().response_change(request, obj)


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
