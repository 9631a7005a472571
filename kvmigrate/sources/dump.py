"""Dump files: a JSON object `{key: value}` or JSON Lines `{"key": ..., "value": ...}` (optionally .gz).

A JSON Lines dump may carry bytes that are not UTF-8 as base64 (`"key_b64"` instead of `"key"`,
`"value_b64"` instead of `"value"`) and end with a closing line `{"kvbackup": 1, "count": ...,
"sha256": ...}`: that is a verbatim backup (`manage.py kvbackup`, kvmigrate/backup.py), readable
as a source like any dump. The closing line is kept in `DumpSource.closing`, not yielded.

Both are read incrementally, so memory stays bounded by the largest record, not the file. A value
may be the raw stored string (JSON twice, as `GET` returns it) or already-decoded JSON; the source
always yields a string the codec decodes (a non-string value is JSON-encoded once).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .base import Counters, Item, RawItem, Source, SourceError, Writer

FORMATS = ("json", "jsonl")
_WS = " \t\n\r"
# A record may hold a 5 MB value, JSON-escaped once more in the dump: anything beyond this is
# a corrupt file (an unterminated string), not a record.
MAX_RECORD_CHARS = 32 * 1024 * 1024
CLOSING = "kvbackup"  # the field that marks a backup's closing line
_RECORD_FIELDS = {"key", "value", "key_b64", "value_b64"}


def _open_binary(path: Path) -> IO[bytes]:
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if fh.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def _raw_form(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DumpSource(Source):
    """Reads a dump file; `format` is detected (first line a `{"key": ..}` object -> JSON Lines).

    `strict=False` skips JSON Lines that cannot be parsed (counted as `bad_lines`, their line
    numbers kept in `bad_line_numbers`) instead of failing: such a line has no key to quarantine.
    Counters: read, bad_lines, duplicates_in_batch.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        prefix: str = "",
        strict: bool = True,
        chunk_chars: int = 1 << 16,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"no dump file at {self.path}")
        if format is not None and format not in FORMATS:
            raise SourceError(f"unknown dump format {format!r}: use one of {', '.join(FORMATS)}")
        self.prefix = prefix
        self.strict = strict
        self.chunk_chars = chunk_chars
        self.counters = Counters("read", "bad_lines", "duplicates")
        self.bad_line_numbers: list[int] = []
        # What the run reports about the file itself: a key seen before ({"key", "line", "reason"}).
        self.problems: list[dict] = []
        self._line = 0  # the line (JSON Lines) or member (JSON object) of the last record read
        self.closing: dict | None = None  # a backup's closing line, once read
        self.format = format or self._detect()

    def describe(self) -> str:
        return f"dump file {self.path} ({self.format})"

    def _text(self) -> IO[str]:
        return io.TextIOWrapper(_open_binary(self.path), encoding="utf-8-sig", newline="")

    def _detect(self) -> str:
        """JSON Lines when the first non-blank line is a whole `{"key": str, ...}` object."""
        if self.path.name.lower().endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
            return "jsonl"
        with _open_binary(self.path) as fh:
            while raw := fh.readline(MAX_RECORD_CHARS + 1):
                line = raw.removeprefix(b"\xef\xbb\xbf").strip()
                if not line:
                    continue
                if len(raw) > MAX_RECORD_CHARS:
                    return "json"  # one huge line: a JSON object written without newlines
                if not line.startswith(b"{"):
                    raise SourceError(f"{self.path} is neither a JSON object nor JSON Lines")
                try:
                    text = line.decode("utf-8-sig")
                    try:
                        first = json.loads(text)
                    except RecursionError:
                        first = _members_of_deep_line(text, self.path)
                except (ValueError, UnicodeDecodeError):
                    return "json"  # only the start of a (multi-line) JSON object
                if isinstance(first, dict) and (
                    (isinstance(first.get("key", first.get("key_b64")), str) and set(first) <= _RECORD_FIELDS)
                    or CLOSING in first
                ):
                    return "jsonl"
                return "json"
        return "jsonl"  # an empty file: no records either way

    def iter_records(self) -> Iterator[Item]:
        """Every (key, raw value), one at a time, in file order.

        A key seen earlier in the file is reported in `problems` with its line (the later value
        is the one loaded, as the store would hold it): a 64-bit hash per key is remembered.
        """
        records = self._iter_jsonl(raw=False) if self.format == "jsonl" else self._iter_object()
        prefix = self.prefix
        seen: set[int] = set()
        for key, value in records:
            if prefix and not key.startswith(prefix):
                continue
            self.counters.add("read")
            digest = hash(key)
            if digest in seen:
                self.counters.add("duplicates")
                if len(self.problems) < 1000:
                    where = "line" if self.format == "jsonl" else "member"
                    self.problems.append(
                        {
                            "key": _shown_key(key),
                            where: self._line,
                            "reason": f"duplicate key: also earlier in the file; the value at {where} "
                            f"{self._line} is the one loaded",
                        }
                    )
            else:
                seen.add(digest)
            yield key, value

    def iter_raw_records(self) -> Iterator[RawItem]:
        """Every (key, value) as bytes, base64 fields decoded: what the store held, byte for byte."""
        if self.format == "jsonl":
            records = self._iter_jsonl(raw=True)
        else:
            records = (
                (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                for k, v in self._iter_object()
            )
        prefix = self.prefix.encode("utf-8")
        for key, value in records:
            if prefix and not key.startswith(prefix):
                continue
            self.counters.add("read")
            yield key, value

    def iter_raw_batches(self, batch_size: int = 500) -> Iterator[list[RawItem]]:
        return _batched(self.iter_raw_records(), batch_size)

    def iter_batches(self, batch_size: int = 500) -> Iterator[list[Item]]:
        return _batched(self.iter_records(), batch_size)

    def count_estimate(self) -> int | None:
        """File size / average record size over the first 256 KB (None for compressed files)."""
        with _open_binary(self.path) as fh:
            if isinstance(fh, gzip.GzipFile):
                return None
        size = self.path.stat().st_size
        if size == 0:
            return 0
        sample = min(size, 256 * 1024)
        seen = 0
        consumed = 0
        if self.format == "jsonl":
            with open(self.path, "rb") as fh:
                for line in fh:
                    consumed += len(line)
                    seen += bool(line.strip())
                    if consumed >= sample:
                        break
        else:
            parser = _ObjectParser(self._text(), self.path, self.chunk_chars)
            try:
                for _ in parser:
                    seen += 1
                    if parser.consumed >= sample:
                        break
                consumed = max(parser.consumed, 1)
            finally:
                parser.close()
            # characters, not bytes: close enough for an estimate
        if not seen:
            return 0
        return round(size * seen / max(consumed, 1))

    def _iter_jsonl(self, *, raw: bool) -> Iterator:
        with _open_binary(self.path) as fh:
            for number, line in enumerate(_lines(fh, limit=MAX_RECORD_CHARS), start=1):
                if not line.strip():
                    continue
                self._line = number
                try:
                    text = line.decode("utf-8-sig" if number == 1 else "utf-8")
                    try:
                        record = json.loads(text)
                    except RecursionError:
                        record = _members_of_deep_line(text, self.path)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    if self.closing is not None:
                        raise ValueError("a line after the backup's closing line")
                    if CLOSING in record and "key" not in record and "key_b64" not in record:
                        self.closing = record
                        continue
                    item = _raw_record(record) if raw else self._text_record(record)
                except (ValueError, KeyError, UnicodeDecodeError, binascii.Error) as exc:
                    reason = f"missing {exc}" if isinstance(exc, KeyError) else _reason(exc)
                    if self.strict:
                        raise SourceError(f"{self.path}, line {number}: {reason}") from None
                    self.counters.add("bad_lines")
                    if len(self.bad_line_numbers) < 1000:
                        self.bad_line_numbers.append(number)
                    continue
                yield item

    def _text_record(self, record: dict) -> Item:
        if "key_b64" in record or "value_b64" in record:
            key, value = _raw_record(record)
            try:
                return key.decode("utf-8"), value.decode("utf-8")
            except UnicodeDecodeError:
                # Visible, not silently replaced: the codec then rejects the value as bad JSON.
                self.counters.add("invalid_utf8")
                return key.decode("utf-8", "backslashreplace"), value.decode("utf-8", "backslashreplace")
        key = record["key"]
        if not isinstance(key, str):
            raise ValueError('"key" is not a string')
        return key, _raw_form(record["value"])

    def _iter_object(self) -> Iterator[Item]:
        parser = _ObjectParser(self._text(), self.path, self.chunk_chars)
        try:
            for number, item in enumerate(parser, start=1):
                self._line = number
                yield item
        finally:
            parser.close()


def _shown_key(key: str) -> str:
    """A key as a report can show it: NUL and lone surrogates backslash-escaped."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _members_of_deep_line(text: str, path: Path) -> dict:
    """A line too deeply nested for `json.loads`: its members, the deep value kept as JSON text
    (so the record reaches the loader, which quarantines it under its key as `bad_json`)."""
    parser = _ObjectParser(io.StringIO(text), path, max(len(text), 1))
    try:
        return dict(parser)
    except SourceError as exc:
        raise ValueError(f"nested too deeply ({exc})") from None


def _batched(records: Iterable[tuple], batch_size: int) -> Iterator[list]:
    batch: dict = {}
    for key, value in records:
        batch[key] = value  # a key repeated in the file: the later value wins, as on load
        if len(batch) >= batch_size:
            yield list(batch.items())
            batch = {}
    if batch:
        yield list(batch.items())


def _b64(record: dict, field: str) -> bytes:
    value = record[field]
    if not isinstance(value, str):
        raise ValueError(f'"{field}" is not a string')
    return base64.b64decode(value, validate=True)


def _raw_record(record: dict) -> RawItem:
    """(key, value) bytes of a JSON Lines record; `*_b64` fields carry bytes that are not UTF-8."""
    if "key_b64" in record:
        key = _b64(record, "key_b64")
    else:
        if not isinstance(record["key"], str):
            raise ValueError('"key" is not a string')
        key = record["key"].encode("utf-8", "surrogatepass")
    if "value_b64" in record:
        value = _b64(record, "value_b64")
    else:
        value = _raw_form(record["value"]).encode("utf-8", "surrogatepass")
    return key, value


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, binascii.Error):
        return "invalid base64"
    return str(exc)


def _lines(fh: IO[bytes], *, limit: int) -> Iterator[bytes]:
    """Lines split on b"\\n" only (a JSON string cannot hold a raw newline), each bounded."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            raise SourceError(f"a line longer than {limit} bytes: not a dump of this store")
        yield line


class _ObjectParser:
    """Streams the members of one big JSON object with `raw_decode` over a sliding buffer."""

    def __init__(self, fh: IO[str], path: Path, chunk_chars: int):
        self.fh = fh
        self.path = path
        self.chunk = chunk_chars
        self.buf = ""
        self.pos = 0
        self.base = 0  # characters dropped from the front of the buffer
        self.eof = False
        self.decoder = json.JSONDecoder()

    @property
    def consumed(self) -> int:
        return self.base + self.pos

    def close(self) -> None:
        self.fh.close()

    def _fill(self, want: int | None = None) -> bool:
        """Append at least `want` more characters (or to EOF); False when nothing is left."""
        if self.eof:
            return False
        if self.pos:
            self.base += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            data = self.fh.read(max(self.chunk, want or 0))
        except UnicodeDecodeError:
            raise self._error("bytes that are not UTF-8") from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _error(self, what: str) -> SourceError:
        return SourceError(f"{self.path}: {what} at character {self.consumed}")

    def _next_char(self) -> str:
        """The next non-blank character, not consumed; '' at the end of the file."""
        while True:
            buf, pos = self.buf, self.pos
            n = len(buf)
            while pos < n and buf[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < n:
                return buf[pos]
            if not self._fill():
                return ""

    def _skip_value(self) -> str:
        """The text of the array or object at `pos` (too deep for the decoder), consumed.

        Brackets are counted outside strings; the value is handed on as its JSON text, which the
        codec then refuses as nested too deeply: the record is quarantined, the run goes on.
        """
        start_char = self.buf[self.pos] if self.pos < len(self.buf) else ""
        if start_char not in "[{":
            raise self._error("a value nested too deeply")
        depth, in_string, escaped, offset = 0, False, False, 0
        while True:
            buf, base = self.buf, self.pos
            for i in range(base + offset, len(buf)):
                c = buf[i]
                if in_string:
                    if escaped:
                        escaped = False
                    elif c == "\\":
                        escaped = True
                    elif c == '"':
                        in_string = False
                elif c == '"':
                    in_string = True
                elif c in "[{":
                    depth += 1
                elif c in "]}":
                    depth -= 1
                    if depth == 0:
                        self.pos = i + 1
                        return buf[base : i + 1]
            offset = len(buf) - base
            if offset > MAX_RECORD_CHARS:
                raise self._error("a record larger than 32 MB (or an unterminated string)")
            if not self._fill(want=offset):
                raise self._error("unexpected end of file inside a deeply nested value")

    def _decode(self) -> tuple[Any, int]:
        """The JSON value at `pos` and where it starts; reads more until it is complete."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except RecursionError:
                start = self.pos
                return self._skip_value(), start
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise self._error(f"invalid JSON ({exc.msg})") from None
                if len(self.buf) - self.pos > MAX_RECORD_CHARS:
                    raise self._error("a record larger than 32 MB (or an unterminated string)") from None
                self._fill(want=len(self.buf) - self.pos)  # grow geometrically: linear total work
                continue
            # A number may continue in the next chunk: accept a value only with something after it.
            if end >= len(self.buf) and not self.eof:
                self._fill(want=len(self.buf) - self.pos)
                continue
            start = self.pos
            self.pos = end
            return value, start

    def __iter__(self) -> Iterator[Item]:
        if self._next_char() != "{":
            raise self._error("expected a JSON object")
        self.pos += 1
        if self._next_char() == "}":
            self.pos += 1
        else:
            while True:
                if self._next_char() != '"':
                    raise self._error("expected a string key")
                key, _ = self._decode()
                if self._next_char() != ":":
                    raise self._error("expected ':' after a key")
                self.pos += 1
                if not self._next_char():
                    raise self._error("unexpected end of file")
                value, _ = self._decode()
                yield key, _raw_form(value)
                sep = self._next_char()
                self.pos += 1
                if sep == "}":
                    break
                if sep != ",":
                    raise self._error("expected ',' or '}'")
        if self._next_char():
            raise self._error("data after the end of the JSON object")


class DumpWriter(Writer):
    """Writes a dump: JSON Lines `{"key": k, "value": raw}` (default) or one JSON object.

    Values are written as given (raw stored strings). The file appears complete or not at all:
    it is written next to its destination and renamed on `close()`; `abort()` drops it.
    """

    def __init__(self, path: str | os.PathLike, *, format: str | None = None):
        self.path = Path(path)
        if format is None:
            format = "json" if self.path.suffix.lower() in (".json",) else "jsonl"
        if format not in FORMATS:
            raise SourceError(f"unknown dump format {format!r}: use one of {', '.join(FORMATS)}")
        self.format = format
        if not self.path.parent.is_dir():
            raise SourceError(f"no folder {self.path.parent} for the dump file")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb") if self.path.suffix == ".gz" else raw
        self._raw = raw
        self._fh = io.TextIOWrapper(stream, encoding="utf-8", newline="\n", write_through=False)
        self.count = 0
        self._closed = False
        if self.format == "json":
            self._fh.write("{")

    def describe(self) -> str:
        return f"dump file {self.path} ({self.format})"

    def set_many(self, items: Iterable[Item]) -> int:
        fh = self._fh
        n = 0
        for key, value in items:
            if not isinstance(key, str | bytes) or not isinstance(value, str | bytes):
                raise SourceError("DumpWriter writes (str key, str raw value) pairs; encode values first")
            if self.format == "jsonl":
                fh.write(json.dumps(_jsonl_record(key, value), ensure_ascii=False))
                fh.write("\n")
            elif isinstance(key, bytes) or isinstance(value, bytes):
                raise SourceError("bytes are written to JSON Lines dumps only (key_b64/value_b64)")
            else:
                fh.write("\n" if self.count == 0 else ",\n")
                fh.write(json.dumps(key, ensure_ascii=False))
                fh.write(": ")
                fh.write(json.dumps(value, ensure_ascii=False))
            self.count += 1
            n += 1
        return n

    def write_closing(self, record: dict) -> None:
        """A JSON Lines dump's closing line (a backup's count and checksum), written last."""
        if self.format != "jsonl" or CLOSING not in record:
            raise SourceError(f"a closing line goes in a JSON Lines dump and has a {CLOSING!r} field")
        self._fh.write(json.dumps(record, ensure_ascii=False))
        self._fh.write("\n")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.format == "json":
            self._fh.write("\n}\n" if self.count else "}\n")
        self._fh.close()
        if not self._raw.closed:
            self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the half-written file."""
        if self._closed:
            return
        self._closed = True
        self._fh.close()
        if not self._raw.closed:
            self._raw.close()
        self._tmp.unlink(missing_ok=True)

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _jsonl_record(key: str | bytes, value: str | bytes) -> dict:
    """`{"key", "value"}`, with `key_b64`/`value_b64` for bytes that are not UTF-8."""
    record: dict = {}
    for name, data in (("key", key), ("value", value)):
        if isinstance(data, bytes):
            try:
                record[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                record[f"{name}_b64"] = base64.b64encode(data).decode("ascii")
        else:
            record[name] = data
    return record
