"""The service API the platform's backend calls (`/api/service/...`, service credentials only)."""

from __future__ import annotations

from django.urls import path

from fiveducks import service_api

urlpatterns = [
    path("credits/holds/", service_api.HoldCreateView.as_view(), name="service-credits-holds"),
    path(
        "credits/holds/<int:hold_id>/capture/",
        service_api.HoldCaptureView.as_view(),
        name="service-credits-hold-capture",
    ),
    path(
        "credits/holds/<int:hold_id>/release/",
        service_api.HoldReleaseView.as_view(),
        name="service-credits-hold-release",
    ),
    path("credits/charge/", service_api.ChargeView.as_view(), name="service-credits-charge"),
    path("gmail/access-token/", service_api.GmailAccessTokenView.as_view(), name="service-gmail-token"),
]
