"""A user's Gmail connection: OAuth tokens encrypted at rest (see gmail.crypto)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from gmail.fields import EncryptedTextField


class GmailToken(models.Model):
    """One Gmail connection per user.

    `access_token` may be empty (a migrated record holding only a refresh token: the access token
    is fetched on first use). Timestamps are plain defaults, not auto_now, so kvmigrate can keep
    the legacy ones; services set `updated_at` on every write.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        REVOKED = "revoked", "revoked"
        INVALID = "invalid", "invalid"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gmail_token"
    )
    access_token = EncryptedTextField(null=True, blank=True)
    refresh_token = EncryptedTextField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    email = models.CharField(max_length=254, blank=True, default="")
    display_name = models.CharField(max_length=255, blank=True, default="")
    scopes = ArrayField(models.TextField(), default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "gmail_tokens"
        ordering = ["id"]
        indexes = [models.Index(fields=["status"], name="gmail_tokens_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "revoked", "invalid"]),
                name="gmail_tokens_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email or '(no email)'} for user {self.user_id} ({self.status})"
