"""One KV record on its way into PostgreSQL, and the pure work done on it before any write.

A `Record` is immutable: each step (classify, look up, transform) returns a new one. What the
load decides about it lives in the plan (`plan.py`), never on the record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from django.core.serializers.json import DjangoJSONEncoder

from gmail import services as gmail_services
from gmail.services import SealedToken

from . import transforms
from .codec import DecodeError, decode_value, parse_key
from .report import Counts
from .transforms import FAMILIES, Reject, Transformed
from .transforms.base import may_hold_bad_text

logger = logging.getLogger(__name__)


class Refusal(NamedTuple):
    """Why a record (or one domain of it) does not move: a short code and the detail shown."""

    code: str
    detail: str


class Previous(NamedTuple):
    """What the last run that moved a key remembered of it (`kvmigrate_records`)."""

    fingerprint: str
    domains: tuple[str, ...]  # the domains it handled
    parts: tuple[str, ...]  # the domains it wrote rows for


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a known prefix this run wants."""

    key: str
    raw: str
    prefix: str
    ident: str
    user_id: int | None
    wanted: tuple[str, ...]  # its family's domains that this run loads
    fingerprint: str
    refusal: Refusal | None = None  # refused before any database work (key, decoding, transform)
    out: Transformed | None = None  # the rows the value becomes (once transformed)
    sealed_token: SealedToken | None = None  # its Gmail token, encrypted ahead of the batch
    looked_up: bool = False
    previous: Previous | None = None  # from the last run that moved it (once looked up)
    todo: tuple[str, ...] = ()  # the wanted domains left to load (once looked up)
    flags_metadata: str | None = None  # the JSON metadata of its flags, encoded ahead of the batch

    @property
    def primary(self) -> str:
        """The domain a record refused as a whole, or skipped, is counted under."""
        return self.wanted[0] if self.wanted else FAMILIES[self.prefix][0]

    @property
    def layout(self) -> str:
        return transforms.LAYOUTS.get(self.prefix, "plan")

    @property
    def unchanged(self) -> bool:
        """Moved before with this very value."""
        return self.previous is not None and self.previous.fingerprint == self.fingerprint

    @property
    def transformed(self) -> bool:
        return self.out is not None or self.refusal is not None


def fingerprint(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


_ENCODER = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value) -> str:
    """Compact JSON (one encoder for every call: building one per call costs more than encoding)."""
    return value if isinstance(value, str) else _ENCODER.encode(value)


def classify(
    items: Iterable[tuple[str, str]],
    only: frozenset[str],
    counts: Counts,
    *,
    transformed: bool = False,
    look_up: Callable[[list[str]], Mapping[str, Previous]] | None = None,
) -> list[Record]:
    """Records of known prefixes this run wants, fingerprinted; other keys are counted as skipped.

    Each record is built once (this runs for every key of the store): with `look_up` (the last
    run of each of these keys, one query for the batch) it comes looked up and, when it has
    something to do, transformed and sealed (the load's second thread); with `transformed`,
    transformed (verify, which looks nothing up).
    """
    parsed = []
    for key, raw in items:
        found = parse_key(key)
        if found is None:
            counts.add("other", "read")
            counts.add("other", "skipped")
            continue
        wanted = tuple(d for d in FAMILIES[found.prefix] if d in only)
        if not wanted:
            primary = FAMILIES[found.prefix][0]
            counts.add(primary, "read")
            counts.add(primary, "skipped")
            continue
        refusal = None
        if ("\x00" in key) or (not key.isascii() and not _storable_key(key)):
            # PostgreSQL cannot hold this key: it goes on, escaped, to the quarantine
            key = storable(key)[0]
            refusal = Refusal("bad_key", "the key holds a NUL character or a lone surrogate (shown escaped)")
        parsed.append((key, raw, found.prefix, found.ident, found.user_id, wanted, refusal))
    last = look_up([p[0] for p in parsed]) if look_up is not None and parsed else None
    records = []
    for key, raw, prefix, ident, user_id, wanted, refusal in parsed:
        digest = fingerprint(raw)
        out, sealed, flags_metadata, previous, todo = None, None, None, None, ()
        if last is not None:
            previous = last.get(key)
            todo = _todo(wanted, digest, previous)
            if todo and refusal is None:
                refusal, out = _transform_value(key, raw, prefix, ident, user_id, log_errors=True)
                sealed, flags_metadata = _sealed(out)
        elif transformed and refusal is None:
            refusal, out = _transform_value(key, raw, prefix, ident, user_id, log_errors=False)
        records.append(
            Record(key, raw, prefix, ident, user_id, wanted, digest, refusal, out, sealed, last is not None,
                   previous, todo, flags_metadata)
        )  # fmt: skip
    return records


