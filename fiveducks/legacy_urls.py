"""The 5Ducks client's own routes, mounted at the site root.

Exact paths and camelCase shapes of `../shared/platform-api.md`; paths are answered as the client
writes them (no trailing slash, so no redirect). Views here only shape answers; the behaviour
lives in the domains' services and selectors. docs/platform.md lists each route with its test.
"""

from __future__ import annotations

from django.urls import path

from billing.api import WebhookView
from fiveducks.legacy import billing, credits, gmail, notifications

urlpatterns = [
    # credits
    path("api/credits", credits.CreditsView.as_view(), name="legacy-credits"),
    path("api/credits/history", credits.HistoryView.as_view(), name="legacy-credits-history"),
    path("api/credits/stats", credits.StatsView.as_view(), name="legacy-credits-stats"),
    path("api/credits/status", credits.StatusView.as_view(), name="legacy-credits-status"),
    path("api/credits/adjust", credits.AdjustView.as_view(), name="legacy-credits-adjust"),
    path(
        "api/credits/deduct-individual-email",
        credits.DeductIndividualEmailView.as_view(),
        name="legacy-credits-deduct-individual-email",
    ),
    path("api/credits/easter-egg", notifications.EasterEggView.as_view(), name="legacy-easter-egg"),
    # notifications and badges
    path(
        "api/notifications/status",
        notifications.NotificationStatusView.as_view(),
        name="legacy-notifications-status",
    ),
    path(
        "api/notifications/trigger", notifications.TriggerView.as_view(), name="legacy-notifications-trigger"
    ),
    path(
        "api/notifications/mark-shown",
        notifications.MarkShownView.as_view(),
        name="legacy-notifications-mark-shown",
    ),
    # billing (Stripe's webhook: billing's own view, one implementation at both paths)
    path(
        "api/stripe/subscription-status",
        billing.StripeSubscriptionStatusView.as_view(),
        name="legacy-stripe-status",
    ),
    path(
        "api/stripe/create-checkout-session",
        billing.CreateCheckoutSessionView.as_view(),
        name="legacy-stripe-checkout",
    ),
    path("api/stripe/webhook", WebhookView.as_view(), name="legacy-stripe-webhook"),
    path(
        "api/user/subscription-status",
        billing.UserSubscriptionStatusView.as_view(),
        name="legacy-user-subscription",
    ),
    # Gmail
    path("api/gmail/auth", gmail.GmailAuthView.as_view(), name="legacy-gmail-auth"),
    path("api/gmail/callback", gmail.GmailCallbackView.as_view(), name="legacy-gmail-callback"),
    path("api/gmail/status", gmail.GmailStatusView.as_view(), name="legacy-gmail-status"),
    path("api/gmail/auth-status", gmail.GmailAuthStatusView.as_view(), name="legacy-gmail-auth-status"),
    path("api/gmail/user", gmail.GmailUserView.as_view(), name="legacy-gmail-user"),
]
