"""BENCHMARK HARNESS ONLY, never deployed: the product's settings plus the KV baseline's URLs.

`bench/http_balance.py` runs gunicorn with DJANGO_SETTINGS_MODULE=bench.settings so that the
product's `GET /api/credits/` and the KV-backed baseline are served by the same process, the
same middleware and the same DRF authentication (and the framework ceiling, bench/ceiling.py).
Nothing else differs from fivedocks.settings.
"""

import os

from fivedocks.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
# The legacy store's stand-in: Redis holding `user_credits:{id}` exactly as the platform wrote it.
BENCH_KV_REDIS_URL = os.environ.get("BENCH_KV_REDIS_URL", "redis://127.0.0.1:6379/7")
