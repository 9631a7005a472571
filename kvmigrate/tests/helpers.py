"""Helpers for kvmigrate's command-level tests: run the command, write stores, snapshot PostgreSQL."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from kvmigrate.codec import encode_value

# The contract's Redis database number for this app's core tests (only it is flushed).
REDIS6_URL = os.environ.get("KVMIGRATE_CORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")


def kvmigrate(*args: str) -> tuple[int, str]:
    """Run `manage.py kvmigrate` in-process: (exit code, stdout)."""
    out = io.StringIO()
    try:
        call_command("kvmigrate", *args, stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def write_dump(path: Path, records: dict[str, Any], *, raw: dict[str, str] | None = None) -> Path:
    """A JSON Lines dump: values encoded as the platform stored them, plus `raw` strings as they are."""
    with path.open("w", encoding="utf-8") as fh:
        for key, value in records.items():
            fh.write(json.dumps({"key": key, "value": encode_value(value)}, ensure_ascii=False) + "\n")
        for key, value in (raw or {}).items():
            fh.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
    return path


def write_users_csv(path: Path, ids, *, domain: str = "example.com") -> Path:
    lines = ["id,email,username,created_at"]
    lines += [f"{i},user{i}@{domain},user{i},2024-09-0{1 + i % 9}T00:00:00+00:00" for i in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def table_counts() -> dict[str, int]:
    tables = (
        "users", "user_credits", "credit_transactions", "subscriptions", "gmail_tokens",
        "user_notifications", "kvmigrate_records", "kvmigrate_quarantine", "kvmigrate_runs",
    )  # fmt: skip
    return {t: rows(f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def snapshot() -> dict[str, list]:
    """What a migration decides, without what depends on when it ran (run ids, now())."""
    from gmail.models import GmailToken

    tokens = sorted(
        (t.user_id, t.access_token, t.refresh_token, t.expires_at, t.email, t.display_name, tuple(t.scopes),
         t.status, json.dumps(t.metadata, sort_keys=True), t.created_at, t.updated_at)
        for t in GmailToken.objects.all()
    )  # fmt: skip
    return {
        "users": rows("SELECT id, email, username, firebase_uid FROM users ORDER BY id"),
        "accounts": rows(
            """SELECT user_id, balance, total_purchased, total_used, opening_total_purchased,
                      opening_total_used, is_blocked, monthly_allowance, last_top_up, metadata::text,
                      last_updated, created_at FROM user_credits ORDER BY user_id"""
        ),
        "ledger": rows(
            """SELECT user_id, idempotency_key, amount, type, reason, balance_after, metadata::text,
                      created_at FROM credit_transactions ORDER BY user_id, idempotency_key"""
        ),
        "subscriptions": rows(
            """SELECT user_id, stripe_customer_id, stripe_subscription_id, status, plan_type,
                      current_period_start, current_period_end, cancel_at_period_end, metadata::text
                 FROM subscriptions ORDER BY user_id"""
        ),
        "tokens": tokens,
        "flags": rows(
            "SELECT user_id, kind, notification_id, shown_at, metadata::text FROM user_notifications "
            "ORDER BY 1, 2, 3"
        ),
        "migrated": rows(
            "SELECT key, family, fingerprint, domains, parts, user_id FROM kvmigrate_records ORDER BY key"
        ),
        "quarantine": rows(
            "SELECT key, fingerprint, reason_code, reason, resolved_at IS NULL FROM kvmigrate_quarantine "
            "ORDER BY key"
        ),
    }
