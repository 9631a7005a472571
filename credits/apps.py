from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"

    def ready(self) -> None:
        # Local (Django's app loading): these import models, which need the app registry.
        from credits.metrics import CreditHoldsCollector
        from fivedocks.metrics import register_collector

        register_collector(CreditHoldsCollector(), reads_database=True)
