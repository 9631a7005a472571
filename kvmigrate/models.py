"""Runs, quarantined records and per-key fingerprints of the KV → PostgreSQL migration."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from fivedocks.domains import DOMAINS  # noqa: F401  (re-exported: kvmigrate's domains)
from gmail.public import open_secret


class MigrationRun(models.Model):
    """One invocation of `manage.py kvmigrate` (dry runs leave no row)."""

    class Mode(models.TextChoices):
        MIGRATE = "migrate"
        VERIFY = "verify"
        REVERSE = "reverse"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # everything moved and verified
        ATTENTION = "attention"  # finished with quarantined or mismatched records
        FAILED = "failed"
        INTERRUPTED = "interrupted"  # found still "running" by a later run: the process died

    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.MIGRATE)
    source = models.TextField(help_text="The store, secrets masked.")
    options = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # {domain: {read, created, updated, unchanged, quarantined, skipped, verified, mismatched}}
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)

    class Meta:
        db_table = "kvmigrate_runs"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "succeeded", "attention", "failed", "interrupted"]),
                name="kvmigrate_runs_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.mode}, {self.status})"

    def total(self, name: str) -> int:
        return sum(int(c.get(name, 0)) for c in (self.counts or {}).values() if isinstance(c, dict))


class QuarantinedRecord(models.Model):
    """A KV record that could not be moved, kept with its raw value and the reason.

    Unique per (key, fingerprint of the raw value): a re-run meeting the same bad value does not
    add a row. `resolved_at` is set when a later run moves the key (the value was fixed, or its
    user was imported).
    """

    run = models.ForeignKey(MigrationRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    key = models.TextField()
    raw_value = models.TextField(blank=True, default="")
    # True when key/raw_value held characters PostgreSQL cannot store (NUL, lone surrogates) and
    # were written backslash-escaped.
    escaped = models.BooleanField(default=False)
    # True when raw_value is Fernet ciphertext (gmail.public.seal_secret): the record's family holds OAuth
    # tokens, which never reach the database in plaintext, quarantined or not.
    raw_encrypted = models.BooleanField(default=False)
    fingerprint = models.CharField(max_length=64)
    reason_code = models.CharField(max_length=100, db_index=True)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "kvmigrate_quarantine"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["key", "fingerprint"], name="kvmigrate_quarantine_key_fp_uniq"),
        ]
        indexes = [models.Index(fields=["key"], name="kvmigrate_quarantine_key_idx")]
        verbose_name = "quarantined record"

    def __str__(self) -> str:
        return f"{self.key}: {self.reason_code}"

    def raw_text(self) -> str:
        """The raw value as the store had it (decrypted when it holds secrets): for operators' code."""
        if not self.raw_encrypted:
            return self.raw_value
        return open_secret(self.raw_value)


class MigratedRecord(models.Model):
    """The fingerprint of the raw value last moved for a key, and which domains of it were loaded.

    A record whose fingerprint is unchanged and whose wanted domains are all in `domains` is
    `unchanged` and skipped before any decoding: re-runs and delta runs are cheap. Written in the
    same transaction as the rows it describes, so a killed run never leaves it ahead of the data.
    """

    key = models.TextField(primary_key=True)
    family = models.CharField(max_length=32)
    fingerprint = models.CharField(max_length=64)
    # Domains handled for this fingerprint (moved, or nothing of theirs in the record).
    domains = ArrayField(models.CharField(max_length=16), default=list)
    # Domains the record has rows in.
    parts = ArrayField(models.CharField(max_length=16), default=list)
    user_id = models.BigIntegerField(null=True, blank=True)
    # No constraint, no index: written for every key of a store, and only ever read by key.
    run = models.ForeignKey(
        MigrationRun,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "kvmigrate_records"

    def __str__(self) -> str:
        return self.key


class RenderedEntry(models.Model):
    """A history entry fivedocks rendered into the KV store from a ledger row the app wrote.

    Written at render time (`kvmigrate --reverse`, the KV mirror) with the digest kvmigrate's
    transform gives that entry: a delta run after a rollback meets these entries in the store and
    knows them for rows the ledger already has, so only what the old code added comes back.
    """

    pk = models.CompositePrimaryKey("user_id", "digest")
    user_id = models.BigIntegerField()
    digest = models.CharField(max_length=40)
    # The ledger row it was rendered from (no constraint: the ledger is append-only).
    transaction_id = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "kvmigrate_rendered_entries"
        verbose_name = "rendered history entry"

    def __str__(self) -> str:
        return f"{self.user_id}:{self.digest}"
