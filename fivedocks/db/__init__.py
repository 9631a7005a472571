"""fivedocks's database backend: Django's PostgreSQL backend plus the cache broadcast."""
