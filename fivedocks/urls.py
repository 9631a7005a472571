from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from fivedocks.health import healthz
from fivedocks.metrics_view import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/", include("accounts.urls")),
    path("api/credits/", include("credits.urls")),
    path("api/billing/", include("billing.urls")),
    path("api/gmail/", include("gmail.urls")),
    path("api/notifications/", include("notifications.urls")),
]

handler404 = "fivedocks.api.not_found"
handler500 = "fivedocks.api.server_error"
