"""BENCHMARK HARNESS ONLY: every product URL, plus the KV baseline at /bench/kv/credits/ and the
framework ceiling (a constant answer behind the same authentication) at /bench/constant/."""

from django.urls import include, path

from bench.ceiling import ConstantView
from bench.kv_baseline import KVBalanceView

urlpatterns = [
    path("bench/kv/credits/", KVBalanceView.as_view(), name="bench-kv-balance"),
    path("bench/constant/", ConstantView.as_view(), name="bench-constant"),
    path("", include("fivedocks.urls")),
]

handler404 = "fivedocks.api.not_found"
handler500 = "fivedocks.api.server_error"
