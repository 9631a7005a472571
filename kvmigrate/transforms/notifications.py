"""Notification, badge and easter-egg flags: the real layout's arrays and the plan's id lists."""

from __future__ import annotations

from typing import Any

from .base import FlagRow, Reject, parse_int, wrong_type

# Real layout: array field -> kind. `array[i] === 1` means flag i is set.
ARRAYS = (("notifications", "notification"), ("badges", "badge"), ("easterEggs", "easter_egg"))
ARRAY_FIELDS = tuple(name for name, _ in ARRAYS)
FLAG_ID_MAX = 2**31 - 1


def _is_set(value: Any, path: str) -> bool:
    # The platform wrote 1 (set) and left null holes; 0/false/true are read the way JS code
    # testing `=== 1` or truthiness would agree on.
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    raise wrong_type(path, value, "1, 0 or null")


def flags_from_arrays(record: dict) -> tuple[list[FlagRow] | None, dict]:
    """The flags the real layout's arrays set, and the arrays as they were (for reverse).

    Returns (None, {}) when the record has none of the arrays: it says nothing about flags.
    """
    rows: list[FlagRow] = []
    originals: dict[str, Any] = {}
    for name, kind in ARRAYS:
        if name not in record:
            continue
        array = record[name]
        originals[name] = array
        if array is None:
            continue
        if not isinstance(array, list):
            raise wrong_type(name, array, "an array")
        if len(array) > FLAG_ID_MAX:
            raise Reject(f"out_of_range:{name}", f"{name} has {len(array)} entries")
        for index, value in enumerate(array):
            if _is_set(value, f"{name}[{index}]"):
                rows.append(FlagRow(kind, index))
    if not originals:
        return None, {}
    return rows, originals


def flags_from_plan(value: Any) -> tuple[list[FlagRow], dict]:
    """`{"shownNotifications": [ids]}` or a bare list of ids -> (rows, unknown extra fields)."""
    extra: dict = {}
    if isinstance(value, dict):
        if "shownNotifications" not in value:
            raise Reject("missing:shownNotifications", "shownNotifications is required")
        ids = value["shownNotifications"]
        extra = {k: v for k, v in value.items() if k != "shownNotifications"}
        path = "shownNotifications"
    elif isinstance(value, list):
        ids, path = value, "value"
    else:
        raise Reject("not_an_object", "the value must be an object or a list of ids")
    if ids is None:
        ids = []
    if not isinstance(ids, list):
        raise wrong_type(path, ids, "an array of ids")
    seen: set[int] = set()
    rows = []
    for index, item in enumerate(ids):
        flag_id = parse_int(item, f"{path}[{index}]", lo=0, hi=FLAG_ID_MAX)
        if flag_id not in seen:
            seen.add(flag_id)
            rows.append(FlagRow("notification", flag_id))
    return rows, extra
