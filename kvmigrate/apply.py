"""Apply: carry out one batch's plan, in the caller's transaction.

Each domain's rows go through that domain's own load service (bulk: COPY or one multi-row upsert
per table); kvmigrate writes only its own tables (the fingerprints, the quarantine).
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from accounts import services as account_services
from accounts.models import User
from billing import services as billing_services
from billing.models import Subscription
from credits import services as credit_services
from credits.models import CreditAccount, CreditTransaction
from fivedocks import bulk
from gmail import services as gmail_services
from gmail.models import GmailToken
from notifications import services as notification_services
from notifications.models import UserNotification

from .models import MigratedRecord, QuarantinedRecord
from .plan import Plan

_RECORDS = MigratedRecord._meta.db_table
_QUARANTINE = QuarantinedRecord._meta.db_table
# Every table a load writes (or reads back per batch): `services.analyze_targets` analyzes them.
TARGET_TABLES = tuple(
    model._meta.db_table
    for model in (
        User, CreditAccount, CreditTransaction, Subscription, GmailToken, UserNotification, MigratedRecord,
        QuarantinedRecord,
    )
)  # fmt: skip
_MIGRATED_COLUMNS = ("key", "family", "fingerprint", "domains", "parts", "user_id", "run_id", "updated_at")


def apply(plan: Plan, *, run_id: int | None) -> None:
    if plan.forget_keys:
        MigratedRecord.objects.filter(key__in=plan.forget_keys).delete()
    account_services.load_migrated_firebase_uids(uids=plan.firebase_uids)
    if plan.accounts:
        credit_services.load_migrated_accounts(records=plan.accounts)
    billing_services.load_migrated_subscriptions(
        subscriptions=plan.subscriptions, existing=plan.subscription_users
    )
    gmail_services.load_migrated_tokens(tokens=plan.tokens, existing=plan.token_users)
    if plan.flags:
        notification_services.load_migrated_flags(flags=plan.flags, existing=plan.existing_flags)
    _write_migrated(plan, run_id)
    _write_quarantine(plan, run_id)
    if plan.resolve_keys:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_QUARANTINE} SET resolved_at = now() WHERE key = ANY(%s) AND resolved_at IS NULL",  # noqa: S608
                [list(plan.resolve_keys)],
            )


def _write_migrated(plan: Plan, run_id: int | None) -> None:
    now = timezone.now()
    rows = [
        (m.key, m.family, m.fingerprint, bulk.array_literal(m.domains), bulk.array_literal(m.parts),
         m.user_id, run_id, now)
        for m in plan.migrated
    ]  # fmt: skip
    bulk.upsert_rows(_RECORDS, _MIGRATED_COLUMNS, rows, existing=[m.key for m in plan.migrated if m.exists])


def _write_quarantine(plan: Plan, run_id: int | None) -> None:
    if not plan.quarantine:
        return
    now = timezone.now()
    QuarantinedRecord.objects.bulk_create(
        [
            QuarantinedRecord(
                run_id=run_id,
                key=q.key,
                raw_value=q.raw_value,
                raw_encrypted=q.raw_encrypted,
                escaped=q.escaped,
                fingerprint=q.fingerprint,
                reason_code=q.reason_code,
                reason=q.reason,
                created_at=now,
            )
            for q in plan.quarantine
        ],
        ignore_conflicts=True,
    )
