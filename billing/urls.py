from django.urls import path

from billing import api

urlpatterns = [
    path("checkout/", api.CheckoutView.as_view(), name="billing-checkout"),
    path("portal/", api.PortalView.as_view(), name="billing-portal"),
    path("subscription/", api.SubscriptionView.as_view(), name="billing-subscription"),
    path("webhook/", api.WebhookView.as_view(), name="billing-webhook"),
    # Without the slash too: APPEND_SLASH would answer a redirect, a failed delivery for Stripe.
    path("webhook", api.WebhookNoSlashView.as_view(), name="billing-webhook-no-slash"),
    path(
        "reports/active-with-credits/",
        api.ActiveWithCreditsReportView.as_view(),
        name="billing-report-active-with-credits",
    ),
]
