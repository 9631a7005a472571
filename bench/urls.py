"""BENCHMARK HARNESS ONLY: every product URL, plus the KV baseline at /api/bench/kv/credits/ and
the framework ceiling (a constant answer behind the same authentication) at /api/bench/constant/.

The two are inserted right after the product's `api/credits/` include, so that resolving them
tries the same patterns as resolving `/api/credits/` (the 5Ducks client's paths, the service API,
the accounts API): first in the list they resolved about 20 µs faster than the product's path,
a cost that is not the balance read's.
"""

from django.urls import path

from bench.ceiling import ConstantView
from bench.kv_baseline import KVBalanceView
from fivedocks.urls import urlpatterns as product_urlpatterns

_AFTER_CREDITS = 1 + next(i for i, p in enumerate(product_urlpatterns) if str(p.pattern) == "api/credits/")

urlpatterns = [
    *product_urlpatterns[:_AFTER_CREDITS],
    path("api/bench/kv/credits/", KVBalanceView.as_view(), name="bench-kv-balance"),
    path("api/bench/constant/", ConstantView.as_view(), name="bench-constant"),
    *product_urlpatterns[_AFTER_CREDITS:],
]

handler404 = "fivedocks.api.not_found"
handler500 = "fivedocks.api.server_error"
