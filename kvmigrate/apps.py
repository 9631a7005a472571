from django.apps import AppConfig


class KvmigrateConfig(AppConfig):
    name = "kvmigrate"

    def ready(self) -> None:
        from fivedocks.metrics import register_collector
        from kvmigrate.metrics import KvmigrateCollector

        register_collector(KvmigrateCollector())
