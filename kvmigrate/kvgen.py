"""Realistic KV stores for demos, tests and benchmarks (`manage.py kvgen`).

Generates, user by user and streaming (memory does not grow with `users`), the records the
platform really wrote (layout `real`: `user_credits:`, `user_tokens:`, `firebase_uid:`), or the
migration plan's layout (`plan`: `credits:`, `subscription:`, `gmail:`, `notifications:`, with the
variants it tolerates), or both (`both`: each user in one of the two, at random); values are JSON
twice like the platform's (a few once, which is accepted too). Around them: keys of other
features (to be skipped), and a share of malformed records of every kind kvmigrate must
quarantine (listed, with their kind, in the manifest). Same options and seed, same bytes.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .codec import encode_once, encode_value
from .sources import DumpWriter, Writer, open_writer, store_kind

LAYOUTS = ("real", "plan", "both")

# The platform's operation costs (settings.CREDIT_OPERATION_COSTS) and the debit descriptions.
OPERATIONS = {
    "company_search": (10, "company search"),
    "contact_discovery": (60, "contact discovery"),
    "email_search": (160, "email search"),
    "full_search": (250, "full search"),
    "company_and_contacts": (70, "company and contacts search"),
    "company_contacts_emails": (240, "company, contacts and emails search"),
    "individual_email": (20, "individual email search"),
    "individual_search": (100, "individual search"),
    "search_extension": (110, "search extension"),
}
_OP_NAMES = list(OPERATIONS)
_OP_WEIGHTS = [30, 12, 6, 4, 20, 6, 10, 8, 4]
PLANS = {"ugly-duckling": ("Ugly Duckling", 5000), "duckin-awesome": ("Duckin' Awesome", 15000)}
FREE_CREDITS = 250
EASTER_EGGS = [("5ducks", 1000), ("free palestine", 3000), ("he is risen", 3000)]
# Descriptions of the credit entries kvgen writes; the transforms tell bonus/allowance/purchase by them.
WELCOME = "Welcome bonus - 250 free credits"
ALLOWANCE = "Monthly allowance - {n} credits"
SUBSCRIPTION = "{plan} plan - {n} monthly credits"
EASTER_EGG = "Easter egg: {egg} - {n} bonus credits"
GMAIL_SCOPES = [
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
]
SUB_STATUSES = ["active", "canceled", "past_due", "incomplete", "trialing"]
_SUB_WEIGHTS = [70, 12, 8, 5, 5]

MALFORMED_KINDS = (
    "bad_json",  # not JSON at all, or cut short
    "wrong_types",  # JSON, but a field (or the whole value) of the wrong type
    "non_integer_id",  # a known prefix followed by something that is not a user id
    "missing_gmail_tokens",  # neither an access nor a refresh token
    "negative_balance",  # below zero on an account that is not blocked
    "unknown_user",  # a user id beyond the generated users
)
_KINDS_FOR = {
    "user_credits": ("bad_json", "wrong_types", "non_integer_id", "negative_balance", "unknown_user"),
    "user_tokens": ("bad_json", "wrong_types", "non_integer_id", "missing_gmail_tokens", "unknown_user"),
    "firebase_uid": ("bad_json", "wrong_types", "unknown_user"),
    "credits": ("bad_json", "wrong_types", "non_integer_id", "negative_balance", "unknown_user"),
    "subscription": ("bad_json", "wrong_types", "non_integer_id", "unknown_user"),
    "gmail": ("bad_json", "wrong_types", "non_integer_id", "missing_gmail_tokens", "unknown_user"),
    "notifications": ("bad_json", "wrong_types", "non_integer_id", "unknown_user"),
}

_FIRST = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "edsger",
    "frances",
    "john",
    "radia",
    "tim",
    "sophie",
    "niklaus",
]
_LAST = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "thompson",
    "liskov",
    "ritchie",
    "dijkstra",
    "allen",
    "backus",
    "perlman",
]
_DOMAINS = ["example.com", "example.org", "ducks.test", "mail.test", "startup.example"]
_COMPANIES = ["acme corp", "globex", "initech", "umbrella", "hooli", "müller gmbh", "société générale"]
_DAY = 86_400_000
_EPOCH_START = 1_725_148_800_000  # 2024-09-01, when the platform opened
_SPAN = 400 * _DAY


@dataclass
class GenOptions:
    users: int
    seed: int = 1
    layout: str = "real"
    malformed_share: float = 0.02
    start_id: int = 1
    other_share: float = 0.05  # keys of other features, per user
    once_encoded_share: float = 0.03  # valid records JSON-encoded only once

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError("users must be >= 0")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
        if not 0 <= self.malformed_share <= 1:
            raise ValueError("malformed share must be between 0 and 1")
        if self.start_id < 1:
            raise ValueError("start id must be >= 1")


@dataclass
class GenStats:
    users: int = 0
    keys: int = 0
    records: int = 0  # keys of the known prefixes (valid + malformed)
    valid: int = 0
    other: int = 0  # keys of other features
    once_encoded: int = 0
    by_prefix: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    malformed_keys: list[tuple[str, str]] = field(default_factory=list)  # (key, kind)

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "keys": self.keys,
            "records": self.records,
            "valid": self.valid,
            "other": self.other,
            "once_encoded": self.once_encoded,
            "by_prefix": dict(sorted(self.by_prefix.items())),
            "malformed": dict(sorted(self.malformed.items())),
        }


@dataclass
class UserRow:
    id: int
    email: str
    username: str
    created_at: datetime


class KVGenerator:
    """Yields, per user, the user's row and the (key, raw value) pairs stored for it."""

    def __init__(self, options: GenOptions):
        self.o = options
        self.rng = random.Random(options.seed)
        self.stats = GenStats()
        self._next_unknown = options.start_id + options.users + 100
        self._other_seq = 0

    # --- helpers --------------------------------------------------------------------------
    def _token(self, nbytes: int) -> str:
        raw = self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _alnum(self, n: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self.rng.choices(alphabet, k=n))

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def __iter__(self) -> Iterator[tuple[UserRow, list[tuple[str, str]]]]:
        o = self.o
        for uid in range(o.start_id, o.start_id + o.users):
            yield self._user(uid)

    def _user(self, uid: int) -> tuple[UserRow, list[tuple[str, str]]]:
        rng = self.rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        created = _EPOCH_START + rng.randrange(_SPAN)
        email = f"{first}.{last}{uid}@{rng.choice(_DOMAINS)}"
        username = "" if self._chance(0.05) else f"{first}{last[:1]}{uid}"
        row = UserRow(uid, email, username, datetime.fromtimestamp(created / 1000, UTC))
        profile = {"id": uid, "first": first, "last": last, "email": email, "created": created}
        layout = self.o.layout
        if layout == "both":
            layout = "real" if self._chance(0.5) else "plan"
        records = self._real(profile) if layout == "real" else self._plan(profile)
        items = [self._finish(prefix, key_id, obj, profile) for prefix, key_id, obj in records]
        items.extend(self._others(uid))
        self.stats.users += 1
        self.stats.keys += len(items)
        return row, items

    def _finish(self, prefix: str, key_id: str, obj: Any, profile: dict) -> tuple[str, str]:
        """The stored (key, raw) of one record, corrupted with the malformed share."""
        st = self.stats
        st.records += 1
        st.by_prefix[prefix] += 1
        if self._chance(self.o.malformed_share):
            kind = self.rng.choice(_KINDS_FOR[prefix])
            key, raw = self._corrupt(prefix, key_id, obj, kind, profile)
            st.malformed[kind] += 1
            st.malformed_keys.append((key, kind))
            return key, raw
        st.valid += 1
        if self._chance(self.o.once_encoded_share):
            st.once_encoded += 1
            return f"{prefix}:{key_id}", encode_once(obj)
        return f"{prefix}:{key_id}", encode_value(obj)

    # --- section A: the platform's layout --------------------------------------------------
    def _real(self, p: dict) -> list[tuple[str, str, Any]]:
        out = []
        uid = p["id"]
        if self._chance(0.97):
            out.append(("user_credits", str(uid), self._user_credits(p)))
        if self._chance(0.4):
            out.append(("user_tokens", str(uid), self._user_tokens(p)))
        if self._chance(0.9):
            out.append(("firebase_uid", self._alnum(28), uid))
        return out

    def _user_credits(self, p: dict) -> dict:
        rng = self.rng
        created = p["created"]
        now = created + rng.randrange(1, 300) * _DAY + rng.randrange(_DAY)
        tx: list[dict] = [
            {"type": "credit", "amount": FREE_CREDITS, "description": WELCOME, "timestamp": created}
        ]
        eggs: list[int] = []
        sub: dict = {}
        allowance = FREE_CREDITS
        last_top_up = created
        if self._chance(0.22):
            plan = "ugly-duckling" if self._chance(0.7) else "duckin-awesome"
            status = rng.choices(SUB_STATUSES, _SUB_WEIGHTS)[0]
            start = created + rng.randrange(0, max(1, (now - created) // 2))
            end = start + 30 * _DAY
            sub = {
                "stripeCustomerId": f"cus_{self._alnum(14)}",
                "stripeSubscriptionId": f"sub_{self._alnum(14)}",
                "subscriptionStatus": status,
            }
            if status != "canceled":
                sub["currentPlan"] = plan
            sub["subscriptionStartDate"] = start
            sub["subscriptionEndDate"] = end
            name, credits = PLANS[plan]
            if status in ("active", "trialing", "past_due"):
                allowance = credits
                for month in range(rng.randrange(1, 4)):
                    ts = start + month * 30 * _DAY
                    if ts > now:
                        break
                    desc = SUBSCRIPTION.format(plan=name, n=credits)
                    tx.append({"type": "credit", "amount": credits, "description": desc, "timestamp": ts})
                    last_top_up = ts
        else:
            for month in range(1, rng.randrange(1, 5)):
                ts = created + month * 30 * _DAY
                if ts > now:
                    break
                desc = ALLOWANCE.format(n=FREE_CREDITS)
                tx.append({"type": "credit", "amount": FREE_CREDITS, "description": desc, "timestamp": ts})
                last_top_up = ts
        for index, (egg, amount) in enumerate(EASTER_EGGS):
            if self._chance(0.05):
                eggs.append(index)
                ts = created + rng.randrange(max(1, now - created))
                desc = EASTER_EGG.format(egg=egg, n=amount)
                tx.append({"type": "credit", "amount": amount, "description": desc, "timestamp": ts})
        tx.sort(key=lambda t: t["timestamp"])
        balance = sum(t["amount"] for t in tx)
        goes_negative = self._chance(0.03)
        used = 0
        debits = []
        for _ in range(min(40, int(rng.expovariate(1 / 5)))):
            op = rng.choices(_OP_NAMES, _OP_WEIGHTS)[0]
            debits.append((created + rng.randrange(max(1, now - created)), op))
        debits.sort()
        if goes_negative:
            debits.append((now - rng.randrange(_DAY), "full_search"))
        for ts, op in debits:
            cost, desc = OPERATIONS[op]
            if balance < cost and not goes_negative:
                continue  # the platform refused the search
            entry = {"type": "debit", "amount": cost, "description": desc, "timestamp": ts, "searchType": op}
            entry["success"] = self._chance(0.93)
            tx.append(entry)
            balance -= cost
            used += cost
            if balance < 0:
                break  # the search went through, then the account was blocked
        tx.sort(key=lambda t: t["timestamp"])
        if self._chance(0.1) and len(tx) > 2:
            del tx[: rng.randrange(1, len(tx) - 1)]  # history cut: its sum no longer matches
        roll = rng.random()
        if roll < 0.2:
            tx.reverse()  # code that prepended
        elif roll < 0.3 and len(tx) > 3:
            i = rng.randrange(len(tx) - 1)
            tx[i], tx[i + 1] = tx[i + 1], tx[i]
        record: dict[str, Any] = {"currentBalance": balance}
        if self._chance(0.95):
            record["lastTopUp"] = last_top_up
        record["totalUsed"] = used
        record["isBlocked"] = balance < 0
        if self._chance(0.95):
            record["monthlyAllowance"] = allowance
        record["createdAt"] = created
        record["updatedAt"] = max([t["timestamp"] for t in tx] + [created])
        record["transactions"] = tx
        if self._chance(0.7):
            record["notifications"] = self._flags(rng.sample(range(1, 5), rng.randrange(1, 5)))
        if self._chance(0.8):
            record["badges"] = [1] if self._chance(0.9) else []
        if eggs:
            record["easterEggs"] = self._flags(eggs)
        record.update(sub)
        if self._chance(0.1):
            record["referralCode"] = f"DUCK-{self._alnum(6).upper()}"
            record["preferences"] = {"emailDigest": self._chance(0.5), "theme": rng.choice(["light", "dark"])}
        return record

    def _flags(self, shown: list[int]) -> list[int | None]:
        """A JS flag array: `arr[i] = 1` on an empty array leaves nulls before i (sometimes 0s)."""
        flags: list[int | None] = [None] * (max(shown) + 1)
        for i in shown:
            flags[i] = 1
        if self._chance(0.05):
            flags = [0 if f is None else f for f in flags]
        return flags

    def _user_tokens(self, p: dict) -> dict:
        rng = self.rng
        created = p["created"] + rng.randrange(60 * _DAY)
        updated = created + rng.randrange(120 * _DAY)
        record: dict[str, Any] = {}
        if self._chance(0.97):
            record["gmailAccessToken"] = f"ya29.a0Af{self._token(96)}"
        if self._chance(0.85) or "gmailAccessToken" not in record:
            record["gmailRefreshToken"] = f"1//0g{self._token(72)}"
        record["tokenExpiry"] = updated + 3_600_000
        record["scopes"] = list(GMAIL_SCOPES if self._chance(0.9) else GMAIL_SCOPES[:1])
        record["createdAt"] = created
        record["updatedAt"] = updated
        if self._chance(0.9):
            record["gmailEmail"] = (
                p["email"] if self._chance(0.5) else f"{p['first']}.{p['last']}.{p['id']}@gmail.com"
            )
        if self._chance(0.9):
            record["gmailDisplayName"] = f"{p['first'].title()} {p['last'].title()}"
        return record

    # --- section B: the migration plan's layout --------------------------------------------
    def _plan(self, p: dict) -> list[tuple[str, str, Any]]:
        uid = str(p["id"])
        out = [("credits", uid, self._plan_credits(p))]
        if self._chance(0.3):
            out.append(("subscription", uid, self._plan_subscription(p)))
        if self._chance(0.4):
            out.append(("gmail", uid, self._plan_gmail(p)))
        if self._chance(0.6):
            out.append(("notifications", uid, self._plan_notifications()))
        return out

    def _stamp(self, ms: int, style: str) -> int | str:
        if style == "s":
            return ms // 1000
        if style == "iso":
            return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        return ms

    def _plan_credits(self, p: dict) -> dict:
        rng = self.rng
        style = rng.choices(["ms", "s", "iso"], [6, 2, 2])[0]
        as_str = self._chance(0.08)
        negative_deductions = self._chance(0.5)
        created = p["created"]
        tx = [{"type": "bonus", "amount": FREE_CREDITS, "description": WELCOME, "timestamp": created}]
        purchased = 0
        balance = FREE_CREDITS
        used = 0
        ts = created
        for _ in range(int(rng.expovariate(1 / 5))):
            ts += rng.randrange(1, 20) * _DAY // 4
            kind = rng.choices(["purchase", "deduction", "refund", "bonus"], [2, 8, 1, 1])[0]
            if kind == "deduction":
                op = rng.choices(_OP_NAMES, _OP_WEIGHTS)[0]
                cost, desc = OPERATIONS[op]
                if balance < cost:
                    continue
                balance -= cost
                used += cost
                amount = -cost if negative_deductions else cost
            elif kind == "purchase":
                amount = rng.choice([1000, 5000, 15000])
                desc = f"Purchased {amount} credits"
                purchased += amount
                balance += amount
            elif kind == "refund":
                amount = rng.choice([10, 60, 70])
                desc = "Refund for a failed search"
                balance += amount
            else:
                amount = 1000
                desc = EASTER_EGG.format(egg="5ducks", n=amount)
                balance += amount
            tx.append({"type": kind, "amount": amount, "description": desc, "timestamp": ts})
        for t in tx:
            t["timestamp"] = self._stamp(t["timestamp"], style)
            if as_str:
                t["amount"] = str(t["amount"])
        record: dict[str, Any] = {
            "currentBalance": balance,
            "totalPurchased": purchased,
            "totalUsed": used,
            "lastUpdated": self._stamp(ts, style),
            "transactions": tx,
        }
        if as_str:
            for name in ("currentBalance", "totalPurchased", "totalUsed"):
                record[name] = str(record[name])
        if self._chance(0.1):
            record["source"] = "migration-plan-v1"
        return record

    def _plan_subscription(self, p: dict) -> dict:
        rng = self.rng
        style = rng.choices(["s", "ms", "iso"], [6, 2, 2])[0]
        start = p["created"] + rng.randrange(90 * _DAY)
        plan = rng.choices(["ugly-duckling", "duckin-awesome", "pond-pro"], [70, 25, 5])[0]
        status = rng.choices(
            ["active", "canceled", "cancelled", "past_due", "incomplete", "trialing"], [60, 8, 8, 10, 7, 7]
        )[0]
        record: dict[str, Any] = {
            "stripeCustomerId": f"cus_{self._alnum(14)}",
            "stripeSubscriptionId": f"sub_{self._alnum(14)}",
            "status": status,
            "planType": plan,
            "currentPeriodStart": self._stamp(start, style),
            "currentPeriodEnd": self._stamp(start + 30 * _DAY, style),
            "cancelAtPeriodEnd": status in ("canceled", "cancelled") or self._chance(0.05),
        }
        if self._chance(0.1):
            record["currentPeriodEnd"] = str(record["currentPeriodEnd"])
        if self._chance(0.2):
            del record["cancelAtPeriodEnd"]
        return record

    def _plan_gmail(self, p: dict) -> dict:
        record: dict[str, Any] = {}
        if self._chance(0.95):
            record["accessToken"] = f"ya29.a0Af{self._token(96)}"
        if self._chance(0.9) or "accessToken" not in record:
            record["refreshToken"] = f"1//0g{self._token(72)}"
        record["expiresAt"] = self._stamp(p["created"] + 3_600_000, self.rng.choice(["ms", "s", "iso"]))
        if self._chance(0.95):
            record["email"] = f"{p['first']}.{p['last']}.{p['id']}@gmail.com"
        record["scope"] = " ".join(GMAIL_SCOPES) if self._chance(0.5) else list(GMAIL_SCOPES)
        return record

    def _plan_notifications(self) -> Any:
        shown = sorted(self.rng.sample(range(1, 5), self.rng.randrange(0, 5)))
        if self._chance(0.05):
            shown = [str(i) for i in shown]
        return shown if self._chance(0.3) else {"shownNotifications": shown}

    # --- malformed records -----------------------------------------------------------------
    def _corrupt(self, prefix: str, key_id: str, obj: Any, kind: str, p: dict) -> tuple[str, str]:
        rng = self.rng
        key = f"{prefix}:{key_id}"
        if kind == "bad_json":
            good = encode_value(obj)
            variants = [
                good[: max(2, len(good) // 2)],  # cut short: an unterminated string
                '"[object Object]"',  # JSON.stringify(String(record))
                "undefined",
                "{currentBalance: 5, 'isBlocked': false}",
            ]
            if isinstance(obj, (dict, list)):
                variants.append(encode_once(encode_once(obj)[:-1]))  # valid outside, cut short inside
            return key, rng.choice(variants)
        if kind == "non_integer_id":
            uid = p["id"]
            arabic = str(uid).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
            ident = rng.choice(
                [
                    f"{uid}abc",
                    f"u{uid}",
                    f"{uid}.5",
                    f"-{uid}",
                    f" {uid}",
                    f"{uid}\n",
                    f"{uid}/profile",
                    arabic,
                ]
            )
            return f"{prefix}:{ident}", encode_value(obj)
        if kind == "unknown_user":
            unknown = self._next_unknown
            self._next_unknown += 1
            if prefix == "firebase_uid":
                return key, encode_value(unknown)
            return f"{prefix}:{unknown}", encode_value(obj)
        if kind == "missing_gmail_tokens":
            bad = {
                k: v
                for k, v in obj.items()
                if k not in ("gmailAccessToken", "gmailRefreshToken", "accessToken", "refreshToken")
            }
            return key, encode_value(bad)
        if kind == "negative_balance":
            bad = dict(obj)
            bad["currentBalance"] = -rng.randrange(1, 500)
            if prefix == "user_credits":
                bad["isBlocked"] = False
            return key, encode_value(bad)
        return key, encode_value(self._wrong_types(prefix, obj))

    def _wrong_types(self, prefix: str, obj: Any) -> Any:
        rng = self.rng
        if prefix == "firebase_uid":
            return rng.choice(["not-a-number", {"userId": obj}, True, 7.5, None])
        if isinstance(obj, list):
            return rng.choice([["seen", "twice"], "1,2", 3])
        if rng.random() < 0.15:  # the whole value of the wrong type (a list is a valid notifications value)
            return rng.choice([42, "a string", None] if prefix == "notifications" else [[1, 2, 3], 42, None])
        bad = dict(obj)
        choices = {
            "user_credits": [
                ("currentBalance", "lots"),
                ("transactions", {"0": "x"}),
                ("isBlocked", "no"),
                ("transactions", [{"type": "debit", "amount": "ten", "description": "x", "timestamp": 1}]),
            ],
            "user_tokens": [("gmailAccessToken", 12345), ("scopes", 7), ("tokenExpiry", "tomorrow")],
            "credits": [("currentBalance", "abc"), ("transactions", "none"), ("totalUsed", [1])],
            "subscription": [("status", 42), ("currentPeriodEnd", "next month"), ("planType", ["a"])],
            "gmail": [("scope", 5), ("accessToken", ["a"]), ("expiresAt", "soon")],
            "notifications": [("shownNotifications", "1,2"), ("shownNotifications", {"a": 1})],
        }[prefix]
        name, value = rng.choice(choices)
        bad[name] = value
        return bad

    # --- keys of other features ------------------------------------------------------------
    def _others(self, uid: int) -> list[tuple[str, str]]:
        out = []
        rng = self.rng
        while self._chance(self.o.other_share):
            self._other_seq += 1
            n = self._other_seq
            key = rng.choice(
                [
                    f"session:{self._token(12)}",
                    f"cache:search/{rng.choice(_COMPANIES)} {n}/page 1",
                    f"cache:note\n{uid}-{n}",
                    f"cache:café/ünïcode/{n} 🦆",
                    f"ratelimit:10.0.{n % 256}.{n // 256 % 256}-{n}",
                    f"User_credits:{uid}-{n}",
                    f"user_credits_backup:{uid}-{n}",
                    f"usercredits:{uid}-{n}",
                    f"stats:daily:{n}",
                ]
            )
            value = rng.choice(
                [
                    encode_value({"hits": n, "at": _EPOCH_START + n}),
                    encode_value(["a", "b", n]),
                    "plain text, not JSON",
                    encode_value(n),
                ]
            )
            out.append((key, value))
            self.stats.other += 1
        return out


def _csv_row(row: UserRow) -> list[Any]:
    return [row.id, row.email, row.username, row.created_at.isoformat()]


def generate(
    options: GenOptions,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    users_out: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    batch_size: int = 1000,
    progress=None,
) -> GenStats:
    """Write a generated store to `out` (a dump path, a Replit DB URL or a redis:// URL).

    `users_out` gets the users' CSV export (id,email,username,created_at), `manifest` a JSON file
    with the counts and every malformed key with its kind. `progress(n)` is called per batch.
    """
    gen = KVGenerator(options)
    spec = os.fspath(out)
    writer: Writer = open_writer(spec, format=format) if store_kind(spec) == "dump" else open_writer(spec)
    users_fh = open(users_out, "w", newline="", encoding="utf-8") if users_out else None  # noqa: SIM115
    ok = False
    try:
        users_csv = csv.writer(users_fh) if users_fh else None
        if users_csv:
            users_csv.writerow(["id", "email", "username", "created_at"])
        batch: list[tuple[str, str]] = []
        for row, items in gen:
            if users_csv:
                users_csv.writerow(_csv_row(row))
            batch.extend(items)
            if len(batch) >= batch_size:
                writer.set_many(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            writer.set_many(batch)
            if progress:
                progress(len(batch))
        ok = True
    finally:
        if users_fh:
            users_fh.close()
        if isinstance(writer, DumpWriter) and not ok:
            writer.abort()
        else:
            writer.close()
    if manifest:
        data = gen.stats.as_dict()
        data["options"] = vars(options)
        data["malformed_keys"] = [{"key": k, "kind": kind} for k, kind in gen.stats.malformed_keys]
        Path(manifest).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return gen.stats
