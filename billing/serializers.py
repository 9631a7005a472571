"""Request and response shapes of the billing API."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import SubscriptionStatus


@extend_schema_field({"type": "string", "enum": sorted(settings.BILLING_PLANS)})
class PlanField(serializers.CharField):
    """Documented as the enum of catalogue plans; `validate_plan` names the known ones on a miss."""


class CheckoutRequestSerializer(serializers.Serializer):
    plan = PlanField(help_text="A plan key of the catalogue, e.g. `ugly-duckling`.")

    def validate_plan(self, value: str) -> str:
        if value not in settings.BILLING_PLANS:
            known = ", ".join(sorted(settings.BILLING_PLANS))
            raise serializers.ValidationError(f"Unknown plan {value!r}; known: {known}.")
        return value


class RedirectSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Send the browser here (a Stripe-hosted page).")


class SubscriptionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SubscriptionStatus.choices)
    is_active = serializers.BooleanField(help_text="Active or trialing: the plan's benefits apply.")
    plan = serializers.CharField(allow_null=True)
    plan_name = serializers.CharField(allow_null=True)
    monthly_credits = serializers.IntegerField(
        help_text="The allowance that applies now (free tier otherwise)."
    )
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    cancelling = serializers.BooleanField(
        help_text="The subscription ends at `cancel_at` (portal cancellation, classic or flexible)."
    )
    cancel_at = serializers.DateTimeField(
        allow_null=True, help_text="When a cancelling subscription ends; null when it is not cancelling."
    )
    has_billing_account = serializers.BooleanField(help_text="A Stripe customer exists: the portal can open.")


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    event_id = serializers.CharField()
    status = serializers.CharField()
    duplicate = serializers.BooleanField()


class ReportQuerySerializer(serializers.Serializer):
    min_credits = serializers.IntegerField(min_value=0, help_text="Balance strictly above this.")


class ActiveWithCreditsRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    balance = serializers.IntegerField()
    subscription_status = serializers.CharField()
    plan_type = serializers.CharField()
    current_period_end = serializers.DateTimeField(allow_null=True)
