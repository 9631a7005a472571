"""Where a warm authenticated read's CPU goes, in one process, without HTTP (a helper, not a row).

    python -m bench._profile_read [PATH ...] [--credential-cache-off] [--profile]

Runs after `python -m bench.http_balance` on its database (BENCH_DATABASE_URL, default
fd_bench_http): issues new API keys to 50 of its users through `accounts.services`, then calls
Django's WSGI handler directly, with the benchmark's production settings (bench.settings, DEBUG=0,
local-memory cache, multiprocess metrics), for each PATH (default `/api/credits/` and
`/api/bench/constant/`): 300 warm-up requests, then 10 alternating blocks of 300 timed ones, and
prints microseconds per request. `--profile` adds a cProfile of 3,000 more requests on the first
PATH, sorted by cumulative time. The figures leave out gunicorn and the network; the shares are
what the README's Performance section quotes.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import secrets
import sys
import tempfile
import time

from bench.http_balance import _base_env


def _caller(app, path: str, keys: list[str]):
    def call(i: int) -> None:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "HTTP_AUTHORIZATION": f"Token {keys[i % len(keys)]}",
        }  # fmt: skip
        status: list[str] = []
        b"".join(app(environ, lambda s, _headers: status.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"{path} answered {status[0]}")

    return call


def main(argv: list[str]) -> None:
    from cryptography.fernet import Fernet

    paths = [a for a in argv if a.startswith("/")] or ["/api/credits/", "/api/bench/constant/"]
    env = _base_env(secrets.token_urlsafe(50), Fernet.generate_key().decode())
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fd-profile-")
    if "--credential-cache-off" in argv:
        env["AUTH_CREDENTIAL_CACHE"] = "0"
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.wsgi import get_wsgi_application

    from accounts import services

    app = get_wsgi_application()
    keys = [services.issue_api_token(user=u) for u in get_user_model().objects.order_by("pk")[:50]]
    calls = {path: _caller(app, path, keys) for path in paths}
    for call in calls.values():
        for i in range(300):
            call(i)
    spent = dict.fromkeys(paths, 0.0)
    for block in range(10):
        for path in paths if block % 2 == 0 else paths[::-1]:
            start = time.perf_counter()
            for i in range(300):
                calls[path](i)
            spent[path] += time.perf_counter() - start
    for path in paths:
        print(f"{path}: {spent[path] / 3000 * 1e6:.0f} µs/request")
    if "--profile" in argv:
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(3000):
            calls[paths[0]](i)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(50)


if __name__ == "__main__":
    main(sys.argv[1:])
