from django.apps import AppConfig


class CutoverConfig(AppConfig):
    name = "cutover"
    verbose_name = "Cutover switches"

    def ready(self) -> None:
        # Local (Django's app loading): these import models, which need the app registry.
        from cutover import mirror
        from fivedocks.metrics import KV_MIRROR_LAG

        mirror.connect()

        def lag() -> float:
            from cutover.drain import lag_seconds

            try:
                return lag_seconds()
            except Exception:  # no database at scrape time: report no lag rather than fail /metrics
                return 0.0

        KV_MIRROR_LAG.set_function(lag)
