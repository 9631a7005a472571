from django.contrib import admin
from django.urls import include, path

from fivedocks.api_docs import RedocView, SchemaView, SwaggerView
from fivedocks.health import healthz
from fivedocks.metrics_view import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="api-redoc"),
    # The 5Ducks client's own paths (exact, no trailing slash) come before the DRF API's.
    path("", include("fiveducks.legacy_urls")),
    path("api/service/", include("fiveducks.service_urls")),
    path("api/", include("accounts.urls")),
    path("api/credits/", include("credits.urls")),
    path("api/billing/", include("billing.urls")),
    path("api/gmail/", include("gmail.urls")),
    path("api/notifications/", include("notifications.urls")),
]

handler400 = "fivedocks.api.bad_request"
handler403 = "fivedocks.api.permission_denied"
handler404 = "fivedocks.api.not_found"
handler500 = "fivedocks.api.server_error"
