"""Create (or reset) the demo staff user that `make run` prints, plus a token for API calls."""

from django.core.management.base import BaseCommand

from accounts.models import User
from accounts.services import issue_api_token

DEMO_EMAIL = "staff@fivedocks.local"
DEMO_PASSWORD = "fivedocks-demo"


class Command(BaseCommand):
    help = "Create the demo staff user (development only) and print its credentials."

    def handle(self, *args, **options) -> None:
        user, _ = User.objects.get_or_create(email=DEMO_EMAIL, defaults={"username": "staff"})
        user.is_staff = True
        user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        token = issue_api_token(user=user)  # a fresh key each time: only its hash is stored
        self.stdout.write(
            f"Demo staff user: {DEMO_EMAIL} / {DEMO_PASSWORD}  (admin: http://127.0.0.1:8000/admin/)\n"
            f"API token for it: curl -H 'Authorization: Token {token}' http://127.0.0.1:8000/api/me/"
        )
