from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Local (Django's app loading): selectors import models, which need the app registry.
        from billing.selectors import has_active_subscription
        from credits.paid_plans import register_paid_plan_check

        # credits' monthly top-up skips paid plans; it asks through this check, never billing.
        register_paid_plan_check(has_active_subscription)
