"""The one thread harness of the concurrency tests.

`run_concurrently(fn, count)` calls `fn(i)` for i in 0..count-1 from `count` threads released
together by a barrier (so they really race), each closing its own database connection at the
end (Django opens one per thread; a leaked one would keep the test database from being dropped).
Tests using it need `@pytest.mark.django_db(transaction=True)`: the threads' transactions must
really commit and see each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection


@dataclass
class Outcomes:
    """Per thread index: what `fn` returned, or the exception it raised."""

    all: list[Any]

    @property
    def results(self) -> list[Any]:
        return [o for o in self.all if not isinstance(o, BaseException)]

    @property
    def errors(self) -> list[BaseException]:
        return [o for o in self.all if isinstance(o, BaseException)]

    def values(self) -> list[Any]:
        """Every thread's result in index order; raises the first error if any thread failed."""
        if self.errors:
            raise self.errors[0]
        return list(self.all)


def run_concurrently(fn: Callable[[int], Any], count: int, *, timeout: float = 60) -> Outcomes:
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            outcomes[index] = fn(index)
        except Exception as exc:  # returned to the test, which asserts on it
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    return Outcomes(outcomes)
