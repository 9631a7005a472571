"""What one pass read from a store, kept on local disk so a second pass sees the same records.

A Replit Database is read over the network, one GET per key, and its reads are most of a run's
time. The verify pass needs the records the load pass wrote, not a second copy of the store that
may have moved on meanwhile: it replays the load's snapshot instead of reading everything again.
The snapshot streams to an anonymous temporary file (gone when closed, even after a crash), so
memory stays flat whatever the store's size.
"""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterable, Iterator

from .base import Item


class Snapshot:
    """Records batches as a pass reads them (`recording`), then yields them again (`replay`)."""

    def __init__(self) -> None:
        # Closed by close() / the context manager, like any file a long-lived object owns.
        self._file = tempfile.TemporaryFile(prefix="kvmigrate-snapshot-")  # noqa: SIM115
        self.batches = 0
        self.items = 0

    def recording(self, batches: Iterable[list[Item]]) -> Iterator[list[Item]]:
        """Pass `batches` through, appending each to the snapshot."""
        for batch in batches:
            marshal.dump(batch, self._file)
            self.batches += 1
            self.items += len(batch)
            yield batch

    def replay(self, start: int = 0) -> Iterator[list[Item]]:
        """The recorded batches, in the order they were read, from the `start`-th on."""
        self._file.flush()
        self._file.seek(0)
        for index in range(self.batches):
            batch = marshal.load(self._file)  # noqa: S302 - our own private file, written just before
            if index >= start:
                yield batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
