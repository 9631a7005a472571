"""Subscriptions at the platform's paths: both status routes and the checkout (401 bodies A and C).

Subscription state is billing's (kept current by Stripe's webhooks, read through
billing.selectors), not fetched live from Stripe on every poll as the platform did.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing import selectors, services
from fivedocks.errors import DomainError
from fiveducks import first_sight
from fiveducks.authentication import request_origin
from fiveducks.legacy import shapes
from fiveducks.legacy.base import AUTH_A, AUTH_C, LegacyView, common_errors, message

TAG = ["platform: billing"]
# The names the platform's account page shows for its plans.
PLAN_DISPLAY_NAMES = {"ugly-duckling": "The Duckling", "duckin-awesome": "Mama Duck"}


class StripeStatusSerializer(serializers.Serializer):
    hasSubscription = serializers.BooleanField()
    status = serializers.CharField(allow_null=True)
    currentPlan = serializers.CharField(allow_null=True)
    subscriptionId = serializers.CharField(required=False)
    currentPeriodEnd = serializers.IntegerField(required=False, allow_null=True, help_text="epoch ms")
    cancelAtPeriodEnd = serializers.BooleanField(required=False)

    class Meta:
        ref_name = "LegacyStripeSubscriptionStatus"


class UserStatusSerializer(serializers.Serializer):
    isSubscribed = serializers.BooleanField()
    currentPlan = serializers.CharField(allow_null=True)
    planDisplayName = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "LegacyUserSubscriptionStatus"


class CheckoutRequestSerializer(serializers.Serializer):
    planId = serializers.CharField()

    class Meta:
        ref_name = "LegacyCheckoutRequest"


class CheckoutSerializer(serializers.Serializer):
    checkoutUrl = serializers.CharField(allow_null=True)
    sessionId = serializers.CharField()

    class Meta:
        ref_name = "LegacyCheckout"


class StripeSubscriptionStatusView(LegacyView):
    """GET /api/stripe/subscription-status (polled by the subscription-success page)."""

    @extend_schema(tags=TAG, responses={200: StripeStatusSerializer, **common_errors(AUTH_A)})
    def get(self, request: Request) -> Response:
        first_sight.ensure_welcome(user=request.user)
        row = selectors.get_subscription(user=request.user)
        if row is None or not row.stripe_subscription_id:
            return Response({"hasSubscription": False, "status": None, "currentPlan": None})
        return Response(
            {
                "hasSubscription": True,
                "status": row.status,
                "currentPlan": row.plan_type or None,
                "subscriptionId": row.stripe_subscription_id,
                "currentPeriodEnd": shapes.ms(row.current_period_end),
                "cancelAtPeriodEnd": row.cancel_at_period_end,
            }
        )


class UserSubscriptionStatusView(LegacyView):
    """GET /api/user/subscription-status (the account page); 401 is the platform's body C."""

    unauthenticated_body = AUTH_C
    error_key = "error"

    @extend_schema(
        tags=TAG, responses={200: UserStatusSerializer, **common_errors(AUTH_C, error_key="error")}
    )
    def get(self, request: Request) -> Response:
        first_sight.ensure_welcome(user=request.user)
        summary = selectors.subscription_summary(user=request.user)
        plan = summary["plan"] if summary["is_active"] else None
        return Response(
            {
                "isSubscribed": summary["is_active"],
                "currentPlan": plan,
                "planDisplayName": PLAN_DISPLAY_NAMES.get(plan or "", summary["plan_name"] if plan else None),
            }
        )


def _return_urls(request: Request) -> tuple[str | None, str | None]:
    """Back to the page's own origin (as the platform did) when it is ours or a trusted one."""
    origin = request.headers.get("Origin") or ""
    if origin and origin in {request_origin(request), *settings.CSRF_TRUSTED_ORIGINS}:
        return origin + settings.PLATFORM_CHECKOUT_SUCCESS_PATH, origin
    return None, None


class CreateCheckoutSessionView(LegacyView):
    """POST /api/stripe/create-checkout-session `{planId}` → `{checkoutUrl, sessionId}`."""

    @extend_schema(
        tags=TAG,
        request=CheckoutRequestSerializer,
        responses={
            200: CheckoutSerializer,
            409: message("Already subscribed: change the plan in the billing portal"),
            502: message("Stripe failed or refused: `{message, error}`"),
            **common_errors(AUTH_A, unsafe=True),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        plan = data.get("planId")
        if not isinstance(plan, str) or plan not in settings.BILLING_PLANS:
            return Response({"message": "Invalid plan ID"}, status=400)
        success_url, cancel_url = _return_urls(request)
        session = services.create_checkout_session(
            user=request.user, plan=plan, success_url=success_url, cancel_url=cancel_url
        )
        return Response({"checkoutUrl": session.url, "sessionId": session.id})

    def legacy_error(self, exc: DomainError) -> Response | None:
        if exc.status_code == 502:
            return Response(
                {"message": "Failed to create checkout session", "error": exc.message}, status=502
            )
        return None
