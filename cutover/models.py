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
