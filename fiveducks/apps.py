from django.apps import AppConfig


class FiveducksConfig(AppConfig):
    """The 5Ducks platform integration (logins, legacy routes, service API)."""

    name = "fiveducks"
    label = "fiveducks"
    verbose_name = "5Ducks platform"

    def ready(self) -> None:
        from fiveducks import schema  # noqa: F401 - registers the OpenAPI descriptions of the logins
