"""fivedocks benchmarks (not tests, not product code): `make bench` runs them all (bench/run_all.py).

Every module here that defines a top-level `run(quick: bool) -> list[bench.common.Result]` is a
benchmark; bench/common.py holds the Result type, the table and the machine facts.
"""
