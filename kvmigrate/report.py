"""Per-domain counts of a run, the summary table and the JSON report.

Every (record, domain) a run meets is counted once in `read` and once in exactly one outcome of
the load (created, updated, unchanged, quarantined, skipped) and, when verified, once in
verified or mismatched. Keys of other prefixes are counted under `other`; imported users under
`users`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fivedocks.domains import DOMAINS

DOMAIN_ORDER = ("users", *DOMAINS, "other")
COLUMNS = (
    "read", "created", "updated", "unchanged", "quarantined", "skipped", "verified", "mismatched", "gone",
)  # fmt: skip
# Examples of quarantined/mismatched keys kept for the report (the counts are always complete).
EXAMPLES_MAX = 1000


@dataclass
class Counts:
    by_domain: dict[str, Counter] = field(default_factory=dict)
    quarantined: list[dict] = field(default_factory=list)  # {"key", "domain", "code", "reason"}
    mismatched: list[dict] = field(default_factory=list)  # {"key", "domain", "fields"}
    missing: list[dict] = field(default_factory=list)  # {"key", "domain", "reason"}
    gone: list[dict] = field(default_factory=list)  # {"key", "domain"}: moved before, no longer in the store
    # Problems of the store itself, reported with where they are: {"key", "line", "reason"}
    # (a key twice in a dump file). They need a look: the run ends with exit 3.
    source_problems: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: users, load, verify, reverse

    def add(self, domain: str, name: str, n: int = 1) -> None:
        self.by_domain.setdefault(domain, Counter())[name] += n

    def get(self, domain: str, name: str) -> int:
        return self.by_domain.get(domain, Counter())[name]

    def total(self, name: str) -> int:
        return sum(c[name] for c in self.by_domain.values())

    def merge(self, other: Counts) -> None:
        for domain, counter in other.by_domain.items():
            self.by_domain.setdefault(domain, Counter()).update(counter)
        for mine, theirs in (
            (self.quarantined, other.quarantined),
            (self.mismatched, other.mismatched),
            (self.missing, other.missing),
            (self.gone, other.gone),
            (self.source_problems, other.source_problems),
        ):
            mine.extend(theirs[: max(0, EXAMPLES_MAX - len(mine))])

    def only(self, names: tuple[str, ...]) -> Counts:
        """These counts restricted to `names` (the example lists go along)."""
        out = Counts(quarantined=self.quarantined, mismatched=self.mismatched, missing=self.missing)
        if "quarantined" not in names:
            out.quarantined = []
        for domain, counter in self.by_domain.items():
            for name in names:
                if counter[name]:
                    out.add(domain, name, counter[name])
        return out

    def as_dict(self) -> dict[str, dict[str, int]]:
        ordered = sorted(
            self.by_domain, key=lambda d: (DOMAIN_ORDER.index(d) if d in DOMAIN_ORDER else 99, d)
        )
        return {d: {name: int(self.by_domain[d][name]) for name in COLUMNS} for d in ordered}

    @property
    def needs_attention(self) -> bool:
        return bool(self.total("quarantined") or self.total("mismatched") or self.source_problems)


def table(counts: Counts) -> str:
    """The summary table printed at the end of a run."""
    rows = counts.as_dict()
    width = max([len("domain"), *(len(d) for d in rows)])
    head = "domain".ljust(width) + "".join(f"{name:>13}" for name in COLUMNS)
    lines = [head, "-" * len(head)]
    for domain, values in rows.items():
        lines.append(domain.ljust(width) + "".join(f"{values[name]:>13,}" for name in COLUMNS))
    if len(rows) > 1:
        lines.append("-" * len(head))
        lines.append("total".ljust(width) + "".join(f"{counts.total(name):>13,}" for name in COLUMNS))
    return "\n".join(lines)


def build(counts: Counts, **header: Any) -> dict[str, Any]:
    """The JSON report: the run's header, counts per domain and examples of what needs a look."""
    return {
        **header,
        "domains": counts.as_dict(),
        "totals": {name: counts.total(name) for name in COLUMNS},
        "seconds": {phase: round(value, 3) for phase, value in counts.seconds.items()},
        "quarantined": counts.quarantined,
        "mismatched": counts.mismatched,
        "missing": counts.missing,
        "gone": counts.gone,
        "source_problems": counts.source_problems,
    }


def write(path: str | Path, report: dict[str, Any]) -> None:
    Path(path).write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
