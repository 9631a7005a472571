"""Staff screens: subscriptions (Stripe's state; only the plan name is editable, through a service)
and the webhook event log (read-only, failed events can be reprocessed)."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing import selectors, services
from billing.models import PriceMapping, Subscription, WebhookEvent, WebhookEventStatus
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
        "user_email", "plan_type", "status", "cancelling", "current_period_end",
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
        "current_period_start", "current_period_end", "cancel_at_period_end", "cancel_at", "cancelling",
        "stripe_event_created", "metadata", "created_at", "updated_at",
    )  # fmt: skip
    # Stripe's word is the source of truth; staff may only map a plan name the catalogue lacks.
    readonly_fields = tuple(f for f in fields if f != "plan_type")

    @admin.display(description="cancelling")
    def cancelling(self, obj: Subscription) -> str:
        ending = selectors.cancellation(subscription=obj)
        if ending is None:
            return "-"
        when = ending.at.strftime("%Y-%m-%d %H:%M UTC") if ending.at else "at period end"
        return f"cancels {when}"

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


RAW_BODY_SHOWN = 20_000


class LinkEventForm(forms.Form):
    user = forms.CharField(label="User (email or id)", max_length=254)

    def clean_user(self):
        value = self.cleaned_data["user"].strip()
        users = get_user_model().objects
        user = (
            users.filter(pk=int(value)).first()
            if value.isdigit()
            else users.filter(email__iexact=value).first()
        )
        if user is None:
            raise forms.ValidationError(f"No user {value!r}.")
        return user


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "event_id", "type", "status", "customer_id", "attempts", "created", "received_at", "link",
    )  # fmt: skip
    list_filter = ("status", "type", "received_at")
    search_fields = ("event_id", "type", "customer_id")
    ordering = ("-received_at",)
    actions = ["reprocess"]
    fields = (
        "event_id", "type", "status", "customer_id", "attempts", "error", "note", "created",
        "received_at", "processed_at", "livemode", "link", "payload_pretty", "raw_body_text",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.display(description="raw body (as signed)")
    def raw_body_text(self, obj: WebhookEvent) -> str:
        if obj.raw_body is None:
            return "-"
        raw = bytes(obj.raw_body)
        shown = raw[:RAW_BODY_SHOWN].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        more = f" … ({len(raw):,} bytes)" if len(raw) > RAW_BODY_SHOWN else ""
        return format_html("<pre>{}{}</pre>", shown, more)

    @admin.display(description="link")
    def link(self, obj: WebhookEvent) -> str:
        if obj.status != WebhookEventStatus.UNMATCHED or not obj.customer_id:
            return "-"
        url = reverse("admin:billing_webhookevent_link", args=[obj.pk])
        return format_html('<a class="button" href="{}">Link to a user…</a>', url)

    def get_urls(self):
        return [
            path(
                "<int:event_pk>/link/",
                self.admin_site.admin_view(self.link_view),
                name="billing_webhookevent_link",
            ),
            *super().get_urls(),
        ]

    def link_view(self, request, event_pk: int):
        """Staff link an unmatched event's customer to a user; its unmatched events re-process."""
        if not request.user.is_staff:
            raise Http404
        event = WebhookEvent.objects.filter(pk=event_pk).first()
        if event is None:
            raise Http404("No such event")
        form = LinkEventForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                results = services.link_unmatched_event(event=event, user=form.cleaned_data["user"])
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                summary = ", ".join(f"{r.event_id} {r.status}" for r in results) or "none"
                self.message_user(
                    request,
                    f"Customer {event.customer_id} linked to {form.cleaned_data['user'].email}; "
                    f"re-processed: {summary}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:billing_webhookevent_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Link Stripe customer {event.customer_id or '(none)'} to a user",
            "form": form,
            "event": event,
            "pending": selectors.unmatched_events(customer_id=event.customer_id).count()
            if event.customer_id
            else 0,
        }
        return TemplateResponse(request, "admin/billing/link_event.html", context)

    @admin.action(description="Reprocess the selected failed or unmatched events")
    def reprocess(self, request, queryset: QuerySet) -> None:
        done = failed = skipped = 0
        retryable = (WebhookEventStatus.FAILED, WebhookEventStatus.UNMATCHED)
        for event in queryset.order_by("created", "id"):
            if event.status not in retryable:
                skipped += 1
                continue
            try:
                result = services.reprocess_event(event=event)
            except DomainError as exc:
                self.message_user(request, f"{event.event_id}: {exc.message}", messages.WARNING)
                skipped += 1
                continue
            if result.status in retryable:
                failed += 1
                reason = result.error or result.note
                self.message_user(
                    request, f"{event.event_id} is {result.status} again: {reason}", messages.ERROR
                )
            else:
                done += 1
        self.message_user(
            request,
            f"Reprocessed {done}; failed or unmatched again {failed}; "
            f"skipped {skipped} (not failed or unmatched).",
            messages.INFO,
        )


class PriceMappingForm(forms.ModelForm):
    plan = forms.ChoiceField(choices=())

    class Meta:
        model = PriceMapping
        fields = ("stripe_price_id", "plan", "note")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [(key, plan["name"]) for key, plan in settings.BILLING_PLANS.items()]


@admin.register(PriceMapping)
class PriceMappingAdmin(admin.ModelAdmin):
    """Staff map a Stripe price the catalogue lacks to a plan; saved through services.map_price."""

    form = PriceMappingForm
    list_display = ("stripe_price_id", "plan", "note", "updated_at")
    search_fields = ("stripe_price_id", "plan", "note")

    def get_readonly_fields(self, request, obj=None):
        # A mapping is for one price: another price is another mapping.
        return ("stripe_price_id",) if obj is not None else ()

    def save_model(self, request, obj: PriceMapping, form, change: bool) -> None:
        saved = services.map_price(
            stripe_price_id=obj.stripe_price_id,
            plan=form.cleaned_data["plan"],
            note=form.cleaned_data.get("note") or "",
        )
        obj.pk = saved.pk
