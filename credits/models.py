"""Credit accounts and their append-only ledger."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CreditAccount(models.Model):
    """One row per user. `balance` changes only with a ledger row in the same transaction."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="credit_account",
    )
    balance = models.BigIntegerField(default=0)
    total_purchased = models.BigIntegerField(default=0)
    total_used = models.BigIntegerField(default=0)
    # What a migration carried over: credits_reconcile checks totals against opening + ledger.
    opening_total_purchased = models.BigIntegerField(default=0)
    opening_total_used = models.BigIntegerField(default=0)
    # The legacy platform blocked an account whose balance went negative.
    is_blocked = models.BooleanField(default=False)
    monthly_allowance = models.IntegerField(null=True, blank=True)
    last_top_up = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    last_updated = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "user_credits"
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0) | Q(is_blocked=True),
                name="user_credits_negative_only_when_blocked",
            ),
            models.CheckConstraint(condition=Q(total_used__gte=0), name="user_credits_total_used_gte_0"),
        ]
        indexes = [models.Index(fields=["balance"], name="user_credits_balance_idx")]
        # Checked by credits.services for every staff grant, adjustment and approval.
        permissions = [("grant_credits", "Can grant, adjust and approve credit changes")]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.balance}"


class CreditTransaction(models.Model):
    """A ledger row. Append-only: never updated or deleted by the application."""

    class Type(models.TextChoices):
        PURCHASE = "purchase"
        DEDUCTION = "deduction"
        REFUND = "refund"
        BONUS = "bonus"
        ALLOWANCE = "allowance"
        ADJUSTMENT = "adjustment"
        MIGRATION = "migration"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_transactions"
    )
    # Signed: positive adds credits, negative removes them.
    amount = models.BigIntegerField()
    type = models.CharField(max_length=16, choices=Type.choices)
    reason = models.TextField(blank=True, default="")
    balance_after = models.BigIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "credit_transactions"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="credit_transactions_user_idempotency_key_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="credit_tx_user_created_idx"),
            models.Index(fields=["type"], name="credit_tx_type_idx"),
            models.Index(fields=["created_at"], name="credit_tx_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.amount:+d} → {self.balance_after}"


class PendingCreditChange(models.Model):
    """A staff grant or adjustment above CREDITS_APPROVAL_THRESHOLD, waiting for a second staff
    member's approval. Approving applies it through credits.services, exactly once."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    amount = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=CreditTransaction.Type.choices)
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    transaction = models.OneToOneField(
        CreditTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "credit_pending_changes"
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status", "-requested_at"], name="credit_pending_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} for user {self.user_id} ({self.status})"


class CreditHold(models.Model):
    """Credits reserved for a billable action, captured on success or released on failure.

    A hold never changes the balance: it lowers what is *available* (balance minus the open
    holds that have not expired). Expiry is a condition in every query that counts holds
    (`status = 'open' AND expires_at > now`), so an unsettled hold stops counting the moment it
    expires, with no job running; the row itself stays `open` until purged. A capture writes one
    deduction ledger row (idempotency key `hold-capture:<id>`, metadata `hold_id`).
    """

    class Status(models.TextChoices):
        OPEN = "open"
        CAPTURED = "captured"
        RELEASED = "released"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_holds")
    amount = models.BigIntegerField()
    operation = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Who may settle it (e.g. "svc:3", a service client): another caller cannot capture it.
    owner = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    expires_at = models.DateTimeField()
    captured_amount = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "credit_holds"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="credit_holds_user_key_uniq"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_holds_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(status__in=["open", "captured", "released"]), name="credit_holds_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(captured_amount__isnull=True)
                | (Q(captured_amount__gt=0) & Q(captured_amount__lte=models.F("amount"))),
                name="credit_holds_captured_within_amount",
            ),
        ]
        indexes = [
            # The open-hold total of one user (every deduction and balance read sums it).
            models.Index(
                fields=["user", "expires_at"],
                name="credit_holds_open_idx",
                include=["amount"],
                condition=Q(status="open"),
            ),
            models.Index(fields=["created_at"], name="credit_holds_created_idx"),
        ]

    def __str__(self) -> str:
        return f"hold {self.pk}: {self.amount} for user {self.user_id} ({self.status})"

    def is_expired(self, now=None) -> bool:
        return self.status == self.Status.OPEN and self.expires_at <= (now or timezone.now())
