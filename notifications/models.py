"""One row per flag a user has seen, been awarded or claimed (the seed's `user_notifications`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from notifications import catalogue


class UserNotification(models.Model):
    """A one-time flag. The unique constraint is what makes "once" hold under concurrency."""

    Kind = catalogue.Kind

    # Indexed by the named index below (not the FK's default one, which would duplicate it).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_flags",
        db_index=False,
    )
    kind = models.CharField(
        max_length=16, choices=catalogue.Kind.CHOICES, default=catalogue.Kind.NOTIFICATION
    )
    # The catalogue id (the legacy KV array index); not a foreign key: the catalogue is code.
    notification_id = models.IntegerField()
    shown_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "user_notifications"
        ordering = ["kind", "notification_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind", "notification_id"], name="user_notifications_user_kind_id_uniq"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=[c[0] for c in catalogue.Kind.CHOICES]),
                name="user_notifications_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(notification_id__gte=0), name="user_notifications_id_gte_0"
            ),
        ]
        indexes = [
            models.Index(fields=["user"], name="user_notifications_user_idx"),
            models.Index(fields=["shown_at"], name="user_notifications_shown_idx"),
        ]
        verbose_name = "user flag"

    def __str__(self) -> str:
        return f"{self.user_id}: {self.kind} {catalogue.name_of(self.kind, self.notification_id)}"

    @property
    def name(self) -> str:
        return catalogue.name_of(self.kind, self.notification_id)
