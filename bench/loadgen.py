"""A small HTTP/1.1 load generator, used by bench/http_balance.py only when `wrk` is missing.

Run in its own process: a fixed number of keep-alive connections (reopened when the server
closes them, as gunicorn's sync worker does after every response), each sending GETs in a closed
loop for a fixed time, rotating the Authorization header across the given tokens. Prints one
JSON line shaped like the wrk script's summary: requests, duration, errors and the latency
histogram (microseconds -> count).

    python -m bench.loadgen URL --tokens FILE --connections 16 --duration 15

Two modes wrk has no equivalent for, used by bench/http_balance.py whether or not wrk is there:
`--once` sends one request per line of the tokens file, in the file's order, shared by all the
connections, and stops when the file is done (a read pattern written out request by request);
`--health` counts as an error (`health`) every answer that is not a 200 whose JSON body says
`"status": "ok"` (a load balancer's probe of /healthz).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from urllib.parse import urlsplit


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status code, whether the server will close the connection, and the body."""
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
    body = await reader.readexactly(length) if length else b""
    return status, close, body


def _healthy(status: int, body: bytes) -> bool:
    try:
        return status == 200 and json.loads(body).get("status") == "ok"
    except (ValueError, AttributeError):
        return False


class _Schedule:
    """Which token the next request carries: rotating for a fixed time, or each line once."""

    def __init__(self, tokens: list[str], deadline: float, once: bool):
        self.tokens, self.deadline, self.once, self.sent = tokens, deadline, once, 0

    def next_token(self, idx: int) -> tuple[int, str] | None:
        """(the connection's next index, its token), or None when the run is over."""
        if self.once:
            if self.sent >= len(self.tokens):
                return None
            self.sent += 1  # one event loop: no other connection runs between these lines
            return idx, self.tokens[self.sent - 1]
        if time.perf_counter() >= self.deadline:
            return None
        idx = (idx + 1) % len(self.tokens)
        return idx, self.tokens[idx]


async def _worker(n, host, port, path, schedule, health, latencies, errors):
    idx = (n * 7919) % len(schedule.tokens)
    reader = writer = None
    while (step := schedule.next_token(idx)) is not None:
        idx, token = step
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status, close, body = await asyncio.wait_for(_read_response(reader), timeout=5)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            errors["read"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        latencies.append(time.perf_counter() - start)
        if status >= 400:
            errors["status"] += 1
        if health and not _healthy(status, body):
            errors["health"] += 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _main(
    url: str,
    tokens: list[str],
    connections: int,
    duration: float,
    *,
    once: bool = False,
    health: bool = False,
) -> dict:
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0, "health": 0}
    start = time.perf_counter()
    schedule = _Schedule(tokens, start + duration, once)
    await asyncio.gather(
        *(
            _worker(n, parts.hostname, parts.port, parts.path or "/", schedule, health, latencies, errors)
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
    parser.add_argument("--once", action="store_true", help="each line of --tokens once, in order")
    parser.add_argument("--health", action="store_true", help="count answers other than 200 + status ok")
    ns = parser.parse_args()
    with open(ns.tokens, encoding="ascii") as handle:
        keys = [line.strip() for line in handle if line.strip()]
    summary = asyncio.run(_main(ns.url, keys, ns.connections, ns.duration, once=ns.once, health=ns.health))
    print(json.dumps(summary))