def _storable_key(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> tuple[str, bool]:
    """`text` as PostgreSQL can store it (NUL and lone surrogates backslash-escaped), and whether it was."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        escaped = True
    else:
        escaped = False
    if "\x00" in text:
        return text.replace("\x00", "\\x00"), True
    return text, escaped


def holds_secrets(prefix: str) -> bool:
    """Records of this family carry OAuth tokens: stored encrypted even when quarantined."""
    return "gmail" in FAMILIES.get(prefix, ())


def with_previous(record: Record, previous: Previous | None) -> Record:
    """The record once its key's last run is known: what is left to do for it, and, when there is
    something, transformed and sealed (one new record for the three steps)."""
    todo = _todo(record.wanted, record.fingerprint, previous)
    refusal, out, sealed, flags_metadata = (
        record.refusal,
        record.out,
        record.sealed_token,
        record.flags_metadata,
    )
    if todo and not record.transformed:
        refusal, out = _transformed(record, log_errors=True)
        sealed, flags_metadata = _sealed(out)
    return Record(
        record.key, record.raw, record.prefix, record.ident, record.user_id, record.wanted,
        record.fingerprint, refusal, out, sealed, True, previous, todo, flags_metadata,
    )  # fmt: skip


def _todo(wanted: tuple[str, ...], digest: str, previous: Previous | None) -> tuple[str, ...]:
    """The wanted domains left to load: all of them unless the last run moved this very value."""
    if previous is None or previous.fingerprint != digest:
        return wanted
    return tuple(d for d in wanted if d not in previous.domains)


def forgetting_previous(record: Record) -> Record:
    """The record as before its look-up (a failed batch is replayed from a fresh look-up)."""
    return replace(record, looked_up=False, previous=None, todo=())


def _transformed(record: Record, *, log_errors: bool) -> tuple[Refusal | None, Transformed | None]:
    """(why not, None) or (None, the rows) for a record."""
    if record.refusal is not None:
        return record.refusal, None
    return _transform_value(
        record.key, record.raw, record.prefix, record.ident, record.user_id, log_errors=log_errors
    )


def _transform_value(
    key: str, raw: str, prefix: str, ident: str, user_id: int | None, *, log_errors: bool
) -> tuple[Refusal | None, Transformed | None]:
    try:
        value = decode_value(raw)
    except DecodeError as exc:
        return Refusal("bad_json", exc.reason), None
    try:
        out = transforms.transform(key, prefix, ident, user_id, value, check_text=may_hold_bad_text(raw))
    except Reject as exc:
        return Refusal(exc.code, exc.detail), None
    except Exception as exc:  # a bug must not stop the run: loud in the quarantine instead
        if log_errors:
            logger.exception("kvmigrate: transform failed on %r", key)
        shown = type(exc).__name__ if holds_secrets(prefix) else f"{type(exc).__name__}: {exc}"
        return Refusal("transform_error", shown[:500]), None
    return None, out


def _sealed(out: Transformed | None) -> tuple[SealedToken | None, str | None]:
    """Serialize (and encrypt) ahead of the transaction what the writes will need: the JSON of
    the account, its history and the subscription (in place: the rows are this record's own),
    the Gmail token (sealed by gmail) and the flags' metadata."""
    if out is None:
        return None, None
    if out.account is not None:
        out.account.metadata = dumps(out.account.metadata)
        for row in out.account.history:
            row.metadata = dumps(row.metadata)
    if out.subscription is not None:
        out.subscription.metadata = dumps(out.subscription.metadata)
    token = None if out.token is None else gmail_services.seal_migrated_token(out.token)
    return token, None if not out.flags else flags_metadata(out)


def flags_metadata(out: Transformed) -> str:
    """The metadata every flag of a record carries: where it came from (and the record's unknown
    fields), as JSON."""
    meta: dict = {"source": "kv", "key": out.key}
    if out.flags_extra:
        meta["extra"] = out.flags_extra
    return dumps(meta)
