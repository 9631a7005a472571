"""Billing endpoints: checkout, portal, the caller's subscription, Stripe's webhook, a staff report."""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors, services
from billing.models import WebhookEventStatus
from billing.serializers import (
    ActiveWithCreditsRowSerializer,
    CheckoutRequestSerializer,
    RedirectSerializer,
    ReportQuerySerializer,
    SubscriptionSerializer,
    WebhookAckSerializer,
)
from fivedocks.api import error_body
from fivedocks.errors import DomainError
from fivedocks.throttling import SharedScopedRateThrottle

logger = logging.getLogger(__name__)

_UPSTREAM = OpenApiResponse(description="Stripe failed or refused; `detail` gives its reason")


class CheckoutView(APIView):
    """Start a Stripe Checkout for a plan; the answer's `url` is Stripe's payment page."""

    @extend_schema(
        request=CheckoutRequestSerializer,
        responses={
            200: RedirectSerializer,
            400: OpenApiResponse(description="Unknown plan"),
            409: OpenApiResponse(description="Already subscribed: use the portal"),
            502: _UPSTREAM,
        },
    )
    def post(self, request: Request) -> Response:
        payload = CheckoutRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        url = services.start_checkout(user=request.user, plan=payload.validated_data["plan"])
        return Response({"url": url})


class PortalView(APIView):
    """Open Stripe's billing portal (change plan, card, cancel) for the caller's customer."""

    @extend_schema(
        request=None,
        responses={
            200: RedirectSerializer,
            409: OpenApiResponse(description="No Stripe customer yet: checkout first"),
            502: _UPSTREAM,
        },
    )
    def post(self, request: Request) -> Response:
        return Response({"url": services.create_portal_session(user=request.user)})


class SubscriptionView(APIView):
    """The caller's subscription; a user without one gets the free tier (status `none`)."""

    @extend_schema(responses=SubscriptionSerializer)
    def get(self, request: Request) -> Response:
        return Response(SubscriptionSerializer(selectors.subscription_summary(user=request.user)).data)


class WebhookBodyTooLarge(DomainError):
    """The body is above STRIPE_WEBHOOK_MAX_BYTES."""

    status_code = 413
    code = "payload_too_large"


def _webhook_body(request: Request) -> bytes:
    """The raw body, under the webhook's own limit instead of DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB
    by default: Stripe's largest events, an invoice with its lines or a customer with its
    metadata, must never be refused for size)."""
    django_request = request._request
    limit = settings.STRIPE_WEBHOOK_MAX_BYTES
    try:
        declared = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise WebhookBodyTooLarge(f"The body is {declared} bytes; the limit is {limit}.")
    if hasattr(django_request, "_body"):  # already read (e.g. by a middleware)
        return django_request._body
    body = django_request.read(limit + 1)
    if len(body) > limit:
        raise WebhookBodyTooLarge(f"The body is above the limit of {limit} bytes.")
    return body


class WebhookView(APIView):
    """Stripe's webhook: verified by signature (no session, no CSRF), stored, handled once.

    200 for a handled, ignored (no handler), unmatched (unknown customer: kept for staff) or
    already handled event; 400 for a bad signature or a signed body that is not one event
    object (nothing stored); 413 above STRIPE_WEBHOOK_MAX_BYTES; 500 in the error shape when
    storing or handling failed (a failed event is kept: Stripe retries, staff can reprocess).
    Answered at `webhook/` and `webhook` (Stripe counts a redirect as a failed delivery).
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []
    # Outside traffic: a per-address rate (THROTTLE_WEBHOOK) answers 429 + Retry-After past it;
    # Stripe retries those deliveries later.
    throttle_classes = [SharedScopedRateThrottle]
    throttle_scope = "stripe-webhook"

    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses={
            200: WebhookAckSerializer,
            400: OpenApiResponse(description="Bad or missing signature, or not an event object"),
            413: OpenApiResponse(description="Body above STRIPE_WEBHOOK_MAX_BYTES"),
            500: OpenApiResponse(description="Not stored, or stored but handling failed (retried)"),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            recorded = services.record_event(
                payload=_webhook_body(request), sig_header=request.META.get("HTTP_STRIPE_SIGNATURE")
            )
        except DomainError:
            raise
        except Exception:
            logger.exception("stripe webhook: unexpected error")
            detail = "The event could not be recorded; Stripe will deliver it again."
            return Response(
                error_body(500, "webhook_error", detail), status=status.HTTP_500_INTERNAL_SERVER_ERROR
            )
        event = recorded.event
        if event.status == WebhookEventStatus.FAILED:
            detail = f"Event {event.event_id} was stored but handling failed; it will be retried."
            return Response(
                error_body(500, "webhook_handler_failed", detail),
                status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            )
        body = {
            "received": True,
            "event_id": event.event_id,
            "status": event.status,
            "duplicate": recorded.duplicate,
        }
        return Response(body)


@extend_schema(exclude=True)
class WebhookNoSlashView(WebhookView):
    """The same webhook without its trailing slash (documented once, at `webhook/`)."""


class ActiveWithCreditsReportView(generics.ListAPIView):
    """Staff: users with a balance above `min_credits` and an active (or trialing) subscription."""

    permission_classes = [IsAdminUser]
    serializer_class = ActiveWithCreditsRowSerializer

    @extend_schema(parameters=[ReportQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = ReportQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.users_with_credits_above_and_active_subscription(
            min_credits=query.validated_data["min_credits"]
        )
