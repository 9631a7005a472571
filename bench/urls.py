"""BENCHMARK HARNESS ONLY: every product URL, plus the KV baseline at /bench/kv/credits/."""

from django.urls import include, path

from bench.kv_baseline import KVBalanceView

urlpatterns = [
    path("bench/kv/credits/", KVBalanceView.as_view(), name="bench-kv-balance"),
    path("", include("fivedocks.urls")),
]

handler404 = "fivedocks.api.not_found"
handler500 = "fivedocks.api.server_error"
