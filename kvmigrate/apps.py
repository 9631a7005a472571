from django.apps import AppConfig


class KvmigrateConfig(AppConfig):
    name = "kvmigrate"
