from django.apps import AppConfig


class KvmigrateConfig(AppConfig):
    name = "kvmigrate"

    def ready(self) -> None:
        # Local (Django's app loading): these import models, which need the app registry.
        from fivedocks.metrics import register_collector
        from kvmigrate.metrics import KvmigrateCollector

        register_collector(KvmigrateCollector())
