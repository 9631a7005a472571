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
    """A KV key whose data changed, recorded in the transaction that changed it (the mirror).

    Only *which* key changed: the writer renders nothing and reads nothing. `manage.py kvmirror`
    takes rows in id order, renders each key once from the committed state (many changes of one
    key coalesce into one write), writes them and deletes the rows it took. A row exists only if
    its transaction committed, so every committed change is drained at least once.
    """

    key = models.CharField(max_length=1000)
    domain = models.CharField(max_length=32, choices=Domain.choices)
    user_id = models.BigIntegerField()
    created_at = models.DateTimeField()  # no index: the oldest row is the first by id
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "cutover_kv_outbox"
        ordering = ["id"]
        verbose_name = "KV mirror change"

    def __str__(self) -> str:
        return self.key
