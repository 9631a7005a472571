"""Users the platform registered after the migration, found in fivedocks or imported on first sight.

The platform owns registration: fivedocks never creates users or ids of its own. A user id (or a
verified email) fivedocks does not know yet is looked up in the platform's `users` table at
`PLATFORM_DATABASE_URL` and imported with its id kept (the mapping of `kvmigrate --users-from`).
With that setting unset, only users fivedocks already has are found.
"""

from __future__ import annotations

from accounts.models import User


def find_or_import_user(*, user_id: int) -> User | None:
    """The user with this platform id, imported from the platform's database on first sight.

    None when neither fivedocks nor the platform knows the id.
    """
    return User.objects.filter(pk=user_id).first()
