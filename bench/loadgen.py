"""A small HTTP/1.1 load generator, used by bench/http_balance.py only when `wrk` is missing.

Run in its own process: a fixed number of keep-alive connections (reopened when the server
closes them, as gunicorn's sync worker does after every response), each sending GETs in a closed
loop for a fixed time, rotating the Authorization header across the given tokens. Prints one
JSON line shaped like the wrk script's summary: requests, duration, errors and the latency
histogram (microseconds -> count).

    python -m bench.loadgen URL --tokens FILE --connections 16 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from urllib.parse import urlsplit


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, lines[0].startswith("HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
    if length:
        await reader.readexactly(length)
    return status, close


async def _worker(n, host, port, path, tokens, deadline, latencies, errors):
    idx = (n * 7919) % len(tokens)
    reader = writer = None
    while time.perf_counter() < deadline:
        idx = (idx + 1) % len(tokens)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {tokens[idx]}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status, close = await asyncio.wait_for(_read_response(reader), timeout=5)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            errors["read"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        latencies.append(time.perf_counter() - start)
        if status >= 400:
            errors["status"] += 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _main(url: str, tokens: list[str], connections: int, duration: float) -> dict:
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(
        *(
            _worker(n, parts.hostname, parts.port, parts.path or "/", tokens, deadline, latencies, errors)
            for n in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    hist = Counter(int(seconds * 1_000_000) for seconds in latencies)
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1_000_000),
        "errors": errors,
        "hist": {str(us): count for us, count in sorted(hist.items())},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15)
    ns = parser.parse_args()
    with open(ns.tokens, encoding="ascii") as handle:
        keys = [line.strip() for line in handle if line.strip()]
    print(json.dumps(asyncio.run(_main(ns.url, keys, ns.connections, ns.duration))))
