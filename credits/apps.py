from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        from credits.metrics import CreditHoldsCollector
        from fivedocks.metrics import register_collector

        register_collector(CreditHoldsCollector(), reads_database=True)
