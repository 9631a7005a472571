from django.apps import AppConfig


class CutoverConfig(AppConfig):
    name = "cutover"
    verbose_name = "Cutover switches"

    def ready(self) -> None:
        # Local (Django's app loading): these import models, which need the app registry.
        from cutover.metrics import MirrorLagCollector
        from cutover.mirror import CutoverTracker
        from fivedocks import changes
        from fivedocks.metrics import register_collector

        changes.install(CutoverTracker())
        register_collector(MirrorLagCollector())
