"""Switches an operator flips during the move from the KV store."""

from django.db import models


class Domain(models.TextChoices):
    CREDITS = "credits"
    BILLING = "billing"
    GMAIL = "gmail"
    NOTIFICATIONS = "notifications"


class WriteFreeze(models.Model):
    """A frozen domain answers 503 to writes (reads keep working) while the last delta run moves."""

    domain = models.CharField(max_length=32, choices=Domain.choices, unique=True)
    frozen = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True, default="")
    retry_after_seconds = models.PositiveIntegerField(default=30)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "cutover_write_freezes"
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"{self.domain}: {'frozen' if self.frozen else 'open'}"


class KvOutbox(models.Model):
    """A change to write to the KV store, recorded in the transaction that made it (the mirror).

    `value` is the record in the platform's layout and encoding; NULL means delete the key.
    Rows are drained in id order, which is commit order per key (a row lock on the user's data
    orders the writers of one key), and deleted once the KV store has them.
    """

    key = models.CharField(max_length=1000)
    value = models.TextField(null=True, blank=True)
    domain = models.CharField(max_length=32, choices=Domain.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "cutover_kv_outbox"
        ordering = ["id"]
        verbose_name = "KV mirror change"

    def __str__(self) -> str:
        return f"{self.key} ({'delete' if self.value is None else 'set'})"
