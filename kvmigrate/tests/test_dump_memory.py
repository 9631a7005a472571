"""Dump sources stream: reading a big file keeps memory bounded by a batch, not by the file."""

import tracemalloc

import pytest

from kvmigrate.kvgen import GenOptions, generate
from kvmigrate.sources import DumpSource


@pytest.fixture(scope="module")
def big_dumps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    paths = {}
    for fmt in ("jsonl", "json"):
        path = folder / f"store.{fmt}"
        stats = generate(GenOptions(users=22_000, seed=3), path, format=fmt)
        paths[fmt] = (path, stats.keys)
    return paths


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_reading_50k_records_keeps_memory_small(big_dumps, fmt):
    path, keys = big_dumps[fmt]
    assert keys >= 50_000
    size = path.stat().st_size
    assert size > 30 * 1024 * 1024
    source = DumpSource(path)
    tracemalloc.start()
    try:
        count = 0
        for batch in source.iter_batches(500):
            count += len(batch)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == keys
    # One batch of 500 records (about 1 KB each) plus parser buffers: a few MB, whatever the file size.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
