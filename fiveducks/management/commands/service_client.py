"""Manage the service API's clients: create, rotate, revoke-old, disable, enable, list.

A secret is printed once, when it is made (create, rotate), on stdout alone, and never again.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from fivedocks.errors import DomainError
from fiveducks import selectors, services
from fiveducks.models import SCOPES


class Command(BaseCommand):
    help = "Manage service API clients (the platform's backend): create, rotate, revoke-old, disable, list."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new client; prints its secret once")
        create.add_argument("name")
        create.add_argument(
            "--scopes", required=True, help=f"comma-separated, among: {', '.join(sorted(SCOPES))}"
        )
        for name, text in (
            ("rotate", "a second live secret; prints it once (the first keeps working)"),
            ("revoke-old", "revoke every live secret but the newest"),
            ("disable", "refuse every call of this client"),
            ("enable", "accept this client's calls again"),
        ):
            sub.add_parser(name, help=text).add_argument("name")
        scopes = sub.add_parser("set-scopes", help="replace a client's scopes")
        scopes.add_argument("name")
        scopes.add_argument("--scopes", required=True)
        sub.add_parser("list", help="clients, their scopes, live secrets and last use")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        try:
            if action == "create":
                issued = services.create_client(name=options["name"], scopes=options["scopes"].split(","))
                self._print_secret(issued, "created")
            elif action == "rotate":
                self._print_secret(services.rotate(name=options["name"]), "rotated")
            elif action == "revoke-old":
                count = services.revoke_old(name=options["name"])
                self.stderr.write(f"{options['name']}: {count} old secret(s) revoked")
            elif action in ("disable", "enable"):
                services.set_disabled(name=options["name"], disabled=action == "disable")
                self.stderr.write(f"{options['name']}: {action}d")
            elif action == "set-scopes":
                client = services.set_scopes(name=options["name"], scopes=options["scopes"].split(","))
                self.stderr.write(f"{client.name}: scopes {','.join(client.scopes)}")
            else:
                self._list()
        except DomainError as exc:
            raise CommandError(exc.message) from None

    def _print_secret(self, issued: services.IssuedSecret, what: str) -> None:
        client = issued.client
        self.stderr.write(
            f"{client.name} {what} (scopes {','.join(client.scopes)}, key id {issued.secret.key_id}). "
            "The secret follows on stdout; it is shown only this once. "
            "Send it as `Authorization: Bearer <secret>`."
        )
        self.stdout.write(issued.token)

    def _list(self) -> None:
        self.stdout.write("name\tscopes\tdisabled\tlive secrets (key id, last used)\tlast used")
        for client in selectors.clients():
            live = [s for s in client.secrets.all() if s.revoked_at is None]
            secrets = ", ".join(
                f"{s.key_id} ({s.last_used_at:%Y-%m-%d %H:%M} UTC)"
                if s.last_used_at
                else f"{s.key_id} (never)"
                for s in live
            )
            last = f"{client.last_used_at:%Y-%m-%d %H:%M} UTC" if client.last_used_at else "never"
            self.stdout.write(
                f"{client.name}\t{','.join(client.scopes)}\t{'yes' if client.is_disabled else 'no'}\t"
                f"{secrets or '-'}\t{last}"
            )
