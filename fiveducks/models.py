"""Tables of the platform integration."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

# What a service client may be allowed to do.
SCOPES = {
    "credits:charge": "hold, capture, release and charge credits",
    "gmail:token": "get a fresh Gmail access token for a user",
}


class ServiceClient(models.Model):
    """A named caller of the service API (the platform's backend), with its scopes.

    Its secrets live in ServiceSecret (hashed, at most two live at once so a secret can be
    rotated without downtime). A disabled client is refused whatever secret it shows.
    """

    name = models.SlugField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    is_disabled = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "service_clients"
        ordering = ["name"]
        permissions = [("manage_service_clients", "Can create, rotate and disable service API clients")]

    def __str__(self) -> str:
        return self.name

    @property
    def owner(self) -> str:
        """The namespace of this client's holds and idempotency keys (`svc:<id>`)."""
        return f"svc:{self.pk}"


class ServiceSecret(models.Model):
    """One secret of a client: `fd_svc_<key_id>_<secret>`; only SHA-256(secret) is stored.

    The key id (public, random) finds the row; the secret (256 random bits) is checked against
    the hash in constant time. A plain hash suffices for a random 256-bit secret (nothing to
    brute-force); a slow password hash would cost every API call milliseconds.
    """

    client = models.ForeignKey(ServiceClient, on_delete=models.CASCADE, related_name="secrets")
    key_id = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "service_secrets"
        ordering = ["client", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.client.name} fd_svc_{self.key_id}_…"


class ServiceCall(models.Model):
    """The audit log: one row per authenticated service API call (client, user, action, result).

    Secrets and tokens are never stored here; `detail` holds ids and amounts.
    """

    client = models.ForeignKey(ServiceClient, on_delete=models.CASCADE, related_name="calls")
    user_id = models.BigIntegerField(null=True, blank=True)  # no FK: an unknown id is audited too
    action = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    result = models.CharField(max_length=64)  # "ok" or the error code
    detail = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "service_calls"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="service_calls_client_idx"),
            models.Index(fields=["user_id", "-created_at"], name="service_calls_user_idx"),
            models.Index(fields=["created_at"], name="service_calls_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} {self.action} user {self.user_id}: {self.status} {self.result}"
