"""The platform's users (the `users` table every other table references)."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("an email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A platform user. Ids are the platform's own (kvmigrate keeps them when importing)."""

    email = models.EmailField(unique=True)
    username = models.CharField(max_length=150, blank=True, default="")
    # The platform's logins map a Firebase uid to the user (the KV key `firebase_uid:{uid}`).
    firebase_uid = models.CharField(max_length=128, unique=True, null=True, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        db_table = "users"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.email


class ApiToken(models.Model):
    """A user's API key for `Authorization: Token <key>`, stored only as its SHA-256.

    The key itself is shown once, when issued (POST /api/auth/token/); nobody, staff included,
    can read it back. One key per user: issuing a new one replaces the old.
    """

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="api_token")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "api_tokens"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token of {self.user_id}"


class ThrottleCounter(models.Model):
    """One fixed-window request counter per throttle key (scope and caller), shared by every
    worker: fivedocks.throttling counts in one atomic upsert when the cache is not Redis."""

    key = models.CharField(max_length=200, primary_key=True)
    window_start = models.BigIntegerField()
    hits = models.IntegerField()

    class Meta:
        db_table = "throttle_counters"

    def __str__(self) -> str:
        return f"{self.key}: {self.hits}"
