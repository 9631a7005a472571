from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The support desk's screens in the admin: dashboard (the admin's home), customer page, report.

    It reads every domain and no domain reads it.
    """

    name = "console"
    verbose_name = "Staff console"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.index_template = "console/dashboard.html"
        admin.site.site_header = "fivedocks staff"
        admin.site.site_title = "fivedocks staff"
        # The left-hand model list took 300 of a laptop's 1,400 pixels from every list; the home
        # page (the dashboard) and the breadcrumbs lead everywhere it did.
        admin.site.enable_nav_sidebar = False
