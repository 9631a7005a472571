import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cutover.drain import drain, lag_seconds
from kvmigrate.sources.base import SourceError


class Command(BaseCommand):
    help = (
        "Drain the KV mirror's outbox to the KV store (Replit Database URL or redis://), in order per "
        "key, with retries; --forever runs as a long-lived worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--target", help="Replit Database URL or redis://... (default: KV_MIRROR_TARGET)")
        parser.add_argument("--forever", action="store_true", help="keep draining until stopped (SIGTERM)")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, target: str | None, forever: bool, batch_size: int, **options) -> None:
        target = target or settings.KV_MIRROR_TARGET
        if not target:
            raise CommandError("no target: pass --target or set KV_MIRROR_TARGET")
        stopping = {"now": False}

        def _stop(*_):
            stopping["now"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            stats = drain(target, batch_size=batch_size, forever=forever, stop=lambda: stopping["now"])
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"written {stats.written}, deleted {stats.deleted}, failed attempts {stats.failures}, "
            f"lag {lag_seconds():.1f} s"
        )
        if stats.failures and lag_seconds() > 0:
            raise CommandError(f"the KV store refused writes: {stats.errors[-1]}")
